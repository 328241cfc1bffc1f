/**
 * Chaos: several real engines (Flotilla processes serving the built-in model
 * through llama.cpp), a front gateway routing to them, many concurrent
 * streaming requests, and `kill -9` of random engines throughout (one always
 * survives; the killed one restarts on its port). Every answer must arrive
 * whole and exact: the byte-level model is greedy-deterministic, so each
 * prompt has one right answer, known before the chaos starts.
 *
 *   node --import tsx bench/chaos.ts [--seconds 60] [--engines 3] [--clients 16] [--kill-every-ms 2000]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import { createGateway } from "../src/gateway/server.js";
import { ensureDefaultModel } from "../src/gguf/default-model.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const seconds = arg("seconds", 60);
const engineCount = arg("engines", 3);
const clients = arg("clients", 16);
const killEveryMs = arg("kill-every-ms", 2000);
const restartAfterMs = 1500;
const MAX_TOKENS = 160;

const home = await mkdtemp(join(tmpdir(), "flotilla-chaos-"));
const { path: modelPath } = await ensureDefaultModel(home);
const entry = resolve(import.meta.dirname, "../src/cli/run.ts");

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

interface EngineProc {
  readonly port: number;
  child: ChildProcess | undefined;
  /** Listening and serving; a process still loading its model does not count as alive. */
  serving: boolean;
}

async function startEngine(e: EngineProc): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", entry, "serve", "--model", modelPath, "--port", String(e.port), "--parallel", "8", "--context", "1024"], {
    env: { ...process.env, FLOTILLA_HOME: home },
    stdio: ["ignore", "pipe", "inherit"],
  });
  e.child = child;
  await new Promise<void>((ok, fail) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening on")) {
        e.serving = true;
        ok();
      }
    });
    child.once("exit", () => fail(new Error(`engine on ${e.port} exited during start`)));
  });
}

const engines: EngineProc[] = [];
for (let i = 0; i < engineCount; i++) engines.push({ port: await freePort(), child: undefined, serving: false });
await Promise.all(engines.map(startEngine));

const fleet = buildFleet(
  parseFleetConfig({
    server: { eject_cooldown_ms: 1000 },
    models: [{ name: "m", replicas: engines.map((e) => ({ engine: "openai", url: `http://127.0.0.1:${e.port}`, upstream_model: "flotilla-tiny-random-v1", timeout_ms: 5000, probe_interval_ms: 250, parallel: 16 })) }],
  }),
  { baseDir: ".", env: {} },
);
await fleet.start(() => undefined);
const front = createGateway({ fleet, logLevel: "silent", requestTimeoutMs: 60_000 });
await front.listen({ host: "127.0.0.1", port: 0 });
const frontUrl = `http://127.0.0.1:${(front.server.address() as AddressInfo).port}/v1/completions`;

const prompts = ["The fleet", "Once upon a time", "In the beginning", "Accelerators fail", "Nothing is lost", "A request moves"];
const body = (prompt: string): string => JSON.stringify({ model: "m", prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } });

interface Outcome {
  ok: boolean;
  why?: string;
  ms: number;
  attempts: number;
  continuations: number;
}

async function streamOnce(prompt: string, expected: string | undefined): Promise<Outcome & { text: string }> {
  const t = performance.now();
  try {
    const res = await fetch(frontUrl, { method: "POST", headers: { "content-type": "application/json" }, body: body(prompt) });
    const raw = await res.text();
    const ms = performance.now() - t;
    if (res.status !== 200) return { ok: false, why: `status ${res.status}: ${raw.slice(0, 120)}`, ms, attempts: 0, continuations: 0, text: "" };
    let text = "";
    let finish = false;
    let servedBy = { attempts: 0, continuations: 0 };
    let usageRows = 0;
    for (const event of raw.split("\n\n")) {
      if (!event.startsWith("data: {")) continue;
      const chunk = JSON.parse(event.slice(6)) as { error?: unknown; choices: { text: string; finish_reason: string | null }[]; x_flotilla?: typeof servedBy };
      if (chunk.error !== undefined) return { ok: false, why: `error event ${JSON.stringify(chunk.error)}`, ms, attempts: 0, continuations: 0, text };
      text += chunk.choices[0]?.text ?? "";
      if (chunk.choices[0]?.finish_reason) finish = true;
      if (chunk.x_flotilla) {
        servedBy = chunk.x_flotilla;
        usageRows++;
      }
    }
    const whole = raw.endsWith("data: [DONE]\n\n") && finish && usageRows === 1;
    if (!whole) return { ok: false, why: "stream incomplete", ms, ...servedBy, text };
    if (expected !== undefined && text !== expected) return { ok: false, why: `text differs at ${[...text].findIndex((c, i) => c !== expected[i])}`, ms, ...servedBy, text };
    return { ok: true, ms, ...servedBy, text };
  } catch (err) {
    return { ok: false, why: (err as Error).message, ms: performance.now() - t, attempts: 0, continuations: 0, text: "" };
  }
}

// The right answers, before any chaos.
const expected = new Map<string, string>();
for (const p of prompts) expected.set(p, (await streamOnce(p, undefined)).text);

const outcomes: Outcome[] = [];
let kills = 0;
const end = performance.now() + seconds * 1000;
const chaos = (async () => {
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, killEveryMs));
    const alive = engines.filter((e) => e.serving);
    if (alive.length <= 1 || performance.now() >= end) continue;
    const victim = alive[Math.floor(Math.random() * alive.length)]!;
    victim.child!.kill("SIGKILL");
    victim.child = undefined;
    victim.serving = false;
    kills++;
    setTimeout(() => void startEngine(victim).catch(() => undefined), restartAfterMs);
  }
})();
let lastReport = 0;
await Promise.all(
  Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; performance.now() < end; i++) {
      const prompt = prompts[(c + i) % prompts.length]!;
      outcomes.push(await streamOnce(prompt, expected.get(prompt)));
      if (performance.now() - lastReport > 5000) {
        lastReport = performance.now();
        const states = fleet.replicas().map((r) => `${r.health.state(r.engine.isReady())}/${r.engine.load().active}`).join(" ");
        const up = engines.map((e) => (e.serving ? "up" : e.child === undefined ? "down" : "starting")).join(" ");
        process.stderr.write(`  ${Math.round((end - performance.now()) / 1000)} s left: ${outcomes.length} requests, ${kills} kills, ${outcomes.filter((o) => !o.ok).length} failed; replicas ${states}; engines ${up}\n`);
      }
    }
  }),
);
await chaos;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};
const failed = outcomes.filter((o) => !o.ok);
const clean = outcomes.filter((o) => o.ok && o.attempts === 1).map((o) => o.ms);
const movedBefore = outcomes.filter((o) => o.ok && o.attempts > 1 && o.continuations === 0);
const resumed = outcomes.filter((o) => o.ok && o.continuations > 0);
const recovered = [...movedBefore, ...resumed].map((o) => o.ms);
console.log(`chaos: ${engineCount} engine processes (llama.cpp, built-in model), ${clients} concurrent streaming clients, ${seconds} s, kill -9 every ${killEveryMs} ms, restart after ${restartAfterMs} ms\n`);
console.log("| requests | failed | kills | failovers before first token | mid-stream continuations | p50 / p99 ms, untouched | p50 / p99 ms, failed over | p99 added by failover |");
console.log("|---|---|---|---|---|---|---|---|");
console.log(
  `| ${outcomes.length} | ${failed.length} | ${kills} | ${movedBefore.length} | ${resumed.length} | ${pct(clean, 0.5).toFixed(0)} / ${pct(clean, 0.99).toFixed(0)} | ` +
    `${pct(recovered, 0.5).toFixed(0)} / ${pct(recovered, 0.99).toFixed(0)} | ${(pct(recovered, 0.99) - pct(clean, 0.99)).toFixed(0)} ms |`,
);
for (const f of failed.slice(0, 5)) console.log(`failed: ${f.why}`);
for (const e of engines) e.child?.kill("SIGKILL");
await front.close();
process.exit(failed.length === 0 ? 0 : 1);
