/**
 * Synthetic load: arrivals (Poisson, bursty or evenly spaced), prompt and
 * answer lengths (log-normal with a given mean and spread, or fixed), and
 * shared-prefix groups (system prompts, few-shot templates, agent contexts)
 * expressed as the same kind of prefix-chained block ids a Mooncake trace
 * carries. Seeded: the same options give the same trace.
 */
import { exponential, gamma, logNormal, seededRandom, type Random } from "./random.js";
import type { PriorityClass } from "../scheduler/admission.js";
import type { Trace, TraceTenants } from "./traces.js";

export type ArrivalProcess = "poisson" | "bursty" | "uniform";

export interface LengthDist {
  readonly mean: number;
  /** Coefficient of variation (sd / mean) of a log-normal; 0 for a fixed length. */
  readonly cv?: number;
  readonly min?: number;
  readonly max?: number;
}

export interface PrefixOptions {
  /** Number of distinct shared prefixes; 0 for none. */
  readonly groups: number;
  /** Tokens of each shared prefix (whole blocks of it are shared). */
  readonly prefixTokens: number;
  /** Share of requests that start with one of the shared prefixes (default 1). */
  readonly share?: number;
  /** Zipf exponent of group popularity: 0 uniform (default), 1 classic Zipf. */
  readonly zipf?: number;
  /** Tokens per block (default 512). */
  readonly blockTokens?: number;
  readonly seed?: number;
}

export interface SyntheticOptions {
  readonly requests: number;
  /** Mean arrival rate, requests per second. */
  readonly ratePerS: number;
  readonly arrival?: ArrivalProcess;
  /** Bursty arrivals: coefficient of variation of the gaps (Gamma-distributed; 1 is Poisson). Default 3. */
  readonly burstiness?: number;
  readonly input?: LengthDist;
  readonly output?: LengthDist;
  readonly prefix?: PrefixOptions;
  /** Who sends the requests: each request's tenant is drawn by `share`; absent, one tenant sends all. */
  readonly tenants?: readonly SyntheticTenant[];
  readonly seed?: number;
}

export interface SyntheticTenant {
  readonly name: string;
  /** Fraction of the requests (normalised over all tenants). */
  readonly share: number;
  /** Fair-share weight at the admission lane (default 1). */
  readonly weight?: number;
  /** Default "interactive". */
  readonly priority?: PriorityClass;
}

export const DEFAULT_INPUT: LengthDist = { mean: 1024, cv: 1, min: 1, max: 32768 };
export const DEFAULT_OUTPUT: LengthDist = { mean: 128, cv: 1, min: 1, max: 4096 };

function drawLength(random: Random, d: LengthDist): number {
  const x = Math.round(logNormal(random, d.mean, d.cv ?? 0));
  return Math.min(d.max ?? Infinity, Math.max(d.min ?? 1, 1, x));
}

function checkLength(name: string, d: LengthDist): void {
  if (!(d.mean >= 1)) throw new RangeError(`${name} mean must be >= 1, got ${d.mean}`);
  if (d.cv !== undefined && !(d.cv >= 0)) throw new RangeError(`${name} cv must be >= 0, got ${d.cv}`);
}

/** Generates a synthetic trace. */
export function syntheticTrace(opts: SyntheticOptions): Trace {
  const n = opts.requests;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`requests must be a positive integer, got ${n}`);
  if (!(opts.ratePerS > 0) || !Number.isFinite(opts.ratePerS)) throw new RangeError(`rate must be a positive number of requests per second, got ${opts.ratePerS}`);
  const arrival = opts.arrival ?? "poisson";
  const cv = opts.burstiness ?? 3;
  if (arrival === "bursty" && !(cv > 0)) throw new RangeError(`burstiness must be > 0, got ${cv}`);
  const input = opts.input ?? DEFAULT_INPUT;
  const output = opts.output ?? DEFAULT_OUTPUT;
  checkLength("input", input);
  checkLength("output", output);
  const random = seededRandom(opts.seed ?? 1);
  const meanGapMs = 1000 / opts.ratePerS;
  // Gamma gaps with shape 1/cv² have mean meanGap and coefficient of variation cv.
  const shape = 1 / (cv * cv);
  const arrivalMs = new Float64Array(n);
  const inputTokens = new Int32Array(n);
  const outputTokens = new Int32Array(n);
  let t = 0;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      if (arrival === "uniform") t += meanGapMs;
      else if (arrival === "poisson") t += exponential(random, meanGapMs);
      else t += gamma(random, shape, meanGapMs / shape);
    }
    arrivalMs[i] = t;
    inputTokens[i] = drawLength(random, input);
    outputTokens[i] = drawLength(random, output);
  }
  const rate = `${opts.ratePerS} req/s`;
  const base: Trace = {
    name: `synthetic ${arrival}${arrival === "bursty" ? ` cv ${cv}` : ""} ${rate}, ${n} requests`,
    count: n,
    arrivalMs,
    inputTokens,
    outputTokens,
    blockOffsets: new Int32Array(n + 1),
    blockIds: new Int32Array(0),
    blockTokens: 0,
  };
  const withTenants = opts.tenants === undefined ? base : { ...base, tenants: drawTenants(opts.tenants, n, seededRandom((opts.seed ?? 1) + 2)) };
  if (opts.prefix === undefined || opts.prefix.groups === 0) return withTenants;
  return withSyntheticPrefixes(withTenants, { ...opts.prefix, seed: opts.prefix.seed ?? (opts.seed ?? 1) + 1 });
}

function drawTenants(tenants: readonly SyntheticTenant[], n: number, random: Random): TraceTenants {
  if (tenants.length === 0 || tenants.length > 0xffff) throw new RangeError(`tenants must list 1 to 65535 tenants, got ${tenants.length}`);
  let sum = 0;
  for (const t of tenants) {
    if (!(t.share > 0) || !Number.isFinite(t.share)) throw new RangeError(`tenant "${t.name}": share must be a positive number, got ${t.share}`);
    if (t.weight !== undefined && !(t.weight > 0)) throw new RangeError(`tenant "${t.name}": weight must be > 0, got ${t.weight}`);
    sum += t.share;
  }
  const of = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let x = random() * sum;
    let j = 0;
    while (j < tenants.length - 1 && (x -= tenants[j]!.share) >= 0) j++;
    of[i] = j;
  }
  return { names: tenants.map((t) => t.name), weights: tenants.map((t) => t.weight ?? 1), priorities: tenants.map((t) => t.priority ?? "interactive"), of };
}

/**
 * Gives every request a block chain: `share` of them start with the whole
 * blocks of one of `groups` shared prefixes (chosen by Zipf popularity), and
 * every other block of the prompt is unique. For traces without prefix
 * information (Azure) this is the only reuse they have.
 */
export function withSyntheticPrefixes(trace: Trace, opts: PrefixOptions): Trace {
  const groups = opts.groups;
  if (!Number.isInteger(groups) || groups < 0) throw new RangeError(`prefix groups must be a non-negative integer, got ${groups}`);
  const bs = opts.blockTokens ?? 512;
  if (!Number.isInteger(bs) || bs < 1) throw new RangeError(`block tokens must be a positive integer, got ${bs}`);
  if (!(opts.prefixTokens >= 0)) throw new RangeError(`prefix tokens must be >= 0, got ${opts.prefixTokens}`);
  const share = opts.share ?? 1;
  if (!(share >= 0 && share <= 1)) throw new RangeError(`prefix share must be in [0, 1], got ${share}`);
  const random = seededRandom(opts.seed ?? 7);
  const sharedBlocks = Math.floor(opts.prefixTokens / bs);
  const cdf = zipfCdf(Math.max(groups, 1), opts.zipf ?? 0);
  const n = trace.count;
  let total = 0;
  for (let i = 0; i < n; i++) total += Math.ceil(trace.inputTokens[i]! / bs);
  if (total + groups * sharedBlocks > 2 ** 31 - 1) throw new RangeError("too many blocks for 32-bit block ids");
  const blockOffsets = new Int32Array(n + 1);
  const blockIds = new Int32Array(total);
  let next = groups * sharedBlocks; // ids below are the shared prefixes' blocks
  let at = 0;
  for (let i = 0; i < n; i++) {
    const blocks = Math.ceil(trace.inputTokens[i]! / bs);
    let shared = 0;
    let group = 0;
    if (groups > 0 && sharedBlocks > 0 && random() < share) {
      group = pickZipf(cdf, random());
      // Only blocks wholly inside the prompt are shared; the one the prompt ends in is its own.
      shared = Math.min(sharedBlocks, Math.floor(trace.inputTokens[i]! / bs));
    }
    for (let j = 0; j < blocks; j++) blockIds[at++] = j < shared ? group * sharedBlocks + j : next++;
    blockOffsets[i + 1] = at;
  }
  return { ...trace, name: `${trace.name}, ${groups} shared prefixes of ${opts.prefixTokens} tokens`, blockOffsets, blockIds, blockTokens: bs };
}

function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s);
    cdf[k] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] = cdf[k]! / sum;
  return cdf;
}

function pickZipf(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
