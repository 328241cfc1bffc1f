/**
 * Flotilla beside its peers on one machine, each in front of the same
 * instant OpenAI-compatible upstream (bench/lib/instant-upstream.ts), one at
 * a time, driven by the same load generator in its own process
 * (bench/lib/load-child.ts): closed loop at `--concurrency` requests in
 * flight, non-streaming and streaming, then open loop at `--rate` req/s for
 * the latency a gateway adds.
 *
 *   - Flotilla, default store (the SQLite ledger on: one admission and one
 *     settlement per request), and with `store: none`;
 *   - a bare Fastify + undici proxy (bench/lib/bare-proxy.ts): the ceiling
 *     for a Node gateway;
 *   - the same proxy reading the stream (--reading): the ceiling for a Node
 *     gateway that meters tokens and can resume an answer elsewhere, so must
 *     parse every chunk the upstream streams;
 *   - Portkey's open-source gateway (@portkey-ai/gateway), when installed
 *     with `npm install --prefix bench` (never by the project's install or CI).
 *
 * CPU per request is the server process's user + system time over the run
 * (from /proc), warm-up included, over the requests it served.
 *
 *   npm install --prefix bench        # once, for the Portkey column
 *   npm run build && node --import tsx bench/gateway-vs-peers.ts [--seconds 10] [--concurrency 32] [--rate 1000] [--rounds 3] [--tokens 16]
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadInChild, type LoadResult, type LoadSpec } from "./lib/load.js";
import { freePort, UpstreamProc } from "./lib/upstream-procs.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const SECONDS = arg("--seconds", 10);
const CONCURRENCY = arg("--concurrency", 32);
const RATE = arg("--rate", 1000);
/** Every gateway is measured once per round, in turn; the table shows each one's median round, since one run on a shared 2-core machine moves by ±20%. */
const ROUNDS = arg("--rounds", 1);
/** Tokens per answer: the upstream streams one chunk per token, which a metering gateway parses. */
const TOKENS = arg("--tokens", 16);
const ROOT = resolve(import.meta.dirname, "..");
const PORTKEY = join(ROOT, "bench/node_modules/@portkey-ai/gateway/build/start-server.js");
const TSX = ["--import", "tsx"];

const CHAT = { model: "m", messages: [{ role: "user", content: "hello" }], max_tokens: TOKENS };
const BODIES = {
  "non-streaming": JSON.stringify(CHAT),
  streaming: JSON.stringify({ ...CHAT, stream: true, stream_options: { include_usage: true } }),
};

interface Target {
  readonly name: string;
  readonly start: (port: number, upstream: string) => Promise<UpstreamProc>;
  readonly headers?: (upstream: string) => Record<string, string>;
}

async function flotilla(store: string, dir: string): Promise<Target["start"]> {
  return async (port, upstream) => {
    const fleet = join(dir, `fleet-${store.replace(/\W/g, "")}.yaml`);
    await writeFile(fleet, `models:\n  - name: m\n    replicas:\n      - { engine: openai, url: "${upstream}", parallel: 512, max_queue: 4096 }\nserver:\n  store: "${store}"\n`);
    // The compiled CLI, as users run it.
    const proc = new UpstreamProc(port, [join(ROOT, "bin/flotilla.js"), "serve", "--config", fleet, "--port", String(port), "--log-level", "error"], /flotilla listening on/, `flotilla (${store})`, { ...process.env, FLOTILLA_HOME: dir });
    await proc.start();
    return proc;
  };
}

/** bench/lib/bare-proxy.ts with `flags`: passing bytes through, or (--reading) parsing every chunk as a metering gateway must. */
function bareProxy(flags: readonly string[]): Target["start"] {
  return async (port, upstream) => {
    const proc = new UpstreamProc(port, [...TSX, join(ROOT, "bench/lib/bare-proxy.ts"), "--port", String(port), "--upstream", upstream, ...flags], /bare proxy listening/, "bare proxy");
    await proc.start();
    return proc;
  };
}

async function targets(dir: string): Promise<Target[]> {
  const list: Target[] = [
    { name: "Flotilla, SQLite ledger (default)", start: await flotilla("sqlite:ledger.db", dir) },
    { name: "Flotilla, store: none", start: await flotilla("none", dir) },
    { name: "bare Fastify + undici proxy", start: bareProxy([]) },
    { name: "bare proxy reading the stream", start: bareProxy(["--reading"]) },
  ];
  if (existsSync(PORTKEY)) {
    list.push({
      name: "Portkey gateway 1.15.2 (OSS)",
      start: async (port) => {
        const proc = new UpstreamProc(port, [PORTKEY, `--port=${port}`, "--headless"], /Ready for connections/, "portkey", { ...process.env, NODE_ENV: "production" }, "ignore");
        await proc.start();
        return proc;
      },
      headers: (upstream) => ({ "x-portkey-provider": "openai", "x-portkey-custom-host": `${upstream}/v1`, authorization: "Bearer unused" }),
    });
  } else process.stderr.write("Portkey is not installed (npm install --prefix bench): its column is left out\n");
  return list;
}

/** A process's user + system CPU time in ms, from /proc (clock ticks of 10 ms). */
async function cpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface Row {
  readonly target: string;
  readonly mode: string;
  readonly result: LoadResult;
  readonly cpuMsPerRequest: number;
}

async function measure(target: Target, upstream: string): Promise<Row[]> {
  const port = await freePort();
  const proc = await target.start(port, upstream);
  const rows: Row[] = [];
  try {
    const headers = target.headers?.(upstream) ?? {};
    const base = { url: `http://127.0.0.1:${port}`, path: "/v1/chat/completions", headers, readBody: true, warmupMs: 2_000, durationMs: SECONDS * 1000 };
    const runs: [string, LoadSpec][] = [
      ["non-streaming", { ...base, body: BODIES["non-streaming"], concurrency: CONCURRENCY }],
      ["streaming", { ...base, body: BODIES.streaming, concurrency: CONCURRENCY }],
      [`non-streaming at ${RATE} req/s`, { ...base, body: BODIES["non-streaming"], concurrency: CONCURRENCY * 4, rate: RATE }],
    ];
    for (const [mode, spec] of runs) {
      const before = await cpuMs(proc.pid!);
      const result = await loadInChild(spec);
      const used = (await cpuMs(proc.pid!)) - before;
      rows.push({ target: target.name, mode, result, cpuMsPerRequest: used / Math.max(1, result.requests + result.errors + result.warmupRequests) });
      process.stderr.write(`  ${target.name}, ${mode}: ${Math.round(result.rps)} req/s, ${result.errors} errors\n`);
    }
  } finally {
    proc.kill();
  }
  return rows;
}

function table(rows: readonly Row[]): string {
  const lines = ["| gateway | load | req/s | p50 ms | p99 ms | CPU ms/request | errors |", "|---|---|---:|---:|---:|---:|---:|"];
  for (const r of rows) {
    const ms = (x: number | null): string => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(2));
    lines.push(`| ${r.target} | ${r.mode} | ${Math.round(r.result.rps).toLocaleString("en-US")} | ${ms(r.result.p50Ms)} | ${ms(r.result.p99Ms)} | ${r.cpuMsPerRequest.toFixed(3)} | ${r.result.errors} |`);
  }
  return lines.join("\n");
}

/** For each gateway and load, the round with the median req/s (rounds list the same rows in the same order). */
function medianRows(rounds: readonly (readonly Row[])[]): Row[] {
  return rounds[0]!.map((_, i) => {
    const runs = rounds.map((r) => r[i]!).sort((a, b) => a.result.rps - b.result.rps);
    return runs[Math.floor((runs.length - 1) / 2)]!;
  });
}

function ratios(rows: readonly Row[]): string {
  const rps = (target: string, mode: string): number | undefined => rows.find((r) => r.target.startsWith(target) && r.mode === mode)?.result.rps;
  const out: string[] = [];
  for (const mode of ["non-streaming", "streaming"]) {
    const sqlite = rps("Flotilla, SQLite", mode);
    const none = rps("Flotilla, store: none", mode);
    const bare = rps("bare Fastify", mode);
    const reading = rps("bare proxy reading", mode);
    const portkey = rps("Portkey", mode);
    const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || !(b > 0) ? "n/a" : `${(a / b).toFixed(2)}x`);
    out.push(`${mode}: ledger on / Portkey ${ratio(sqlite, portkey)}; ledger on / bare proxy ${ratio(sqlite, bare)}; ledger on / reading proxy ${ratio(sqlite, reading)}; reading proxy / bare proxy ${ratio(reading, bare)}; ledger on / store none ${ratio(sqlite, none)}`);
  }
  return out.join("\n");
}

if (!existsSync(join(ROOT, "dist/cli/run.js"))) {
  process.stderr.write("dist/ is missing: run `npm run build` first (Flotilla is measured as users run it, compiled)\n");
  process.exit(2);
}
const dir = await mkdtemp(join(tmpdir(), "flotilla-peers-"));
const upPort = await freePort();
const upstream = new UpstreamProc(upPort, [...TSX, join(ROOT, "bench/lib/instant-upstream.ts"), "--port", String(upPort)], /instant upstream listening/, "instant upstream");
await upstream.start();
try {
  const list = await targets(dir);
  const rounds: Row[][] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const rows: Row[] = [];
    for (const target of list) rows.push(...(await measure(target, upstream.url)));
    rounds.push(rows);
  }
  const rows = medianRows(rounds);
  const each = ROUNDS === 1 ? "" : `\nEach round:\n${rounds.map((r, i) => `- round ${i + 1}: ${ratios(r).replace(/\n/g, "; ")}`).join("\n")}\n`;
  process.stdout.write(`## Gateways side by side\n\nnode ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "?"}); ${SECONDS} s per run after 2 s of warm-up, ${TOKENS} tokens an answer, ${CONCURRENCY} in flight (closed loop), ${RATE} req/s (open loop); ${ROUNDS === 1 ? "one round" : `the median of ${ROUNDS} rounds by req/s`}\n\n${table(rows)}\n\n${ratios(rows)}\n${each}`);
} finally {
  upstream.kill();
  await rm(dir, { recursive: true, force: true });
}
