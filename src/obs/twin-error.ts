/**
 * How far the hardware model (the twin's) is from the live fleet, per
 * replica: for each timed request, predicted / measured TTFT and TPOT, the
 * prediction made for that request's prompt, cached tokens and batch on the
 * replica's hardware (hardware/served.ts). Exported as
 * flotilla_twin_error_ratio{replica,metric}: the median ratio over the
 * replica's last WINDOW_REQUESTS timed requests of the last WINDOW_MS. 1 is
 * a perfect twin; below 1 the engine is slower than the model (0.5: twice
 * as slow), above 1 faster. A median, so one request stalled by a garbage
 * collection does not move it.
 */
import type { PerfProfile } from "../hardware/index.js";
import { servedTpotMs, servedTtftMs } from "../hardware/index.js";
import type { TokenUsage } from "../core/request.js";
import type { GenerationTiming } from "../store/types.js";

export const TWIN_METRICS = ["ttft", "tpot"] as const;
export type TwinMetric = (typeof TWIN_METRICS)[number];

export const WINDOW_REQUESTS = 256;
export const WINDOW_MS = 5 * 60_000;

/** The last ratios of one replica and metric, with when each was taken. */
class Window {
  readonly #ratios = new Float64Array(WINDOW_REQUESTS);
  readonly #times = new Float64Array(WINDOW_REQUESTS);
  #next = 0;

  push(ratio: number, now: number): void {
    const slot = this.#next++ % WINDOW_REQUESTS;
    this.#ratios[slot] = ratio;
    this.#times[slot] = now;
  }

  /** The median of those taken since `from`; undefined with none. */
  median(from: number): number | undefined {
    const xs: number[] = [];
    for (let i = 0; i < Math.min(this.#next, WINDOW_REQUESTS); i++) if (this.#times[i]! >= from) xs.push(this.#ratios[i]!);
    if (xs.length === 0) return undefined;
    xs.sort((a, b) => a - b);
    const mid = xs.length >> 1;
    return xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  }
}

export interface TwinErrorRow {
  readonly replica: string;
  readonly metric: TwinMetric;
  readonly value: number;
}

export class TwinError {
  readonly #profile: (replicaId: string) => PerfProfile | undefined;
  readonly #windows = new Map<string, Record<TwinMetric, Window>>();

  /** `profile`: the hardware model of a replica; replicas without one (no hardware in the fleet file) get no series. */
  constructor(profile: (replicaId: string) => PerfProfile | undefined) {
    this.#profile = profile;
  }

  /** One timed request that `replica` answered with `usage`, at `now` (ms). */
  observe(replica: string, usage: TokenUsage, timing: GenerationTiming, now: number): void {
    const p = this.#profile(replica);
    if (p === undefined) return;
    let w = this.#windows.get(replica);
    if (w === undefined) {
      w = { ttft: new Window(), tpot: new Window() };
      this.#windows.set(replica, w);
    }
    const request = { promptTokens: usage.promptTokens, cachedTokens: usage.cachedTokens, outputTokens: usage.completionTokens };
    if (timing.ttftMs > 0) w.ttft.push(servedTtftMs(p, { ...request, batch: timing.batch }) / timing.ttftMs, now);
    if (timing.tpotMs !== null && timing.tpotMs > 0) w.tpot.push(servedTpotMs(p, { ...request, batch: timing.batchMean ?? timing.batch }) / timing.tpotMs, now);
  }

  /** A replica left the fleet: its series go with it. */
  forget(replica: string): void {
    this.#windows.delete(replica);
  }

  /** Every replica's median ratios over the window ending at `now`. */
  rows(now: number): TwinErrorRow[] {
    const out: TwinErrorRow[] = [];
    for (const [replica, w] of this.#windows) {
      for (const metric of TWIN_METRICS) {
        const value = w[metric].median(now - WINDOW_MS);
        if (value !== undefined) out.push({ replica, metric, value });
      }
    }
    return out;
  }
}
