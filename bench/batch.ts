/**
 * The Batch API on the built-in model (what `flotilla serve` runs with no
 * --model: one local replica, 4 slots), in-process gateway, SQLite store in
 * a temporary directory.
 *
 * 1. Throughput: a batch of --lines short chat requests (max_tokens 8),
 *    headroom 1: upload time, time from create to completed, lines/s,
 *    output tokens/s. Checks that the output file has exactly N lines with
 *    unique custom_ids and that the ledger has exactly N `ok` rows for the
 *    batch. Also: how full the runner keeps its slots, the gateway's event
 *    loop, the time in each store plan, and, for reference, the same
 *    request sent over HTTP with as many in flight as the batch runs.
 * 2. Interactive TTFT with and without a batch running, for each
 *    --headroom value: streaming chat requests arriving open-loop (Poisson,
 *    --rate per second, seeded) from a client in its own process, in
 *    --rounds alternating windows alone and with a batch (created before
 *    the window, cancelled after), --seconds of each in all. TTFT is the
 *    time to the first chunk with content.
 *
 *   node --import tsx bench/batch.ts [--lines 10000] [--seconds 24] [--rounds 3] [--rate 8] [--headroom 0,1,2] [--model PATH.gguf] [--skip throughput|ttft]
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { promisify } from "node:util";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import { createGatewayWithShutdown } from "../src/gateway/server.js";
import { ensureDefaultModel } from "../src/gguf/default-model.js";
import { promptCounter, rateBookFromConfig } from "../src/metering/config.js";
import { openStoreTenancy } from "../src/metering/store-tenancy.js";
import { seededRandom } from "../src/sim/random.js";
import { batchPlans, openStore, type Store } from "../src/store/index.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const SLOTS = 4; // a local replica's default `parallel`, as `flotilla serve` runs it
const BATCH_MAX_TOKENS = 8;
const INTERACTIVE_MAX_TOKENS = 16;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The interactive client, in its own process: `--ttft-client SPEC` prints the TTFTs as JSON.

interface ClientSpec {
  readonly url: string;
  readonly model: string;
  readonly rate: number;
  readonly seconds: number;
  readonly seed: number;
  /** Closed-loop instead: this many in flight, each request a batch line's body (a different prompt each), not streamed. */
  readonly concurrency?: number;
}
interface ClientResult {
  readonly ttftMs: number[];
  readonly totalMs: number[];
  errors: number;
}

/** One streamed chat completion: ms to the first chunk with content, and to the end. */
async function streamOne(spec: ClientSpec, content: string): Promise<{ ttft: number; total: number } | undefined> {
  const t0 = performance.now();
  const body = { model: spec.model, messages: [{ role: "user", content }], max_tokens: INTERACTIVE_MAX_TOKENS, temperature: 0, stream: true };
  const res = await fetch(`${spec.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (res.status !== 200 || res.body === null) {
    await res.text();
    return undefined;
  }
  const decoder = new TextDecoder();
  let ttft: number | undefined;
  let buffered = "";
  for await (const chunk of res.body) {
    if (ttft !== undefined) continue;
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    // A data event whose delta carries text (the role-only first chunk does not count).
    if (/"delta":\{[^}]*"content":"[^"]/.test(buffered)) ttft = performance.now() - t0;
  }
  return ttft === undefined ? undefined : { ttft, total: performance.now() - t0 };
}

/** The batch's lines sent directly over HTTP, closed-loop: the time of each. */
async function closedLoop(spec: ClientSpec, concurrency: number): Promise<ClientResult> {
  const result: ClientResult = { ttftMs: [], totalMs: [], errors: 0 };
  const end = performance.now() + spec.seconds * 1000;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const res = await fetch(`${spec.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(chatBody(spec.model, next++)) });
      await res.arrayBuffer();
      if (res.status === 200) result.totalMs.push(performance.now() - t0);
      else result.errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return result;
}

async function clientMain(spec: ClientSpec): Promise<void> {
  if (spec.concurrency !== undefined) {
    process.stdout.write(JSON.stringify(await closedLoop(spec, spec.concurrency)));
    return;
  }
  const random = seededRandom(spec.seed);
  const result: ClientResult = { ttftMs: [], totalMs: [], errors: 0 };
  const running: Promise<void>[] = [];
  const start = performance.now();
  for (let at = 0, i = 0; at < spec.seconds * 1000; at += (-Math.log(1 - random()) / spec.rate) * 1000, i++) {
    const wait = start + at - performance.now();
    if (wait > 0) await sleep(wait);
    const prompt = `Request ${i}: say something about ${Math.floor(random() * 1000)} ships in a fleet.`;
    running.push(
      streamOne(spec, prompt).then(
        (r) => {
          if (r === undefined) result.errors++;
          else {
            result.ttftMs.push(r.ttft);
            result.totalMs.push(r.total);
          }
        },
        () => void result.errors++,
      ),
    );
  }
  await Promise.all(running);
  process.stdout.write(JSON.stringify(result));
}

async function interactiveLoad(url: string, model: string, load: Omit<ClientSpec, "url" | "model">): Promise<ClientResult> {
  const spec: ClientSpec = { url, model, ...load };
  const self = new URL(import.meta.url).pathname;
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", self, "--ttft-client", JSON.stringify(spec)], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as ClientResult;
}

// ---------------------------------------------------------------------------------------------
// The gateway and the Batch API calls.

/** Time the gateway's event loop spends in the store's batch plans, by plan: SQLite runs each synchronously. */
type PlanTimes = Map<string, { calls: number; ms: number; maxMs: number }>;

const planNames = new Map<unknown, string>(Object.entries(batchPlans).map(([name, fn]) => [(fn as { prototype?: unknown }).prototype, name]));

function timePlans(store: Store): PlanTimes {
  const times: PlanTimes = new Map();
  const transact = store.transact.bind(store);
  store.transact = async (plan) => {
    const name = planNames.get(Object.getPrototypeOf(plan)) ?? "other";
    const t0 = performance.now();
    try {
      return await transact(plan);
    } finally {
      const ms = performance.now() - t0;
      const t = times.get(name) ?? { calls: 0, ms: 0, maxMs: 0 };
      times.set(name, { calls: t.calls + 1, ms: t.ms + ms, maxMs: Math.max(t.maxMs, ms) });
    }
  };
  return times;
}

interface Bench {
  readonly url: string;
  readonly store: Store;
  readonly plans: PlanTimes;
  /** Requests on the engine's slots now, and waiting for one. */
  load(): { active: number; queued: number };
  close(): Promise<void>;
}

async function startGateway(modelPath: string, model: string, headroomSlots: number): Promise<Bench> {
  const dir = await mkdtemp(join(tmpdir(), "flotilla-batch-bench-"));
  const config = parseFleetConfig({ models: [{ name: model, replicas: [{ engine: "local", path: modelPath, parallel: SLOTS }] }] });
  const fleet = buildFleet(config, { baseDir: process.cwd(), env: {} });
  await fleet.start((_r, err) => {
    throw err;
  });
  const store = await openStore(`sqlite:${join(dir, "ledger.db")}`);
  const plans = timePlans(store);
  const tenancy = await openStoreTenancy({ store, rates: await rateBookFromConfig(config, process.cwd()), countPromptTokens: promptCounter(fleet), log: () => {} });
  const gw = createGatewayWithShutdown({ fleet, tenancy, logLevel: "silent", batches: { store, holder: tenancy.instance.id, headroomSlots } });
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  return {
    url: `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`,
    store,
    plans,
    load: () => {
      const l = [...fleet.models()][0]!.replicas[0]!.engine.load();
      return { active: l.active, queued: l.queued };
    },
    close: async () => {
      await gw.shutdown(0);
      await tenancy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function chatBody(model: string, i: number): Record<string, unknown> {
  return { model, messages: [{ role: "user", content: `Line ${i}: name a ship of the fleet.` }], max_tokens: BATCH_MAX_TOKENS, temperature: 0 };
}

function inputFile(model: string, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push(JSON.stringify({ custom_id: `req-${i}`, method: "POST", url: "/v1/chat/completions", body: chatBody(model, i) }));
  return out.join("\n") + "\n";
}

async function call(url: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(url + path, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Uploads N lines and creates the batch; ms the upload took, and the batch's id. */
async function submit(url: string, model: string, lines: number): Promise<{ uploadMs: number; id: string; createdAt: number }> {
  const form = new FormData();
  form.append("purpose", "batch");
  form.append("file", new Blob([inputFile(model, lines)], { type: "application/jsonl" }), "bench.jsonl");
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/files`, { method: "POST", body: form });
  const file = (await res.json()) as { id: string };
  if (!res.ok) throw new Error(`upload: ${res.status} ${JSON.stringify(file)}`);
  const uploadMs = performance.now() - t0;
  const createdAt = performance.now();
  const batch = await call(url, "POST", "/v1/batches", { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  return { uploadMs, id: String(batch.id), createdAt };
}

interface Counts {
  readonly pending: number;
  readonly running: number;
  readonly completed: number;
  readonly failed: number;
}
async function batchState(url: string, id: string): Promise<{ status: string; counts: Counts; outputFileId: string | null }> {
  const b = await call(url, "GET", `/v1/batches/${id}`);
  return { status: String(b.status), counts: (b.x_flotilla as { lines: Counts }).lines, outputFileId: (b.output_file_id as string | null) ?? null };
}

const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
const sorted = (xs: readonly number[]): number[] => [...xs].sort((x, y) => x - y);
const f1 = (n: number): string => n.toFixed(1);
const log = (line: string): void => void process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------------------------------------
// 1. Throughput.

/** Polls the batch to its end, a progress line every few seconds; ms from create to completed (seen by polling every 500 ms, as a client would). */
async function follow(url: string, id: string, createdAt: number, total: number): Promise<{ ms: number; status: string; outputFileId: string | null }> {
  let lastPrint = performance.now();
  for (;;) {
    const s = await batchState(url, id);
    const now = performance.now();
    if (["completed", "failed", "cancelled", "expired"].includes(s.status)) return { ms: now - createdAt, status: s.status, outputFileId: s.outputFileId };
    if (now - lastPrint >= 3000) {
      const done = s.counts.completed + s.counts.failed;
      log(`  ${((now - createdAt) / 1000).toFixed(0)} s: ${done}/${total} done, ${s.counts.running} running, ${((done / (now - createdAt)) * 1000).toFixed(0)} lines/s so far`);
      lastPrint = now;
    }
    await sleep(500);
  }
}

/** The output file: N lines, unique custom_ids, every response a 200; and N `ok` ledger rows for the batch. */
async function verify(b: Bench, id: string, outputFileId: string | null, lines: number): Promise<{ outputTokens: number; problems: string[] }> {
  const problems: string[] = [];
  const text = outputFileId === null ? "" : await (await fetch(`${b.url}/v1/files/${outputFileId}/content`)).text();
  const out = text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number } | null });
  const ids = new Set(out.map((l) => l.custom_id));
  if (out.length !== lines) problems.push(`output file has ${out.length} lines, not ${lines}`);
  if (ids.size !== out.length) problems.push(`output file has ${out.length - ids.size} repeated custom_ids`);
  if (out.some((l) => l.response?.status_code !== 200)) problems.push("some output lines are not 200s");
  const rows = (await b.store.ledger()).filter((r) => r.requestId.startsWith(`${id}-`));
  const ok = rows.filter((r) => r.status === "ok");
  if (ok.length !== lines) problems.push(`ledger has ${ok.length} ok rows for the batch, not ${lines} (${rows.length} rows in all)`);
  return { outputTokens: ok.reduce((n, r) => n + r.outputTokens, 0), problems };
}

interface Watched {
  /** Lines on the engine's slots, on average, and the share of the time fewer than `full`. */
  readonly meanActive: number;
  readonly belowFull: number;
  /** Stretches of 100 ms or more with fewer than `full` lines on the slots: how many, and their time in all, ms. */
  readonly gaps: number;
  readonly gapMs: number;
  /** The gateway process's event loop: utilisation, and its delay's p99 and max, ms. */
  readonly elu: number;
  readonly delayP99Ms: number;
  readonly delayMaxMs: number;
}

/** Samples the engine's slots every 5 ms and the event loop until stopped. */
function watch(b: Bench, full: number): () => Watched {
  let samples = 0;
  let active = 0;
  let below = 0;
  let gapFrom: number | undefined;
  const gaps: number[] = [];
  const timer = setInterval(() => {
    const l = b.load();
    samples++;
    active += l.active;
    if (l.active < full) {
      below++;
      gapFrom ??= performance.now();
    } else if (gapFrom !== undefined) {
      if (performance.now() - gapFrom >= 100) gaps.push(performance.now() - gapFrom);
      gapFrom = undefined;
    }
  }, 5);
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const elu = performance.eventLoopUtilization();
  b.plans.clear();
  return () => {
    clearInterval(timer);
    delay.disable();
    const used = performance.eventLoopUtilization(elu).utilization;
    const gapMs = gaps.reduce((n, g) => n + g, 0);
    return { meanActive: active / samples, belowFull: below / samples, gaps: gaps.length, gapMs, elu: used, delayP99Ms: delay.percentile(99) / 1e6, delayMaxMs: delay.max / 1e6 };
  };
}

function planRows(plans: PlanTimes): string[] {
  const rows = [...plans].sort((x, y) => y[1].ms - x[1].ms);
  return rows.map(([name, t]) => `| store: ${name} | ${t.calls} calls, ${f1(t.ms)} ms in all, mean ${(t.ms / t.calls).toFixed(2)} ms, max ${f1(t.maxMs)} ms |`);
}

async function throughput(modelPath: string, model: string, lines: number): Promise<string[]> {
  const headroom = 1;
  const full = SLOTS - headroom;
  const b = await startGateway(modelPath, model, headroom);
  try {
    log(`throughput: ${lines} lines, headroom ${headroom}`);
    const { uploadMs, id, createdAt } = await submit(b.url, model, lines);
    log(`  uploaded in ${f1(uploadMs / 1000)} s; batch ${id}`);
    const stop = watch(b, full);
    const end = await follow(b.url, id, createdAt, lines);
    const w = stop();
    const plans = planRows(b.plans);
    const { outputTokens, problems } = await verify(b, id, end.outputFileId, lines);
    log(`  ${end.status} in ${f1(end.ms / 1000)} s; checks: ${problems.length === 0 ? "all pass" : problems.join("; ")}`);
    const stopDirect = watch(b, full);
    const d = await interactiveLoad(b.url, model, { rate: 0, seconds: 20, seed: 0, concurrency: full });
    const wd = stopDirect();
    const rps = d.totalMs.length / 20;
    return [
      `Batch of ${lines} lines (max_tokens ${BATCH_MAX_TOKENS}), headroom ${headroom}: ${end.status}`,
      "| | value |\n|---|---:|",
      `| upload (${(inputFile(model, lines).length / 1e6).toFixed(1)} MB) | ${f1(uploadMs / 1000)} s |`,
      `| create → completed | ${f1(end.ms / 1000)} s |`,
      `| lines/s | ${(lines / (end.ms / 1000)).toFixed(1)} |`,
      `| output tokens/s | ${(outputTokens / (end.ms / 1000)).toFixed(0)} (${outputTokens} tokens) |`,
      `| lines on the engine's slots (sampled every 5 ms) | mean ${w.meanActive.toFixed(2)} of ${full}; fewer than ${full} ${(w.belowFull * 100).toFixed(0)}% of the time; ${w.gaps} stretches ≥ 100 ms, ${f1(w.gapMs / 1000)} s in all |`,
      `| gateway event loop while the batch ran | ${(w.elu * 100).toFixed(0)}% busy (${f1((w.elu * end.ms) / lines)} ms per line); delay p99 ${f1(w.delayP99Ms)} ms, max ${f1(w.delayMaxMs)} ms |`,
      ...plans,
      `| the same requests over HTTP, ${full} in flight, 20 s (a client in its own process) | ${rps.toFixed(1)} requests/s, p50 ${f1(pct(sorted(d.totalMs), 0.5))} ms (${d.errors} errors); requests on the slots: mean ${wd.meanActive.toFixed(2)}; gateway event loop ${(wd.elu * 100).toFixed(0)}% busy (${f1((wd.elu * 1000) / rps)} ms per request) |`,
      `| checks (output file ${lines} lines, unique custom_ids, ${lines} ok ledger rows) | ${problems.length === 0 ? "pass" : `FAIL: ${problems.join("; ")}`} |`,
    ];
  } finally {
    await b.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Interactive TTFT with and without a batch.

interface TtftRow {
  readonly headroom: number;
  readonly alone: ClientResult;
  readonly withBatch: ClientResult;
  /** Batch lines completed per second during the windows with a batch. */
  readonly batchLinesPerS: number;
  /** The gateway's event loop, averaged over the rounds. */
  readonly loopAlone: Watched;
  readonly loopWithBatch: Watched;
}

function merge(results: readonly ClientResult[]): ClientResult {
  return { ttftMs: results.flatMap((r) => r.ttftMs), totalMs: results.flatMap((r) => r.totalMs), errors: results.reduce((n, r) => n + r.errors, 0) };
}

function meanWatched(ws: readonly Watched[]): Watched {
  const mean = (f: (w: Watched) => number): number => ws.reduce((n, w) => n + f(w), 0) / ws.length;
  return { meanActive: mean((w) => w.meanActive), belowFull: mean((w) => w.belowFull), gaps: mean((w) => w.gaps), gapMs: mean((w) => w.gapMs), elu: mean((w) => w.elu), delayP99Ms: mean((w) => w.delayP99Ms), delayMaxMs: Math.max(...ws.map((w) => w.delayMaxMs)) };
}

/** One window of the interactive load with a batch running: the batch starts first and is cancelled (and drained) after. */
async function withBatchWindow(b: Bench, model: string, load: Omit<ClientSpec, "url" | "model">, batchLines: number): Promise<{ result: ClientResult; loop: Watched; lines: number; ms: number }> {
  const { id } = await submit(b.url, model, batchLines);
  while ((await batchState(b.url, id)).counts.completed < 3) await sleep(20);
  const before = (await batchState(b.url, id)).counts.completed;
  const t0 = performance.now();
  const stop = watch(b, SLOTS);
  const result = await interactiveLoad(b.url, model, load);
  const loop = stop();
  const after = await batchState(b.url, id);
  const ms = performance.now() - t0;
  if (after.status !== "in_progress") log(`  warning: the batch was ${after.status} before the interactive load ended; give it more lines`);
  await call(b.url, "POST", `/v1/batches/${id}/cancel`);
  while (!["cancelled", "completed"].includes((await batchState(b.url, id)).status)) await sleep(50);
  return { result, loop, lines: after.counts.completed - before, ms };
}

/**
 * The same interactive load alone and with a batch, in alternating windows
 * (`rounds` of each, the same arrivals in both windows of a round), so that
 * the rest of the machine's load falls on both alike.
 */
async function ttftOne(modelPath: string, model: string, headroom: number, rate: number, seconds: number, rounds: number): Promise<TtftRow> {
  const b = await startGateway(modelPath, model, headroom);
  const window = seconds / rounds;
  const alone: { result: ClientResult; loop: Watched }[] = [];
  const withBatch: Awaited<ReturnType<typeof withBatchWindow>>[] = [];
  try {
    await interactiveLoad(b.url, model, { rate, seconds: 2, seed: 1 }); // warm-up, unrecorded
    for (let round = 0; round < rounds; round++) {
      const load = { rate, seconds: window, seed: 42 + round };
      const stop = watch(b, SLOTS);
      const result = await interactiveLoad(b.url, model, load);
      alone.push({ result, loop: stop() });
      // Enough lines to outlast the window at any headroom (it runs at most ~100 lines/s here).
      withBatch.push(await withBatchWindow(b, model, load, Math.max(500, Math.ceil(window * 150))));
      const [a, w] = [alone.at(-1)!.result, withBatch.at(-1)!.result];
      log(`ttft, headroom ${headroom}, round ${round + 1}/${rounds}: p50 ${f1(pct(sorted(a.ttftMs), 0.5))} ms alone, ${f1(pct(sorted(w.ttftMs), 0.5))} ms with a batch (${withBatch.at(-1)!.lines} lines meanwhile)`);
    }
  } finally {
    await b.close();
  }
  const lines = withBatch.reduce((n, w) => n + w.lines, 0);
  const ms = withBatch.reduce((n, w) => n + w.ms, 0);
  return {
    headroom,
    alone: merge(alone.map((x) => x.result)),
    withBatch: merge(withBatch.map((x) => x.result)),
    batchLinesPerS: (lines / ms) * 1000,
    loopAlone: meanWatched(alone.map((x) => x.loop)),
    loopWithBatch: meanWatched(withBatch.map((x) => x.loop)),
  };
}

const tails = (xs: readonly number[]): string => [0.5, 0.9, 0.99].map((p) => f1(pct(xs, p))).join(" / ");
const loop = (w: Watched): string => `${(w.elu * 100).toFixed(0)}%, ${f1(w.delayP99Ms)} ms`;

function ttftTable(rows: readonly TtftRow[], rate: number, seconds: number, rounds: number): string[] {
  const out = [
    `Interactive: streaming chat (max_tokens ${INTERACTIVE_MAX_TOKENS}), Poisson arrivals at ${rate}/s, ${seconds} s alone and ${seconds} s with a batch in ${rounds} alternating rounds (the same arrivals in both windows of a round); TTFT in ms`,
    "| headroom slots | requests (errors) alone / with batch | TTFT p50 / p90 / p99 alone | TTFT p50 / p90 / p99 with batch | p99 ratio | batch lines/s meanwhile | gateway event loop busy, delay p99 (alone → with batch) |",
    "|---:|---|---:|---:|---:|---:|---|",
  ];
  for (const r of rows) {
    const a = sorted(r.alone.ttftMs);
    const w = sorted(r.withBatch.ttftMs);
    const ratio = pct(w, 0.99) / pct(a, 0.99);
    out.push(
      `| ${r.headroom} | ${a.length} (${r.alone.errors}) / ${w.length} (${r.withBatch.errors}) | ${tails(a)} | ${tails(w)} | ${ratio.toFixed(2)}× ${ratio <= 1.2 ? "(≤ 1.2)" : "(> 1.2)"} | ${f1(r.batchLinesPerS)} | ${loop(r.loopAlone)} → ${loop(r.loopWithBatch)} |`,
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const given = arg("model", "");
  let modelPath = given;
  let note = given === "" ? "" : `model ${given} (--model)`;
  if (given === "") {
    try {
      modelPath = (await ensureDefaultModel()).path;
      note = `the built-in model (${modelPath})`;
    } catch (err) {
      modelPath = new URL("../../shared/models/llama-2-tiny-random.gguf", import.meta.url).pathname;
      note = `the built-in model could not be written (${String(err)}); falling back to ${modelPath}`;
    }
  }
  const model = basename(modelPath).replace(/\.gguf$/i, "");
  const lines = Number(arg("lines", "10000"));
  const seconds = Number(arg("seconds", "24"));
  const rounds = Number(arg("rounds", "3"));
  const rate = Number(arg("rate", "8"));
  const headrooms = arg("headroom", "0,1,2").split(",").map(Number);
  const skip = arg("skip", "");
  const report = [`${note}; one local replica, ${SLOTS} slots, SQLite store`, ""];
  if (skip !== "throughput") report.push(...(await throughput(modelPath, model, lines)), "");
  if (skip !== "ttft") {
    const rows: TtftRow[] = [];
    for (const h of headrooms) rows.push(await ttftOne(modelPath, model, h, rate, seconds, rounds));
    report.push(...ttftTable(rows, rate, seconds, rounds));
  }
  console.log(report.join("\n"));
}

const clientSpec = arg("ttft-client", "");
if (clientSpec !== "") await clientMain(JSON.parse(clientSpec) as ClientSpec);
else await main();
