/**
 * The twin against the live fleet, shared by bench/twin-vs-live.ts and its
 * small form in test/sim/twin-vs-live.test.ts: serve the built-in tiny model
 * with the real local llama.cpp engine through an in-process gateway whose
 * usage ledger records every request's timing, drive it closed-loop, fit
 * the CPU's engine profile to one run's ledger rows (the same path as
 * `flotilla calibrate --from-ledger`), and replay another run through the
 * simulator on that profile, each client closed-loop as it was live.
 *
 * The replica names its hardware in the fleet file (HARDWARE), so its rows
 * record their setup as any priced replica's do; the model's shape is the
 * catalog's entry for the tiny model, which its GGUF file reads as.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { createGateway } from "../../src/gateway/server.js";
import { ensureDefaultModel } from "../../src/gguf/default-model.js";
import { calibrateEngine, type CalibrationReport } from "../../src/hardware/calibrate.js";
import { FITTED_PARAMS, servedTtftMs, type EngineParams } from "../../src/hardware/index.js";
import { promptCounter, rateBookFromConfig } from "../../src/metering/config.js";
import { measurementsFromLedger, recordedSetup } from "../../src/metering/ledger-calibration.js";
import { openStoreTenancy } from "../../src/metering/store-tenancy.js";
import { resolveSimFleet, type SimFleet } from "../../src/sim/fleet-file.js";
import { seededRandom } from "../../src/sim/random.js";
import { percentile, requestLatencies } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import type { Trace } from "../../src/sim/traces.js";
import { openStore, type LedgerRow, type Store } from "../../src/store/index.js";

/** llama.cpp's tokens per decode call as node-llama-cpp sets it (getDefaultContextBatchSize): the twin's pass budget. */
export const LLAMA_BATCH_TOKENS = 512;

/**
 * What the live replica is, as the catalogs name it: one core (the engine
 * runs one thread) of a Zen 5 server, as this machine's, and the tiny
 * model's shape, which its GGUF file reads as.
 */
export const HARDWARE = "cpu-zen5-core";
export const MODEL = "flotilla-tiny-random-v1";

export interface LiveGateway {
  readonly url: string;
  readonly store: Store;
  close(): Promise<void>;
}

/** The tiny model on one local replica of `parallel` sequences and one thread, behind a gateway with a SQLite ledger. */
export async function startLive(opts: { readonly parallel: number }): Promise<LiveGateway> {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-twin-"));
  const { path } = await ensureDefaultModel(dir);
  const replica = { engine: "local", path, parallel: opts.parallel, threads: 1, context: 1024, hardware: HARDWARE };
  const config = parseFleetConfig({ models: [{ name: "tiny", replicas: [replica] }] });
  const fleet = buildFleet(config, { baseDir: dir, env: process.env });
  await fleet.start(() => {});
  const store = await openStore(`sqlite:${join(dir, "ledger.db")}`);
  const tenancy = await openStoreTenancy({ store, rates: await rateBookFromConfig(config, dir), countPromptTokens: promptCounter(fleet), log: () => {}, ownsStore: false });
  // No hedging: a hedge is a second generation of the request, whose time is no one replica's.
  const app = createGateway({ fleet, tenancy, hedge: false, logLevel: "silent" });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  // The first requests run slow (code not yet compiled, caches cold): they are no engine's steady timing.
  await drive(url, [{ concurrency: 1, requests: 12, prompt: [16, 480], output: [8, 64] }], "warm-up", 0);
  return {
    url,
    store,
    close: async () => {
      await app.close();
      await tenancy.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One closed-loop phase: `concurrency` clients, each sending its next request when its last is answered. */
export interface Phase {
  readonly concurrency: number;
  readonly requests: number;
  /** Prompt characters (about one token each: the tiny model's vocabulary is bytes), drawn uniformly. */
  readonly prompt: readonly [number, number];
  /** max_tokens, drawn uniformly. */
  readonly output: readonly [number, number];
  /**
   * How long a client waits after an answer before its next request, ms,
   * drawn uniformly (default none). Replayed open-loop, a run with no pause
   * keeps the replica busy all the time, and a twin even a little slower
   * than the engine then queues without end; a pause leaves it room.
   */
  readonly thinkMs?: readonly [number, number];
}

/** A request as its client sent it. */
export interface Sent {
  readonly id: string;
  /** performance.now() when sent. */
  readonly at: number;
  /** The same client's request before this one, and how long after its answer this one was sent (ms): a closed-loop session. */
  readonly after?: { readonly id: string; readonly pauseMs: number };
}

const LETTERS = "abcdefghijklmnopqrstuvwxyz ";

/** Runs the phases one after another; returns every request sent, tagged `tag`. */
export async function drive(url: string, phases: readonly Phase[], tag: string, seed: number): Promise<Sent[]> {
  const random = seededRandom(seed);
  const draw = ([lo, hi]: readonly [number, number]): number => lo + Math.floor(random() * (hi - lo + 1));
  // Random letters: no two prompts share a prefix, so the engine's cache finds nothing (the twin's trace has no blocks).
  const text = (n: number): string => Array.from({ length: n }, () => LETTERS[Math.floor(random() * LETTERS.length)]).join("");
  const sent: Sent[] = [];
  for (const phase of phases) {
    let left = phase.requests;
    const client = async (): Promise<void> => {
      let last: { id: string; answeredAt: number } | undefined;
      while (left-- > 0) {
        const id = `${tag}-${sent.length}`;
        const body = JSON.stringify({ model: "tiny", prompt: text(draw(phase.prompt)), max_tokens: draw(phase.output), temperature: 1 });
        const at = performance.now();
        sent.push({ id, at, ...(last === undefined ? {} : { after: { id: last.id, pauseMs: at - last.answeredAt } }) });
        const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", "x-request-id": id }, body });
        if (!res.ok) throw new Error(`request ${id}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
        last = { id, answeredAt: performance.now() };
        if (phase.thinkMs !== undefined) await new Promise((r) => setTimeout(r, draw(phase.thinkMs!)));
      }
    };
    await Promise.all(Array.from({ length: phase.concurrency }, client));
  }
  return sent;
}

/**
 * Two runs in `rounds` alternating blocks (each phase's requests split
 * evenly), so both meet the same load from whatever else shares the
 * machine: on a shared host that load moves by tens of percent from one
 * second to the next, and two runs one after the other would differ by it.
 */
export async function driveAlternating(url: string, a: readonly Phase[], b: readonly Phase[], rounds: number, seed: number): Promise<{ a: Sent[]; b: Sent[] }> {
  const part = (phases: readonly Phase[], r: number): Phase[] =>
    phases.map((p) => ({ ...p, requests: Math.round((p.requests * (r + 1)) / rounds) - Math.round((p.requests * r) / rounds) })).filter((p) => p.requests > 0);
  const out = { a: [] as Sent[], b: [] as Sent[] };
  for (let r = 0; r < rounds; r++) {
    out.a.push(...(await drive(url, part(a, r), `a${r}`, seed + 2 * r)));
    out.b.push(...(await drive(url, part(b, r), `b${r}`, seed + 2 * r + 1)));
  }
  return out;
}

/** The ledger rows of the requests sent, in the order sent (each settled, so its timing is there). */
export async function rowsOf(store: Store, sent: readonly Sent[]): Promise<LedgerRow[]> {
  const byId = new Map((await store.ledger({ timed: true })).map((r) => [r.requestId, r]));
  return sent.flatMap((s) => {
    const row = byId.get(s.id);
    return row === undefined ? [] : [row];
  });
}

/**
 * Where a CPU's fit starts (`calibrate --from`): the built-in parameters
 * without GEMM tile padding. The built-in 74 rows are a GPU's tensor-core
 * tiles, which make a prompt of 20 tokens cost as much as one of 90; a CPU
 * core runs a GEMM of any height at about the same rate per row.
 */
export const CPU_START: EngineParams = { params: { ...FITTED_PARAMS, gemmPadTokens: 0 }, overheadScale: {} };

/** The engine profile fitted to `rows` as `flotilla calibrate --from-ledger` fits it: the setup each row recorded, from `start`. */
export function calibrate(rows: readonly LedgerRow[], start: EngineParams = CPU_START): CalibrationReport {
  const { groups } = measurementsFromLedger(rows, recordedSetup());
  if (groups.length !== 1) throw new Error(`expected the rows of one setup, got ${groups.map((g) => g.key).join(", ") || "none"}`);
  return calibrateEngine(groups[0]!.measurements, start, undefined);
}

/** The live replica in the twin, running `engine`: llama.cpp's pass budget, no host tier. */
export function twinFleet(engine: EngineParams, parallel: number): SimFleet {
  const island = { name: "cpu", hardware: HARDWARE, model: MODEL, precision: "f32", tp: 1, count: 1, max_batch: parallel, host_kv_gb: 0, profile: "calibrated" };
  return resolveSimFleet({ islands: [island], engine: { step_tokens: LLAMA_BATCH_TOKENS } }, "twin", { loadProfile: () => engine });
}

/**
 * The live requests as a trace: their prompt and output tokens as the ledger
 * counted them; each client's first request at its send time, each later one
 * the pause it had after its client's last answer, once the twin answered
 * that one (closed-loop, as the clients were).
 */
export function traceOf(sent: readonly Sent[], rows: readonly LedgerRow[]): Trace {
  const byId = new Map(rows.map((r) => [r.requestId, r]));
  const kept = sent.filter((s) => byId.has(s.id));
  const index = new Map(kept.map((s, i) => [s.id, i]));
  const t0 = kept[0]?.at ?? 0;
  const n = kept.length;
  const sessions = { follows: new Int32Array(n).fill(-1), thinkMs: new Float64Array(n) };
  const trace = { name: "live", count: n, arrivalMs: new Float64Array(n), inputTokens: new Int32Array(n), outputTokens: new Int32Array(n), blockOffsets: new Int32Array(n + 1), blockIds: new Int32Array(0), blockTokens: 0, sessions };
  kept.forEach((s, i) => {
    const row = byId.get(s.id)!;
    trace.arrivalMs[i] = s.at - t0;
    trace.inputTokens[i] = Math.max(1, row.inputTokens);
    trace.outputTokens[i] = Math.max(1, row.outputTokens);
    // The live clients were closed-loop: each request follows its client's last answer by the pause it had.
    const before = s.after === undefined ? undefined : index.get(s.after.id);
    if (before !== undefined) {
      sessions.follows[i] = before;
      sessions.thinkMs[i] = Math.max(0, s.after!.pauseMs);
    }
  });
  return trace;
}

export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

export interface Latencies {
  readonly ttft: Percentiles;
  readonly tpot: Percentiles;
}

function percentiles(xs: readonly number[]): Percentiles {
  const sorted = Float64Array.from(xs).sort();
  return { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99) };
}

/** TTFT and TPOT percentiles of the live requests, as the gateway timed them (the ledger's timing: arrival at the replica to first token). */
export function liveLatencies(rows: readonly LedgerRow[]): Latencies {
  const ttft = rows.flatMap((r) => (r.timing === null ? [] : [r.timing.ttftMs]));
  const tpot = rows.flatMap((r) => (r.timing?.tpotMs == null ? [] : [r.timing.tpotMs]));
  return { ttft: percentiles(ttft), tpot: percentiles(tpot) };
}

/** The same percentiles of the twin replaying `trace` on `fleet`. */
export function twinLatencies(fleet: SimFleet, trace: Trace): Latencies {
  const { ttft, tpot } = requestLatencies(simulate({ fleet, trace }));
  return { ttft: percentiles([...ttft]), tpot: percentiles([...tpot]) };
}

/** (twin - live) / live for every percentile of both metrics. */
export function errors(live: Latencies, twin: Latencies): { readonly metric: string; readonly live: number; readonly twin: number; readonly error: number }[] {
  return (["ttft", "tpot"] as const).flatMap((m) =>
    (["p50", "p90", "p99"] as const).map((q) => ({ metric: `${m.toUpperCase()} ${q}`, live: live[m][q], twin: twin[m][q], error: (twin[m][q] - live[m][q]) / live[m][q] })),
  );
}

/**
 * Live TTFT by the batch each request joined, against the hardware model's
 * prediction for the same requests (median of each): where the two part is
 * where the engine does something the twin does not.
 */
export function ttftByBatch(rows: readonly LedgerRow[], engine: EngineParams): { readonly batch: number; readonly requests: number; readonly liveMs: number; readonly modelMs: number }[] {
  const p = twinFleet(engine, 1).islands[0]!.profile;
  const byBatch = new Map<number, { live: number[]; model: number[] }>();
  for (const r of rows) {
    if (r.timing === null) continue;
    const b = byBatch.get(r.timing.batch) ?? { live: [], model: [] };
    b.live.push(r.timing.ttftMs);
    b.model.push(servedTtftMs(p, { promptTokens: r.inputTokens, cachedTokens: r.cachedTokens, batch: r.timing.batch }));
    byBatch.set(r.timing.batch, b);
  }
  const median = (xs: number[]): number => percentile(Float64Array.from(xs).sort(), 0.5);
  return [...byBatch].sort((a, b) => a[0] - b[0]).map(([batch, b]) => ({ batch, requests: b.live.length, liveMs: median(b.live), modelMs: median(b.model) }));
}
