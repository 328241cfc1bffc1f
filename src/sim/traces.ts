/**
 * Request traces: what arrives when, how long its prompt and answer are, and
 * (where the trace says) which prefix blocks its prompt is made of. Columnar
 * typed arrays, so a million requests cost tens of megabytes, not a million
 * objects.
 *
 * Formats:
 * - Mooncake JSONL (FAST'25 traces): one object per line with `timestamp`
 *   (ms), `input_length`, `output_length`, `hash_ids` (prefix-chained blocks
 *   of 512 tokens: equal ids mean equal prefixes up to and including that
 *   block).
 * - Azure LLM inference CSV (2023/2024): `TIMESTAMP,ContextTokens,GeneratedTokens`,
 *   timestamps as `2023-11-16 18:15:46.6805900` (UTC); no prefix information.
 */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import type { PriorityClass } from "../scheduler/admission.js";

export interface Trace {
  /** Where it came from, for reports ("mooncake_conversation.jsonl", "synthetic poisson 10 req/s"). */
  readonly name: string;
  readonly count: number;
  /** Arrival times in ms from the start of the trace, non-decreasing. */
  readonly arrivalMs: Float64Array;
  /** Prompt tokens, >= 1. */
  readonly inputTokens: Int32Array;
  /** Tokens to generate, >= 1. */
  readonly outputTokens: Int32Array;
  /** Request i's prefix blocks are blockIds[blockOffsets[i], blockOffsets[i + 1]); all empty when the trace has none. */
  readonly blockOffsets: Int32Array;
  readonly blockIds: Int32Array;
  /** Tokens per block the hashes were made with (512 for Mooncake); 0 when the trace has no blocks. */
  readonly blockTokens: number;
  /** Who sent each request, for the admission lane's fair share and priority classes; absent: one tenant, every request interactive. */
  readonly tenants?: TraceTenants;
  /** Closed-loop clients: which requests wait for an earlier one's answer; absent: every request at its arrivalMs. */
  readonly sessions?: TraceSessions;
}

/**
 * A closed-loop client sends its next request a pause after its last one
 * ended. Request i with `follows[i]` = j >= 0 arrives `thinkMs[i]` after
 * request j (earlier in the trace) was answered, refused or lost, whenever
 * that is in the run; its `arrivalMs` only keeps the trace's order. -1: it
 * arrives at its `arrivalMs`.
 */
export interface TraceSessions {
  readonly follows: Int32Array;
  readonly thinkMs: Float64Array;
}

/** Tenants by index, and request i's tenant `of[i]`. */
export interface TraceTenants {
  readonly names: readonly string[];
  /** Fair-share weights, as a tenant's `weight` in the gateway. */
  readonly weights: readonly number[];
  readonly priorities: readonly PriorityClass[];
  readonly of: Uint16Array;
}

export type TraceFormat = "mooncake" | "azure";

export class TraceError extends Error {
  override readonly name = "TraceError";
}

const MAX_ID = 2 ** 31 - 1;

/** Accumulates rows, then freezes them into a Trace sorted by arrival. */
class TraceBuilder {
  readonly #arrival: number[] = [];
  readonly #input: number[] = [];
  readonly #output: number[] = [];
  readonly #offsets: number[] = [0];
  readonly #ids: number[] = [];

  get count(): number {
    return this.#arrival.length;
  }

  add(arrivalMs: number, input: number, output: number, blocks?: readonly number[]): void {
    this.#arrival.push(arrivalMs);
    this.#input.push(input);
    this.#output.push(output);
    if (blocks !== undefined) for (const b of blocks) this.#ids.push(b);
    this.#offsets.push(this.#ids.length);
  }

  build(name: string, blockTokens: number): Trace {
    const n = this.#arrival.length;
    let sorted = true;
    for (let i = 1; i < n && sorted; i++) if (this.#arrival[i]! < this.#arrival[i - 1]!) sorted = false;
    const order = Array.from({ length: n }, (_, i) => i);
    if (!sorted) order.sort((a, b) => this.#arrival[a]! - this.#arrival[b]! || a - b);
    const arrivalMs = new Float64Array(n);
    const inputTokens = new Int32Array(n);
    const outputTokens = new Int32Array(n);
    const blockOffsets = new Int32Array(n + 1);
    const blockIds = new Int32Array(this.#ids.length);
    let at = 0;
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      arrivalMs[k] = this.#arrival[i]!;
      inputTokens[k] = this.#input[i]!;
      outputTokens[k] = this.#output[i]!;
      for (let j = this.#offsets[i]!; j < this.#offsets[i + 1]!; j++) blockIds[at++] = this.#ids[j]!;
      blockOffsets[k + 1] = at;
    }
    return { name, count: n, arrivalMs, inputTokens, outputTokens, blockOffsets, blockIds, blockTokens: this.#ids.length > 0 ? blockTokens : 0 };
  }
}

function lineError(source: string, line: number, message: string): TraceError {
  return new TraceError(`${source}:${line}: ${message}`);
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0;
}

/** Parses Mooncake JSONL text. Errors name the line. Blank lines are skipped; unknown fields ignored. */
export function parseMooncake(text: string, source = "trace", blockTokens = 512): Trace {
  const b = new TraceBuilder();
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lineNo++;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw lineError(source, lineNo, `not valid JSON: ${line.length > 60 ? `${line.slice(0, 60)}...` : line}`);
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) throw lineError(source, lineNo, "expected a JSON object");
    const r = row as Record<string, unknown>;
    const ts = r.timestamp;
    if (typeof ts !== "number" || !Number.isFinite(ts) || ts < 0) throw lineError(source, lineNo, `"timestamp" must be a number of milliseconds >= 0, got ${JSON.stringify(ts)}`);
    const input = r.input_length;
    if (!isNonNegInt(input)) throw lineError(source, lineNo, `"input_length" must be a non-negative integer, got ${JSON.stringify(input)}`);
    const output = r.output_length;
    if (!isNonNegInt(output)) throw lineError(source, lineNo, `"output_length" must be a non-negative integer, got ${JSON.stringify(output)}`);
    const ids = r.hash_ids;
    if (ids !== undefined && !Array.isArray(ids)) throw lineError(source, lineNo, `"hash_ids" must be an array of block ids`);
    if (ids !== undefined) {
      for (const id of ids as unknown[]) {
        if (!isNonNegInt(id) || id > MAX_ID) throw lineError(source, lineNo, `"hash_ids" must hold integers in [0, ${MAX_ID}], got ${JSON.stringify(id)}`);
      }
    }
    // A request computes at least one prompt token and yields at least one token.
    b.add(ts, Math.max(1, input), Math.max(1, output), ids as number[] | undefined);
  }
  if (b.count === 0) throw new TraceError(`${source}: no requests`);
  return b.build(source, blockTokens);
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?Z?$/;

/** An Azure timestamp (UTC) as whole milliseconds since the epoch and the fraction of a millisecond, or undefined. */
function azureTimestampParts(s: string): [number, number] | undefined {
  const m = DATE_TIME.exec(s.trim());
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, sec, frac] = m;
  const whole = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec));
  if (Number.isNaN(whole)) return undefined;
  const fracMs = frac === undefined ? 0 : Number(frac) * 1000;
  return [whole + Math.floor(fracMs), fracMs - Math.floor(fracMs)];
}

/** Milliseconds since the epoch of an Azure timestamp (UTC), or NaN. */
export function parseAzureTimestamp(s: string): number {
  const parts = azureTimestampParts(s);
  return parts === undefined ? NaN : parts[0] + parts[1];
}

/**
 * Parses Azure LLM inference CSV text; arrivals are relative to the earliest
 * row (whole and fractional milliseconds kept apart until then, so the
 * trace's 100 ns resolution survives).
 */
export function parseAzureCsv(text: string, source = "trace"): Trace {
  const lines = text.split("\n");
  const header = (lines[0] ?? "").replace(/\r$/, "").split(",").map((h) => h.trim());
  const col = (name: string): number => {
    const i = header.findIndex((h) => h.toLowerCase() === name.toLowerCase());
    if (i < 0) throw lineError(source, 1, `header must name the columns TIMESTAMP, ContextTokens, GeneratedTokens; got "${header.join(",")}"`);
    return i;
  };
  const cTs = col("TIMESTAMP");
  const cIn = col("ContextTokens");
  const cOut = col("GeneratedTokens");
  const rows: { t: number; f: number; i: number; o: number }[] = [];
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k]!.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const cells = line.split(",");
    if (cells.length !== header.length) throw lineError(source, k + 1, `expected ${header.length} columns, got ${cells.length}`);
    const ts = azureTimestampParts(cells[cTs]!);
    if (ts === undefined) throw lineError(source, k + 1, `TIMESTAMP "${cells[cTs]}" is not a date-time like 2023-11-16 18:15:46.6805900`);
    const i = Number(cells[cIn]);
    if (!isNonNegInt(i) || cells[cIn]!.trim() === "") throw lineError(source, k + 1, `ContextTokens must be a non-negative integer, got "${cells[cIn]}"`);
    const o = Number(cells[cOut]);
    if (!isNonNegInt(o) || cells[cOut]!.trim() === "") throw lineError(source, k + 1, `GeneratedTokens must be a non-negative integer, got "${cells[cOut]}"`);
    rows.push({ t: ts[0], f: ts[1], i, o });
  }
  if (rows.length === 0) throw new TraceError(`${source}: no requests`);
  let t0 = Infinity;
  let f0 = 0;
  for (const r of rows) {
    if (r.t + r.f < t0 + f0) {
      t0 = r.t;
      f0 = r.f;
    }
  }
  const b = new TraceBuilder();
  for (const r of rows) b.add(r.t - t0 + (r.f - f0), Math.max(1, r.i), Math.max(1, r.o));
  return b.build(source, 0);
}

/** The format a file holds, by extension, else by its first character. */
export function detectFormat(path: string, text: string): TraceFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".json" || ext === ".ndjson") return "mooncake";
  if (ext === ".csv") return "azure";
  return text.trimStart().startsWith("{") ? "mooncake" : "azure";
}

/** Reads a trace file (Mooncake JSONL or Azure CSV). */
export async function loadTrace(path: string, format?: TraceFormat): Promise<Trace> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new TraceError(`cannot read trace ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  const name = path.split(/[\\/]/).pop() ?? path;
  return (format ?? detectFormat(path, text)) === "mooncake" ? parseMooncake(text, name) : parseAzureCsv(text, name);
}

// ---------------------------------------------------------------------------
// transforms: each returns a new Trace sharing what it does not change

/** Replays `factor` times faster (arrival times divided by it). */
export function scaleRate(trace: Trace, factor: number): Trace {
  if (!(factor > 0) || !Number.isFinite(factor)) throw new RangeError(`rate scale must be a positive number, got ${factor}`);
  if (factor === 1) return trace;
  const arrivalMs = new Float64Array(trace.count);
  for (let i = 0; i < trace.count; i++) arrivalMs[i] = trace.arrivalMs[i]! / factor;
  return { ...trace, name: `${trace.name} x${factor}`, arrivalMs };
}

export interface DiurnalCurve {
  /** The ratio of the busiest moment's rate to the quietest's (>= 1; 1 is flat). */
  readonly peakToTrough: number;
  /** The curve's period, s (default a day). */
  readonly periodS?: number;
  /** When in the period the rate peaks, s (default half way: the afternoon of a day starting at midnight). */
  readonly peakAtS?: number;
}

/**
 * The same requests arriving along a daily curve: the rate is the trace's
 * mean times 1 + a·cos(2π(t - peak)/period), a = (r - 1)/(r + 1) for a
 * peak-to-trough ratio r, so the busiest moment is r times the quietest
 * and whole periods keep the mean. Arrival times are warped, not
 * resampled: an arrival at s of the trace's own time comes at the t where
 * the curve's expected count first reaches the trace's count at s, so the
 * arrival process keeps its shape (Poisson stays Poisson, bursts stay
 * bursts) with a rate that moves through the day.
 */
export function withDiurnalRate(trace: Trace, curve: DiurnalCurve): Trace {
  const r = curve.peakToTrough;
  if (!(r >= 1) || !Number.isFinite(r)) throw new RangeError(`peak-to-trough ratio must be a number >= 1, got ${r}`);
  const periodMs = (curve.periodS ?? 86_400) * 1000;
  if (!(periodMs > 0) || !Number.isFinite(periodMs)) throw new RangeError(`diurnal period must be a positive number of seconds, got ${curve.periodS}`);
  if (r === 1) return trace;
  const a = (r - 1) / (r + 1);
  const w = (2 * Math.PI) / periodMs;
  const peakMs = (curve.peakAtS ?? periodMs / 2000) * 1000;
  // Expected arrivals by t, in units of the mean gap: increasing, with slope 1 + a·cos(...) >= 1 - a > 0.
  const count = (t: number): number => t + (a / w) * (Math.sin(w * (t - peakMs)) + Math.sin(w * peakMs));
  const arrivalMs = new Float64Array(trace.count);
  let t = 0;
  for (let i = 0; i < trace.count; i++) {
    const s = trace.arrivalMs[i]!;
    // Newton from the last arrival's time; the slope is bounded below, so it converges without overshooting far.
    for (let k = 0; k < 50; k++) {
      const step = (count(t) - s) / (1 + a * Math.cos(w * (t - peakMs)));
      t -= step;
      if (Math.abs(step) < 1e-6) break;
    }
    arrivalMs[i] = Math.max(t, i > 0 ? arrivalMs[i - 1]! : 0);
  }
  return { ...trace, name: `${trace.name}, diurnal ${r}:1`, arrivalMs };
}

/**
 * Requests recorded at one timestamp, spread over the gap to the next one.
 * Some traces round arrivals (the Mooncake conversation trace records about
 * ten requests at once every 3 s), which turns a steady load into bursts that
 * no slower replay rate thins out. Each run of equal timestamps gets sorted
 * uniform random times in [t, next distinct t): a Poisson process given the
 * counts per interval. The order of requests is kept; the last run spreads
 * over the median gap. Seeded: the same trace and seed give the same times.
 */
export function spreadTies(trace: Trace, random: () => number): Trace {
  const n = trace.count;
  const src = trace.arrivalMs;
  const gaps: number[] = [];
  for (let i = 1; i < n; i++) if (src[i]! > src[i - 1]!) gaps.push(src[i]! - src[i - 1]!);
  if (gaps.length === n - 1) return trace; // no ties
  gaps.sort((a, b) => a - b);
  const lastGap = gaps.length > 0 ? gaps[gaps.length >> 1]! : 0;
  const arrivalMs = new Float64Array(n);
  const offsets: number[] = [];
  for (let i = 0; i < n; ) {
    let j = i + 1;
    while (j < n && src[j] === src[i]) j++;
    const gap = j < n ? src[j]! - src[i]! : lastGap;
    offsets.length = 0;
    for (let k = i; k < j; k++) offsets.push(random() * gap);
    offsets.sort((a, b) => a - b);
    for (let k = i; k < j; k++) arrivalMs[k] = src[i]! + offsets[k - i]!;
    i = j;
  }
  return { ...trace, name: `${trace.name} (ties spread)`, arrivalMs };
}

/** The first `n` requests. */
export function truncateTrace(trace: Trace, n: number): Trace {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`truncate must be a positive integer, got ${n}`);
  if (n >= trace.count) return trace;
  return {
    ...trace,
    count: n,
    arrivalMs: trace.arrivalMs.subarray(0, n),
    inputTokens: trace.inputTokens.subarray(0, n),
    outputTokens: trace.outputTokens.subarray(0, n),
    blockOffsets: trace.blockOffsets.subarray(0, n + 1),
    // A request follows only an earlier one, so the first n keep their sessions whole.
    ...(trace.sessions === undefined ? {} : { sessions: { follows: trace.sessions.follows.subarray(0, n), thinkMs: trace.sessions.thinkMs.subarray(0, n) } }),
  };
}

/** The requests that arrive before `ms`. */
export function limitDuration(trace: Trace, ms: number): Trace {
  if (!(ms > 0)) throw new RangeError(`duration must be positive, got ${ms}`);
  let n = 0;
  while (n < trace.count && trace.arrivalMs[n]! < ms) n++;
  if (n === 0) throw new RangeError(`no request arrives in the first ${ms / 1000} s`);
  return truncateTrace(trace, n);
}

/** Infinite-cache block reuse: block references already seen earlier in the trace, and all references. */
export function blockReuse(trace: Trace): { readonly hits: number; readonly refs: number; readonly rate: number } {
  const seen = new Set<number>();
  let hits = 0;
  const ids = trace.blockIds;
  const end = trace.blockOffsets[trace.count]!;
  for (let j = 0; j < end; j++) {
    const id = ids[j]!;
    if (seen.has(id)) hits++;
    else seen.add(id);
  }
  return { hits, refs: end, rate: end === 0 ? 0 : hits / end };
}

/** Totals for reports. */
export function traceStats(trace: Trace): { readonly requests: number; readonly durationMs: number; readonly inputTokens: number; readonly outputTokens: number; readonly blockRefs: number } {
  let input = 0;
  let output = 0;
  for (let i = 0; i < trace.count; i++) {
    input += trace.inputTokens[i]!;
    output += trace.outputTokens[i]!;
  }
  return {
    requests: trace.count,
    durationMs: trace.count === 0 ? 0 : trace.arrivalMs[trace.count - 1]! - trace.arrivalMs[0]!,
    inputTokens: input,
    outputTokens: output,
    blockRefs: trace.blockOffsets[trace.count]! - trace.blockOffsets[0]!,
  };
}
