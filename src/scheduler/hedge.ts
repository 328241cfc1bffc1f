/**
 * Hedging the first token ("The Tail at Scale", Dean and Barroso): an
 * attempt that has not spoken by the time nearly every answer has is run a
 * second time on another replica with a free slot, and the first of the two
 * to speak keeps the answer. A replica that hangs before its first token, a
 * breaker's trial on one that has not recovered, or one far slower than its
 * peers then costs the client the hedge delay rather than a timeout. Pure,
 * so the live dispatcher and the simulator can share it.
 */
import type { Candidate } from "./pipeline.js";

export interface HedgePolicy {
  /** Off: every attempt waits on its own replica. */
  readonly enabled: boolean;
  /** The delay is this multiple of the recent 90th-percentile time to first token... */
  readonly factor: number;
  /** ...never below this (a fast fleet is not hedged for jitter)... */
  readonly minMs: number;
  /**
   * ...nor above this (what a first token may take before the replica counts
   * as slow), which also applies until enough answers are seen. A waiting
   * attempt looks again every `minMs`, so the first answers of a cold start
   * already bring the delay down for requests sent before them.
   */
  readonly maxMs: number;
}

export const DEFAULT_HEDGE: HedgePolicy = { enabled: true, factor: 3, minMs: 100, maxMs: 2_000 };

/** Answers seen before the recent times to first token are trusted. */
const MIN_SAMPLES = 4;
/** How many recent first tokens are kept. */
const WINDOW = 64;

/**
 * The recent times to first token of one model, a fixed window. Both are
 * asked once per request: the window and the sort are typed arrays, since
 * copying and sorting a plain array with a comparator cost each request
 * ~3 KB of garbage and ~400 calls back into JavaScript (a heap profile at
 * 1,000 req/s put 7% of the gateway's allocation there).
 */
export class FirstTokenLatency {
  readonly #samples = new Float64Array(WINDOW);
  readonly #sorted = new Float64Array(WINDOW);
  #count = 0;
  #next = 0;
  #p90: number | undefined;

  record(ms: number): void {
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % WINDOW;
    this.#count = Math.min(WINDOW, this.#count + 1);
    this.#p90 = undefined;
  }

  /** The 90th percentile of the window (nearest rank: with few answers, near the slowest), once it holds enough answers. */
  p90(): number | undefined {
    const n = this.#count;
    if (n < MIN_SAMPLES) return undefined;
    if (this.#p90 === undefined) {
      // Until the window fills, its answers are the first n slots.
      const sorted = this.#sorted.subarray(0, n);
      sorted.set(this.#samples.subarray(0, n));
      sorted.sort();
      this.#p90 = sorted[Math.min(n - 1, Math.ceil(0.9 * n) - 1)];
    }
    return this.#p90;
  }
}

/** How long an attempt may go without its first token before it is hedged; Infinity when hedging is off. */
export function hedgeDelayMs(policy: HedgePolicy, p90: number | undefined): number {
  if (!policy.enabled) return Infinity;
  if (p90 === undefined) return policy.maxMs;
  return Math.min(policy.maxMs, Math.max(policy.minMs, policy.factor * p90));
}

/**
 * Where a hedge may go: a ready replica other than those already tried, with
 * a slot free now. A hedge only ever uses spare capacity, so under load,
 * when every slot is busy, nothing is duplicated.
 */
export function hedgeCandidates(candidates: readonly Candidate[], tried: ReadonlySet<number>): Candidate[] {
  return candidates.map((c) => (c.ready && !tried.has(c.index) && c.active + c.queued < c.slots ? c : { ...c, ready: false }));
}
