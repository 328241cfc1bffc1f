/**
 * Real gateway processes for the tests that kill, restart and share them:
 * `flotilla serve` over a fleet file of the tiny model (or of one
 * OpenAI-compatible upstream), with the usage ledger in the given store.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import type { Store } from "../../src/store/index.js";
import { CLI } from "../paths.js";
import { TINY_MODEL, admin } from "./harness.js";

export interface Proc {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A short lease, so a killed process's rows are recovered within the test. */
export const LEASE_MS = 1_200;

/** A fleet of the tiny model, or (with `upstream`) of one OpenAI-compatible server. */
export function fleetFile(storeUrl: string, opts: { upstream?: string; commitMs?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-proc-"));
  dirs.push(dir);
  const file = join(dir, "fleet.yaml");
  const replica =
    opts.upstream === undefined
      ? ["      - engine: local", `        path: ${TINY_MODEL}`, "        parallel: 4", "        context: 2048", "        max_queue: 256"]
      : ["      - engine: openai", `        url: ${opts.upstream}`, "        upstream_model: held", "        spec: llama-3.1-8b", "        parallel: 8"];
  writeFileSync(
    file,
    [
      "server:",
      `  store: "${storeUrl}"`,
      "  shutdown_grace_ms: 2000",
      `  instance_lease_ms: ${LEASE_MS}`,
      ...(opts.commitMs === undefined ? [] : [`  ledger_commit_ms: ${opts.commitMs}`]),
      "models:",
      "  - name: tiny",
      "    replicas:",
      ...replica,
      "        hardware: h100",
      "",
    ].join("\n"),
  );
  return file;
}

/** `flotilla serve` on the fleet file; `wrap` runs it under another command (unshare). */
export function serve(config: string, logLevel = "warn", wrap: readonly string[] = []): Promise<Proc> {
  const argv = [process.execPath, ...CLI, "serve", "--config", config, "--port", "0", "--log-level", logLevel];
  const [command, ...args] = [...wrap, ...argv] as [string, ...string[]];
  const child = spawn(command, args, {
    env: { ...process.env, FLOTILLA_HOME: join(config, "..") },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /flotilla listening on (http:\/\/\S+)/.exec(out);
      // The startup line, not a log line that mentions the ledger.
      if (m !== null && /^ {2}usage ledger: /m.test(out)) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child, output: () => out, exited });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before listening:\n${out}`));
    });
  });
}

export async function tenantWithKey(url: string, name: string, limits: Record<string, unknown> = {}): Promise<string> {
  const t = await admin(url, "POST", "/admin/tenants", { name, ...limits });
  assert.equal(t.status, 201, JSON.stringify(t.json));
  const k = await admin(url, "POST", "/admin/keys", { tenant: name });
  assert.equal(k.status, 201, JSON.stringify(k.json));
  return k.json.key as string;
}

export async function settledLedger(store: Store, tenantId: string, timeoutMs = 5000): Promise<Awaited<ReturnType<Store["ledger"]>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await store.ledger({ tenantId });
    if (rows.every((r) => r.status !== "running") || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 25));
  }
}
