import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import type { Fleet } from "../src/fleet/fleet.js";
import { createGateway, type GatewayOptions } from "../src/gateway/server.js";
import { ensureDefaultModel } from "../src/gguf/default-model.js";
import { repoPath } from "./paths.js";

/** The shared random-weight model with the llama-2 vocabulary: for tests where tokenization matters, which skip without it. */
export const LLAMA2_TINY_MODEL = repoPath("../shared/models/llama-2-tiny-random.gguf");
export const LLAMA2_ABSENT: false | string = existsSync(LLAMA2_TINY_MODEL) ? false : "../shared/models/llama-2-tiny-random.gguf is absent";

/**
 * A tiny random-weight model for every other test (real llama.cpp,
 * gibberish output): the shared one where ../shared is present, else the
 * built-in byte-level model, written by the project's own GGUF writer into
 * this process's temporary directory (in about 40 ms), so the suite never
 * depends on ../shared.
 */
export const TINY_MODEL = LLAMA2_ABSENT === false ? LLAMA2_TINY_MODEL : await ownTinyModel();

async function ownTinyModel(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-test-model-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return (await ensureDefaultModel(dir)).path;
}

export interface RunningGateway {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly fleet: Fleet;
  close(): Promise<void>;
}

/** Starts a gateway on a free loopback port over the fleet the config describes. */
export async function startGateway(config: unknown, opts: Omit<GatewayOptions, "fleet"> = {}): Promise<RunningGateway> {
  const fleet = buildFleet(parseFleetConfig(config), { baseDir: process.cwd(), env: process.env });
  await fleet.start((replica, err) => {
    if (process.env.FLOTILLA_TEST_DEBUG) console.error(`replica ${replica.id} did not start`, err);
  });
  const app = createGateway({ logLevel: "silent", ...opts, fleet });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, app, fleet, close: () => app.close() };
}

/** A fleet of `count` local replicas of the tiny model. */
export function tinyFleet(opts: { count?: number; parallel?: number; context?: number; name?: string } = {}): unknown {
  return {
    models: [
      {
        name: opts.name ?? "tiny",
        replicas: [{ engine: "local", path: TINY_MODEL, count: opts.count ?? 1, parallel: opts.parallel ?? 2, context: opts.context ?? 512 }],
      },
    ],
  };
}

/** Polls `check` (synchronous or not) every 10 ms until it holds, failing after `timeoutMs` with what was awaited. */
export async function eventually(check: () => boolean | Promise<boolean>, what = "condition", timeoutMs = 3_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** This gateway's own requests running or waiting on its replicas; not the load a remote engine reports from other clients. */
export function totalActive(fleet: Fleet): number {
  return fleet.replicas().reduce((n, r) => {
    const load = r.engine.load();
    const own = load.own ?? load;
    return n + own.active + own.queued;
  }, 0);
}

/** Requests waiting in the gateway's admission queue for `model` in a priority class, read from /metrics as an operator would. */
export async function gateQueued(url: string, model: string, priority: "interactive" | "batch" = "interactive"): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`flotilla_admission_queued_requests{model="${model}",priority="${priority}"}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

/** Output tokens a gateway has streamed so far, from its own /metrics (counted as they stream). */
export async function streamedTokens(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) if (line.startsWith("flotilla_output_tokens_total{")) n += Number(line.slice(line.lastIndexOf(" ") + 1));
  return n;
}

/** Waits until the gateway at `url` has streamed `tokens` more output tokens than when called. */
export async function afterStreamed(url: string, tokens: number, timeoutMs = 5_000): Promise<void> {
  const from = await streamedTokens(url);
  await eventually(async () => (await streamedTokens(url)) >= from + tokens, `${tokens} tokens streamed by ${url}`, timeoutMs);
}

/** Why a test through curl skips: false where curl is installed. */
export const CURL_MISSING: false | string = spawnSync("curl", ["--version"]).error !== undefined ? "curl is not installed" : false;

/** Runs curl with `args` (add -N to read a stream as it comes); resolves with what it printed, rejects if it fails. */
export function curl(args: readonly string[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn("curl", ["-sS", ...args]);
    let text = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (text += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`curl exited ${code}`))));
  });
}
