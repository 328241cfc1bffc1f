/**
 * How many replicas a pool of identical replicas should have: the
 * autoscaler's decision, the same in the twin (src/sim/autoscaling.ts) and
 * in the live gateway (src/gateway/autoscaling.ts). Pure: the caller feeds
 * it what it observed and the time, and acts on the count.
 *
 * - Reactive: enough slots for the work on the pool now (sequences running
 *   and requests waiting) at the target utilisation.
 * - Predictive: also enough replicas for the arrival rate expected once a
 *   replica ordered now is serving (the rate's linear trend over the last
 *   window, extrapolated by the provisioning delay), at the requests/s one
 *   replica serves within the SLO (from the hardware model), at the target
 *   utilisation. The reactive count stays a floor: a forecast never takes
 *   away slots the work needs now.
 *
 * Scaling up is immediate; scaling down waits out the cooldown: the count
 * is the highest recommended over the last `cooldownMs` (Kubernetes' HPA
 * scale-down stabilisation), so a dip shorter than the cooldown removes
 * nothing and a replica is not let go just before the load comes back.
 */
export interface AutoscaleSettings {
  readonly min: number;
  readonly max: number;
  readonly mode: "reactive" | "predictive";
  /** Share of capacity to run at, in (0, 1]: the headroom for bursts and for the provisioning delay. */
  readonly targetUtilisation: number;
  /** From ordering a replica to its serving (loading weights): how far ahead the forecast looks. */
  readonly provisioningMs: number;
  readonly cooldownMs: number;
  /** The arrivals the forecast's trend is fitted to. */
  readonly windowMs: number;
}

export const AUTOSCALE_DEFAULTS = {
  mode: "reactive",
  targetUtilisation: 0.7,
  provisioningMs: 180_000,
  cooldownMs: 300_000,
  windowMs: 600_000,
} as const satisfies Partial<AutoscaleSettings>;

/** What the pool looks like now. */
export interface PoolLoad {
  /** Sequences generating on the pool's replicas. */
  readonly running: number;
  /** Requests waiting for a slot on the pool (at its replicas, and its share of the front door's queue). */
  readonly waiting: number;
  readonly slotsPerReplica: number;
  /** Requests/s one replica serves within the SLO; predictive mode only (absent: reactive only). */
  readonly replicaRps?: number;
}

/** Arrivals counted in fixed buckets of time, oldest first, over the window. */
interface Bucket {
  /** floor(time / BUCKET_MS). */
  readonly key: number;
  count: number;
}

export class Autoscaler {
  readonly settings: AutoscaleSettings;
  readonly #buckets: Bucket[] = [];
  readonly #recommended: { readonly atMs: number; readonly count: number }[] = [];

  constructor(settings: AutoscaleSettings) {
    if (!(settings.min >= 0 && settings.max >= Math.max(1, settings.min))) throw new RangeError(`autoscale needs 0 <= min <= max and max >= 1, got min ${settings.min}, max ${settings.max}`);
    if (!(settings.targetUtilisation > 0 && settings.targetUtilisation <= 1)) throw new RangeError(`autoscale target utilisation must be in (0, 1], got ${settings.targetUtilisation}`);
    this.settings = settings;
  }

  /** `count` requests arrived for the pool at `nowMs`. */
  arrived(nowMs: number, count = 1): void {
    const key = Math.floor(nowMs / BUCKET_MS);
    const last = this.#buckets.at(-1);
    if (last?.key === key) last.count += count;
    else this.#buckets.push({ key, count });
    const oldest = key - Math.ceil(this.settings.windowMs / BUCKET_MS);
    while (this.#buckets[0]!.key < oldest) this.#buckets.shift();
  }

  /** The arrival rate expected `aheadMs` from now, requests/s: the least-squares line through the window's whole buckets, never below 0. */
  forecastRps(nowMs: number, aheadMs: number): number {
    return forecast(this.#buckets, Math.floor(nowMs / BUCKET_MS), Math.ceil(this.settings.windowMs / BUCKET_MS), (nowMs % BUCKET_MS) / BUCKET_MS + aheadMs / BUCKET_MS);
  }

  /** The replica count to run now. */
  desired(nowMs: number, load: PoolLoad): number {
    const s = this.settings;
    const perReplica = load.slotsPerReplica * s.targetUtilisation;
    let want = perReplica > 0 ? Math.ceil((load.running + load.waiting) / perReplica - EPSILON) : s.max;
    if (s.mode === "predictive" && load.replicaRps !== undefined && load.replicaRps > 0) {
      want = Math.max(want, Math.ceil(this.forecastRps(nowMs, s.provisioningMs) / (load.replicaRps * s.targetUtilisation) - EPSILON));
    }
    const count = Math.min(s.max, Math.max(s.min, want));
    const history = this.#recommended;
    history.push({ atMs: nowMs, count });
    while (history.length > 1 && history[0]!.atMs <= nowMs - s.cooldownMs) history.shift();
    let held = 0;
    for (const r of history) held = Math.max(held, r.count);
    return held;
  }
}

/** Arrivals within one bucket of the window are one point of the trend's fit. */
const BUCKET_MS = 10_000;
/**
 * A trend needs this many whole buckets (2 minutes): through a few noisy
 * buckets, a line read minutes ahead swings by more than the rate itself.
 */
const MIN_TREND_BUCKETS = 12;
/** Whole replicas: 3.0000000001 slots' worth is 3 replicas, not 4. */
const EPSILON = 1e-9;

/**
 * Over the last `window` whole buckets before bucket `current` (fewer while
 * the history is shorter; empty buckets count as 0 arrivals), the rate's
 * line, read `ahead` buckets after the current bucket's start.
 */
function forecast(buckets: readonly Bucket[], current: number, window: number, ahead: number): number {
  const first = buckets[0]?.key;
  if (first === undefined || first >= current) return 0;
  const n = Math.min(window, current - first);
  const rates = new Array<number>(n).fill(0);
  for (const b of buckets) {
    const i = b.key - (current - n);
    if (i >= 0 && i < n) rates[i]! += b.count / (BUCKET_MS / 1000);
  }
  const mean = rates.reduce((a, b) => a + b, 0) / n;
  if (n < MIN_TREND_BUCKETS) return mean;
  // x is a bucket's index; its rate stands at its middle (x + 0.5), the current bucket starts at n.
  const mx = (n - 1) / 2;
  let sxy = 0;
  let sxx = 0;
  rates.forEach((y, x) => {
    sxy += (x - mx) * (y - mean);
    sxx += (x - mx) * (x - mx);
  });
  return Math.max(0, mean + (sxy / sxx) * (n - 0.5 + ahead - mx));
}

/**
 * What to do to reach `desired` from `serving` replicas (in the pool and
 * taking requests) and `provisioning` ones (ordered, not serving yet):
 * order the shortfall; for a surplus, cancel orders first (newest first:
 * nothing is lost), then remove serving replicas (they drain).
 */
export function scalingActions(desired: number, serving: number, provisioning: number): { readonly order: number; readonly cancel: number; readonly remove: number } {
  const have = serving + provisioning;
  if (desired >= have) return { order: desired - have, cancel: 0, remove: 0 };
  const cancel = Math.min(provisioning, have - desired);
  return { order: 0, cancel, remove: have - desired - cancel };
}
