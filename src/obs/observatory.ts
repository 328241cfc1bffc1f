/**
 * What the gateway's requests and the fleet's replicas look like over time:
 * per-replica counters, a sampler that integrates load and health into
 * slot-seconds (utilisation, availability) and efficiency against the physical limit, and a short
 * history for the dashboard. Prometheus metrics and the /ui pages both read
 * from here, so they always agree.
 *
 * Hot path: a token costs two additions on plain numbers; labelled metrics
 * are materialised only when /metrics is scraped.
 */
import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { promptText, type GenerationRequest } from "../core/request.js";
import { sums } from "../core/sums.js";
import type { TextSink } from "../engines/engine.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import type { HealthState } from "../scheduler/health.js";
import type { Settlement, Ticket } from "../metering/tenancy.js";
import type { Decision } from "../scheduler/decision.js";
import { efficiencyOf, requestRooflineMs, type Efficiency, type EfficiencyTotals, type PerfProfile } from "../hardware/index.js";
import { RunningCount, TimingProbe } from "./generation-timing.js";
import type { RequestLog, RequestObserver, RequestStart, RequestWatch } from "./observer.js";
import { TwinError } from "./twin-error.js";

/** An autoscaled pool (a model's replicas), as /metrics shows it. */
export interface AutoscalingRow {
  readonly island: string;
  /** Undefined until its first decision. */
  readonly desired: number | undefined;
  readonly current: number;
  readonly actions: { readonly ok: number; readonly failed: number };
}

/** What this gateway hears from the others on its store (gateway/peer-sync.ts), as /metrics shows it. */
export interface PeerRow {
  /** Other gateways heard from within the expiry window: they send only while they route. */
  readonly gateways: number;
  readonly placementsHeard: number;
  /** The last broadcast failed. */
  readonly failing: boolean;
}

/** TTFT bucket bounds in seconds, shared by Prometheus, the live view and sim reports. */
export const TTFT_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
export const TPOT_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1] as const;
export const E2E_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] as const;

/** Replica ids to the hardware their fleet-file entries name, in the ids buildFleet gives them ("model/index"). */
export function hardwareByReplica(config: { readonly models: readonly { readonly name: string; readonly replicas: readonly { readonly count: number; readonly hardware?: string | undefined }[] }[] }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of config.models) {
    let index = 0;
    for (const rc of m.replicas) {
      for (let i = 0; i < rc.count; i++, index++) if (rc.hardware !== undefined) out[`${m.name}/${index}`] = rc.hardware;
    }
  }
  return out;
}

/** Label value for callers the tenancy does not identify. */
export const ANONYMOUS = "anonymous";

/**
 * A replica's hardware label: what the fleet file names (`hardware:` of its
 * replica entry), else what its engine says: "cpu" for in-process llama.cpp,
 * "remote" for an OpenAI-compatible server of unknown hardware.
 */
export function hardwareOf(replica: Replica, named?: string): string {
  if (named !== undefined && named.length > 0) return named;
  const own = (replica as { readonly hardware?: unknown }).hardware;
  if (typeof own === "string" && own.length > 0) return own;
  switch (replica.engine.kind) {
    case "local":
      return "cpu";
    case "sim":
      return "sim";
    default:
      return "remote";
  }
}

/** Counters and the last sample of one replica. */
export class ReplicaStats {
  readonly replica: Replica;
  readonly id: string;
  readonly model: string;
  readonly engine: string;
  readonly hardware: string;
  outputTokens = 0;
  inputTokens = 0;
  cachedTokens = 0;
  /** Requests it finished successfully. */
  completed = 0;
  /** Requests that ended on it, answered in full (`completed`) or not: failed, cancelled, cut off. */
  ended = 0;
  /** This replica at its devices' physical limit; undefined where the fleet file names no hardware for it. */
  readonly roofline: PerfProfile | undefined;
  /** Seconds the work of the requests that ended on it would take at the physical limit (hardware/roofline.ts). */
  rooflineS = 0;
  /** Attempts on it that failed before any text, and were retried elsewhere. */
  failovers = 0;
  /** Attempts on it that failed mid-answer, and were resumed elsewhere. */
  continuations = 0;
  /** Estimated tokens held in its KV cache by requests in flight (prompt + output so far). */
  resident = 0;
  /** Requests this gateway has running on it, counted at each attempt and finish (not sampled): the batch a request's timing records. */
  readonly running = new RunningCount();
  // Integrals over sampler ticks, in seconds.
  busySlotS = 0;
  /** Seconds up with at least one request running. */
  busyS = 0;
  readySlotS = 0;
  readyS = 0;
  observedS = 0;
  // The last sample.
  state: HealthState = "not-ready";
  available = false;
  active = 0;
  queued = 0;
  slots = 0;
  kv: number | undefined;
  /** Output tokens per second over the last few ticks (about RATE_SPAN_S). */
  tokensPerS = 0;
  // The last few (time, cumulative output) samples, a ring.
  readonly #rateAt: Float64Array;
  readonly #rateOut: Float64Array;
  #rateNext = 0;
  /** (time s, rooflineS, readyS, observedS, ended, completed) at each tick of the last EFFICIENCY_WINDOW_S. */
  readonly #marks: Float64Array[] = [];

  constructor(replica: Replica, rateSamples = 8, hardware?: string, roofline?: PerfProfile) {
    this.roofline = roofline;
    this.#rateAt = new Float64Array(rateSamples).fill(NaN);
    this.#rateOut = new Float64Array(rateSamples);
    this.replica = replica;
    this.id = replica.id;
    this.model = replica.model;
    this.engine = replica.engine.kind;
    this.hardware = hardwareOf(replica, hardware);
  }

  /**
   * Reads the engine's load and health and adds `dtS` seconds to the
   * integrals; a tick (`nowS` given, in seconds) also updates tokens/s.
   */
  sample(dtS: number, nowS?: number): void {
    const { engine, health } = this.replica;
    const load = engine.load();
    const ready = engine.isReady();
    this.state = health.state(ready);
    this.available = ready && (this.state === "healthy" || this.state === "half-open");
    this.active = load.active;
    this.queued = load.queued;
    this.slots = load.slots;
    const context = engine.contextSize;
    this.kv = context === undefined || context <= 0 || load.slots <= 0 ? undefined : Math.min(1, Math.max(0, this.resident) / (context * load.slots));
    if (dtS > 0) {
      this.observedS += dtS;
      if (this.available) {
        this.readyS += dtS;
        this.readySlotS += load.slots * dtS;
        this.busySlotS += Math.min(load.active, load.slots) * dtS;
        if (load.active > 0) this.busyS += dtS;
      }
    }
    if (nowS !== undefined) {
      if (this.roofline !== undefined) this.#mark(nowS);
      // Over the last few ticks, so one quiet tick between tokens does not read as zero.
      const n = this.#rateAt.length;
      const oldest = this.#rateNext % n;
      const fromS = this.#rateAt[oldest]!;
      const fromOut = this.#rateOut[oldest]!;
      this.#rateAt[oldest] = nowS;
      this.#rateOut[oldest] = this.outputTokens;
      this.#rateNext++;
      const firstS = Number.isNaN(fromS) ? this.#rateAt[0]! : fromS;
      const firstOut = Number.isNaN(fromS) ? this.#rateOut[0]! : fromOut;
      this.tokensPerS = nowS > firstS ? (this.outputTokens - firstOut) / (nowS - firstS) : 0;
    }
  }

  #mark(nowS: number): void {
    const marks = this.#marks;
    while (marks.length > 1 && nowS - marks[1]![0]! >= EFFICIENCY_WINDOW_S) marks.shift();
    marks.push(Float64Array.of(nowS, this.rooflineS, this.readyS, this.observedS, this.ended, this.completed));
  }

  /** Over the last EFFICIENCY_WINDOW_S of ticks: its work at the limit, seconds up and watched, requests ended and completed; undefined without a roofline. */
  efficiencyTotals(): EfficiencyTotals | undefined {
    if (this.roofline === undefined) return undefined;
    const m = this.#marks[0] ?? Float64Array.of(0, 0, 0, 0, 0, 0);
    return { atLimit: this.rooflineS - m[1]!, up: this.readyS - m[2]!, paid: this.observedS - m[3]!, served: this.ended - m[4]!, useful: this.completed - m[5]! };
  }

  /** Its efficiency against the physical limit over the last minute; undefined without a roofline. */
  efficiency(): Efficiency | undefined {
    const t = this.efficiencyTotals();
    return t === undefined ? undefined : efficiencyOf(t);
  }
}

/** The window the efficiency figures span, in seconds. */
export const EFFICIENCY_WINDOW_S = 60;

/** The fleet's efficiency over the last minute, over the replicas that have a physical limit; undefined where none has. */
export function fleetEfficiency(replicas: readonly ReplicaStats[]): Efficiency | undefined {
  let any = false;
  const sum = { atLimit: 0, up: 0, paid: 0, served: 0, useful: 0 };
  for (const s of replicas) {
    const t = s.efficiencyTotals();
    if (t === undefined) continue;
    any = true;
    sum.atLimit += t.atLimit;
    sum.up += t.up;
    sum.paid += t.paid;
    sum.served += t.served;
    sum.useful += t.useful;
  }
  return any ? efficiencyOf(sum) : undefined;
}

/**
 * The fleet now, from the replicas' last samples: the share of replicas up,
 * and the share of the slots of replicas up that are busy. The dashboard's
 * points and the Prometheus gauges both read it, so they agree.
 */
export function fleetShares(replicas: readonly ReplicaStats[]): { readonly availability: number; readonly utilization: number } {
  let up = 0;
  let slots = 0;
  let busy = 0;
  for (const s of replicas) {
    if (!s.available) continue;
    up++;
    slots += s.slots;
    busy += Math.min(s.active, s.slots);
  }
  return { availability: replicas.length > 0 ? up / replicas.length : 0, utilization: slots > 0 ? busy / slots : 0 };
}

export interface TenantEnergy {
  readonly tenant: string;
  readonly model: string;
  readonly hardware: string;
  joules: number;
  usd: number;
}

export interface RequestCount {
  readonly model: string;
  readonly endpoint: string;
  readonly status: string;
  count: number;
}

/** Fleet-wide numbers at one tick, as the dashboard charts them. */
export interface FleetPoint {
  /** Unix milliseconds. */
  readonly t: number;
  readonly tokensPerS: number;
  readonly requestsPerS: number;
  /** p99 TTFT of requests whose first token came in the last minute; null with none. */
  readonly p99TtftS: number | null;
  /** Energy per output token over the last minute; null without priced energy. */
  readonly joulesPerToken: number | null;
  readonly usdPerMTok: number | null;
  readonly availability: number;
  readonly utilization: number;
  /** Over the last minute, the replicas with a physical limit (named hardware); null where none has: efficiency = roofline × its availability × goodput. */
  readonly efficiency: number | null;
  readonly atRoofline: number | null;
  readonly goodput: number | null;
  readonly running: number;
  readonly queued: number;
}

/** Cumulative fleet totals at a tick; windows are differences of two of these. */
interface Cumulative {
  t: number;
  now: number;
  outputTokens: number;
  finished: number;
  joules: number;
  usd: number;
  busySlotS: number;
  busyS: number;
  readySlotS: number;
  readyS: number;
  observedS: number;
}

export interface Histogram {
  observe(labels: Record<string, string>, value: number): void;
}

/** Where the Prometheus histograms are pushed; counters and gauges are pulled at scrape time. */
export interface HistogramSinks {
  readonly ttft: Histogram;
  readonly tpot: Histogram;
  readonly e2e: Histogram;
  /** Each routing plugin's time per decision, by policy and plugin. */
  readonly routerPlugin: Histogram;
}

/** A routing plugin runs in microseconds over tens of candidates; hundreds of µs means a slow scorer. */
export const ROUTER_PLUGIN_BUCKETS_S = [1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2] as const;

export interface ObservatoryOptions {
  readonly clock: Clock;
  /** Sampling period of load and health, in ms (the dashboard's refresh). */
  readonly tickMs?: number;
  /** Whether the per-request "request finished" line is logged (the logger is at info or below). */
  readonly logRequests?: boolean;
  /** Log prompts (never on by default). */
  readonly logPrompts?: boolean;
  /** Points of history kept for the dashboard. */
  readonly historyPoints?: number;
  /** Hardware of replicas by id, where the fleet file names it. */
  readonly hardware?: Readonly<Record<string, string>>;
  /** The hardware model of a replica (its rate card's), which flotilla_twin_error_ratio predicts its requests with. */
  readonly perfProfile?: (replicaId: string) => PerfProfile | undefined;
  /** A replica at its devices' physical limit (its rate card's), which its efficiency is measured against. */
  readonly rooflineProfile?: (replicaId: string) => PerfProfile | undefined;
}

const RATE_WINDOW_MS = 10_000;
const VALUE_WINDOW_MS = 60_000;
const TTFT_RING = 4096;

export class Observatory implements RequestObserver {
  readonly fleet: Fleet;
  readonly clock: Clock;
  readonly tickMs: number;
  /** Every replica in the fleet now; a new array whenever one comes or goes. */
  replicas: readonly ReplicaStats[];
  readonly #byId = new Map<string, ReplicaStats>();
  readonly requests = new Map<string, RequestCount>();
  readonly energy = new Map<string, TenantEnergy>();
  readonly escalations = new Map<string, { readonly model: string; readonly reason: string; count: number }>();
  readonly http = new Map<string, { readonly method: string; readonly route: string; readonly code: string; count: number }>();
  /** Fleet-wide TTFT histogram counts (not cumulative), one more than the bounds for +Inf. */
  readonly ttftCounts = new Float64Array(TTFT_BUCKETS_S.length + 1);
  readonly #ttftValues = new Float64Array(TTFT_RING);
  readonly #ttftTimes = new Float64Array(TTFT_RING);
  #ttftNext = 0;
  readonly #scratch = new Float64Array(TTFT_RING);
  finished = 0;
  inFlight = 0;
  /** Requests waiting for capacity at the gateway's admission queue, by model and priority class (set by the gateway). */
  admissionQueue: () => readonly { readonly model: string; readonly priority: string; readonly count: number }[] = () => [];
  /** Each autoscaled pool's desired and serving replica counts, and the actuator's calls (set by the gateway). */
  autoscaling: () => readonly AutoscalingRow[] = () => [];
  /** The other gateways on the store, where this one shares placements and load with them (set by the gateway). */
  peers: () => PeerRow | undefined = () => undefined;
  #joules = 0;
  #usd = 0;
  readonly #history: FleetPoint[] = [];
  readonly #historyPoints: number;
  readonly #cumulative: Cumulative[] = [];
  #lastSampleAt: number;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<(point: FleetPoint) => void>();
  #histograms: HistogramSinks | undefined;
  readonly #logRequests: boolean;
  readonly #logPrompts: boolean;
  /** The hardware model against the live replicas (flotilla_twin_error_ratio). */
  readonly twin: TwinError;

  constructor(fleet: Fleet, opts: ObservatoryOptions) {
    this.fleet = fleet;
    this.clock = opts.clock;
    this.tickMs = opts.tickMs ?? 1_000;
    this.#historyPoints = opts.historyPoints ?? 900;
    this.#logRequests = opts.logRequests ?? false;
    this.#logPrompts = opts.logPrompts ?? false;
    this.twin = new TwinError(opts.perfProfile ?? (() => undefined));
    // Per-replica tokens/s spans about two seconds of ticks.
    const rateSamples = Math.max(2, Math.round(2_000 / this.tickMs) + 1);
    const statsOf = (r: Replica): ReplicaStats => new ReplicaStats(r, rateSamples, opts.hardware?.[r.id] ?? r.config?.hardware, opts.rooflineProfile?.(r.id));
    this.replicas = fleet.replicas().map(statsOf);
    for (const s of this.replicas) this.#byId.set(s.id, s);
    fleet.onChange(({ kind, replica }) => {
      if (kind === "added") {
        const stats = statsOf(replica);
        this.#byId.set(stats.id, stats);
        this.replicas = [...this.replicas, stats];
      } else {
        this.#byId.delete(replica.id);
        this.replicas = this.replicas.filter((s) => s.id !== replica.id);
        this.twin.forget(replica.id);
      }
    });
    this.#lastSampleAt = this.clock.now();
    this.refresh();
  }

  set histograms(sinks: HistogramSinks) {
    this.#histograms = sinks;
  }

  stats(id: string): ReplicaStats | undefined {
    return this.#byId.get(id);
  }

  /** Reads every replica's load and health now, without adding to the integrals. */
  refresh(): void {
    for (const s of this.replicas) s.sample(0);
  }

  /** Starts sampling every tickMs (the timer does not keep the process alive). */
  startSampling(): void {
    if (this.#timer !== undefined) return;
    this.tick();
    this.#timer = setInterval(() => this.tick(), this.tickMs);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  /** Hears every new point (after the replicas' samples were updated). */
  subscribe(listener: (point: FleetPoint) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  history(): readonly FleetPoint[] {
    return this.#history;
  }

  /** Samples every replica now and records a point of history. */
  tick(): FleetPoint {
    const now = this.clock.now();
    const dtS = Math.max(0, (now - this.#lastSampleAt) / 1000);
    this.#lastSampleAt = now;
    for (const s of this.replicas) s.sample(dtS, now / 1000);
    const { outputTokens, busySlotS, busyS, readySlotS, readyS, observedS, active: running, queued } = sums(this.replicas, ["outputTokens", "busySlotS", "busyS", "readySlotS", "readyS", "observedS", "active", "queued"]);
    const cur: Cumulative = { t: this.clock.epochMs(), now, outputTokens, finished: this.finished, joules: this.#joules, usd: this.#usd, busySlotS, busyS, readySlotS, readyS, observedS };
    const prev = this.#cumulative[this.#cumulative.length - 1];
    this.#cumulative.push(cur);
    while (this.#cumulative.length > 2 && now - this.#cumulative[1]!.now > VALUE_WINDOW_MS) this.#cumulative.shift();
    const { availability, utilization } = fleetShares(this.replicas);
    const since = this.#cumulative[0]!;
    const tokens = cur.outputTokens - since.outputTokens;
    const joules = cur.joules - since.joules;
    const usd = cur.usd - since.usd;
    const tickS = prev === undefined ? 0 : (now - prev.now) / 1000;
    const eff = fleetEfficiency(this.replicas);
    const point: FleetPoint = {
      t: cur.t,
      tokensPerS: prev !== undefined && tickS > 0 ? (cur.outputTokens - prev.outputTokens) / tickS : 0,
      requestsPerS: prev !== undefined && tickS > 0 ? (cur.finished - prev.finished) / tickS : 0,
      p99TtftS: this.ttftQuantile(0.99, VALUE_WINDOW_MS),
      joulesPerToken: tokens > 0 && joules > 0 ? joules / tokens : null,
      usdPerMTok: tokens > 0 && usd > 0 ? (usd / tokens) * 1e6 : null,
      availability,
      utilization,
      efficiency: eff?.value ?? null,
      atRoofline: eff?.roofline ?? null,
      goodput: eff?.goodput ?? null,
      running,
      queued,
    };
    this.#history.push(point);
    if (this.#history.length > this.#historyPoints) this.#history.shift();
    for (const listener of this.#listeners) listener(point);
    return point;
  }

  /**
   * Fleet figures over the last minute (rates over the last 10 s): what the
   * dashboard's tiles show. Utilisation and availability are time integrals,
   * as Prometheus' rate() of the slot-second counters gives them.
   */
  kpis(): Record<string, number | null> {
    const c = this.#cumulative;
    const cur = c[c.length - 1];
    const since = c[0];
    const last = this.#history[this.#history.length - 1];
    if (cur === undefined || since === undefined || last === undefined) return {};
    let rateFrom = since;
    for (const x of c) {
      if (cur.now - x.now <= RATE_WINDOW_MS) {
        rateFrom = x;
        break;
      }
    }
    const rateS = (cur.now - rateFrom.now) / 1000;
    const observed = cur.observedS - since.observedS;
    const readySlot = cur.readySlotS - since.readySlotS;
    const availability = observed > 0 ? (cur.readyS - since.readyS) / observed : last.availability;
    const utilization = readySlot > 0 ? (cur.busySlotS - since.busySlotS) / readySlot : last.utilization;
    const readyS = cur.readyS - since.readyS;
    const work = sums(this.replicas, ["outputTokens", "inputTokens", "cachedTokens", "failovers", "continuations"]);
    const eff = fleetEfficiency(this.replicas);
    return {
      tokensPerS: rateS > 0 ? (cur.outputTokens - rateFrom.outputTokens) / rateS : 0,
      requestsPerS: rateS > 0 ? (cur.finished - rateFrom.finished) / rateS : 0,
      p99TtftS: last.p99TtftS,
      joulesPerToken: last.joulesPerToken,
      usdPerMTok: last.usdPerMTok,
      availability,
      utilization,
      efficiency: eff?.value ?? null,
      atRoofline: eff?.roofline ?? null,
      efficiencyUp: eff?.availability ?? null,
      goodput: eff?.goodput ?? null,
      busyTime: readyS > 0 ? (cur.busyS - since.busyS) / readyS : null,
      requests: this.finished,
      inFlight: this.inFlight,
      outputTokens: work.outputTokens,
      inputTokens: work.inputTokens,
      cachedTokens: work.cachedTokens,
      failovers: work.failovers,
      continuations: work.continuations,
      joules: this.#joules,
      usd: this.#usd,
    };
  }

  /** Quantile of the TTFTs (seconds) recorded in the last `windowMs`; null with none. */
  ttftQuantile(q: number, windowMs: number): number | null {
    const from = this.clock.now() - windowMs;
    let n = 0;
    const count = Math.min(this.#ttftNext, TTFT_RING);
    for (let i = 0; i < count; i++) if (this.#ttftTimes[i]! >= from) this.#scratch[n++] = this.#ttftValues[i]!;
    if (n === 0) return null;
    const sorted = this.#scratch.subarray(0, n).sort();
    return sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]!;
  }

  recordTtft(stats: ReplicaStats, model: string, seconds: number): void {
    const slot = this.#ttftNext++ % TTFT_RING;
    this.#ttftValues[slot] = seconds;
    this.#ttftTimes[slot] = this.clock.now();
    let b = 0;
    while (b < TTFT_BUCKETS_S.length && seconds > TTFT_BUCKETS_S[b]!) b++;
    this.ttftCounts[b]!++;
    this.#histograms?.ttft.observe({ model, replica: stats.id }, seconds);
  }

  start(request: RequestStart): RequestWatch {
    if (this.#logPrompts) request.log.info({ prompt: request.generation.prompt, continuation: request.generation.continuation }, "prompt");
    return new Watch(this, request);
  }

  /** One HTTP response sent, by method, route pattern (never the raw URL) and status code. */
  countHttp(method: string, route: string, code: number): void {
    const key = `${method} ${route} ${code}`;
    const row = this.http.get(key);
    if (row === undefined) this.http.set(key, { method, route, code: String(code), count: 1 });
    else row.count++;
  }

  /** One routing decision of the live dispatcher: each plugin's time goes to the histogram. */
  routed(policy: string, decision: Decision): void {
    const sink = this.#histograms?.routerPlugin;
    if (sink === undefined || decision.trace === undefined) return;
    for (const p of decision.trace.plugins) sink.observe({ policy, plugin: p.name }, p.us / 1e6);
  }

  cascadeEscalated(model: string, reason: string): void {
    const key = `${model}\u0000${reason}`;
    const row = this.escalations.get(key);
    if (row === undefined) this.escalations.set(key, { model, reason, count: 1 });
    else row.count++;
  }

  /** Book-keeping for one finished request. */
  record(w: Watch, s: Settlement, status: string, endedAt: number): void {
    this.finished++;
    const key = `${w.model}\u0000${w.endpoint}\u0000${status}`;
    const row = this.requests.get(key);
    if (row === undefined) this.requests.set(key, { model: w.model, endpoint: w.endpoint, status, count: 1 });
    else row.count++;
    const finisher = s.replica === undefined ? undefined : this.#byId.get(s.replica);
    if (finisher !== undefined) countEnded(finisher, w, s);
    if (s.status === "ok" && s.usage !== undefined && finisher !== undefined) {
      finisher.completed++;
      finisher.inputTokens += s.usage.promptTokens;
      finisher.cachedTokens += s.usage.cachedTokens;
      // The engine's count is authoritative; tokens without text (a stop string) show up only here.
      const missing = s.usage.completionTokens - w.tokens;
      if (missing > 0) finisher.outputTokens += missing;
      if (s.timing !== undefined) this.twin.observe(finisher.id, s.usage, s.timing, endedAt);
      const labels = { model: w.model, replica: finisher.id };
      const h = this.#histograms;
      if (h !== undefined) {
        h.e2e.observe(labels, (endedAt - w.startedAt) / 1000);
        const n = Math.max(w.tokens, s.usage.completionTokens);
        if (w.firstAt >= 0 && n >= 2) h.tpot.observe(labels, (endedAt - w.firstAt) / 1000 / (n - 1));
      }
      let priced: Readonly<Record<string, number | string>> = {};
      try {
        priced = w.ticket.price(s.usage, finisher.id, s.durationMs);
      } catch {
        // Pricing is the tenancy's business; a failure there is not a metric.
      }
      const joules = finite(priced.energy_j);
      const usd = finite(priced.cost_usd);
      if (joules > 0 || usd > 0) {
        const tenant = w.tenant ?? ANONYMOUS;
        const hardware = typeof priced.hardware === "string" && priced.hardware.length > 0 ? priced.hardware : finisher.hardware;
        const ekey = `${tenant}\u0000${w.model}\u0000${hardware}`;
        let e = this.energy.get(ekey);
        if (e === undefined) {
          e = { tenant, model: w.model, hardware, joules: 0, usd: 0 };
          this.energy.set(ekey, e);
        }
        e.joules += joules;
        e.usd += usd;
        this.#joules += joules;
        this.#usd += usd;
      }
    }
    if (this.#logRequests) {
      w.log.info(
        {
          model: w.model,
          endpoint: w.endpoint,
          stream: w.stream,
          status,
          replica: s.replica ?? null,
          attempts: s.attempts,
          continuations: s.continuations,
          tenant: w.tenant ?? null,
          prompt_tokens: s.usage?.promptTokens ?? null,
          completion_tokens: s.usage?.completionTokens ?? null,
          cached_tokens: s.usage?.cachedTokens ?? null,
          ttft_ms: w.firstAt >= 0 ? round(w.firstAt - w.startedAt) : null,
          duration_ms: round(s.durationMs),
        },
        "request finished",
      );
    }
  }
}

/** A request ended on `finisher`: counted, and its work (what it delivered, if not answered in full) timed at the physical limit. */
function countEnded(finisher: ReplicaStats, w: Watch, s: Settlement): void {
  finisher.ended++;
  const roof = finisher.roofline;
  if (roof === undefined) return;
  const u = s.usage;
  const work = {
    promptTokens: u?.promptTokens ?? w.promptTokens,
    cachedTokens: u?.cachedTokens ?? 0,
    outputTokens: u?.completionTokens ?? w.tokens,
    // Untimed (it moved between replicas): those running there now, itself included.
    batch: s.timing?.batchMean ?? s.timing?.batch ?? finisher.running.count + 1,
  };
  finisher.rooflineS += requestRooflineMs(roof, work) / 1000;
}

function finite(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Tokens a prompt holds in KV: exact where the engine has the tokenizer, else about 4 characters a token. */
function promptTokensOf(replica: Replica, g: GenerationRequest): number {
  try {
    const n = replica.engine.countPromptTokens(g.prompt);
    if (n !== undefined) return n;
  } catch {
    // fall through to the estimate
  }
  return Math.ceil(promptText(g.prompt).length / 4);
}

class Watch implements RequestWatch {
  readonly #obs: Observatory;
  readonly model: string;
  readonly endpoint: string;
  readonly stream: boolean;
  readonly tenant: string | undefined;
  readonly ticket: Ticket;
  readonly log: RequestLog;
  readonly #generation: GenerationRequest;
  readonly startedAt: number;
  firstAt = -1;
  tokens = 0;
  #current: ReplicaStats | undefined;
  #promptTokens = -1;
  #resident = 0;
  #error: string | undefined;
  #done = false;
  readonly #probe = new TimingProbe();

  /** Tokens its prompt holds, once an attempt has counted them; 0 before. */
  get promptTokens(): number {
    return Math.max(0, this.#promptTokens);
  }

  constructor(obs: Observatory, r: RequestStart) {
    this.#obs = obs;
    this.model = r.model;
    this.endpoint = r.endpoint;
    this.stream = r.stream;
    this.tenant = r.tenant;
    this.ticket = r.ticket;
    this.log = r.log;
    this.#generation = r.generation;
    this.startedAt = obs.clock.now();
    obs.inFlight++;
  }

  nextLeg(): void {
    if (this.#current !== undefined) {
      this.#current.resident -= this.#resident;
      this.#current.running.add(-1, this.#obs.clock.now());
    }
    this.#current = undefined;
    this.#resident = 0;
    this.#probe.nextLeg();
  }

  attempt(replica: Replica): void {
    const now = this.#obs.clock.now();
    const prev = this.#current;
    if (prev !== undefined) {
      // The dispatcher tries another replica only after this one failed.
      if (this.tokens > 0) prev.continuations++;
      else prev.failovers++;
      prev.resident -= this.#resident;
      prev.running.add(-1, now);
    }
    const stats = this.#obs.stats(replica.id);
    this.#current = stats;
    stats?.running.add(1, now);
    this.#probe.attempt(now, stats?.running.count ?? 0);
    if (stats === undefined) return;
    if (this.#promptTokens < 0) this.#promptTokens = promptTokensOf(replica, this.#generation);
    this.#resident = this.#promptTokens + this.tokens;
    stats.resident += this.#resident;
  }

  sink(onText: TextSink): TextSink {
    return (text, tokens, estimated, ids, call) => {
      if (this.firstAt < 0) this.#first();
      this.#probe.piece(this.#obs.clock.now(), tokens, this.#current?.running);
      this.tokens += tokens;
      const s = this.#current;
      if (s !== undefined) {
        s.outputTokens += tokens;
        s.resident += tokens;
        this.#resident += tokens;
      }
      onText(text, tokens, estimated, ids, call);
    };
  }

  #first(): void {
    this.firstAt = this.#obs.clock.now();
    const s = this.#current;
    if (s !== undefined) this.#obs.recordTtft(s, this.model, (this.firstAt - this.startedAt) / 1000);
  }

  failed(err: unknown): void {
    this.#error = err instanceof FlotillaError ? err.code : "failed";
  }

  finish(settlement: Settlement): Settlement {
    if (this.#done) return settlement;
    this.#done = true;
    const obs = this.#obs;
    const now = obs.clock.now();
    obs.inFlight--;
    const current = this.#current;
    const timing = this.#probe.timing(settlement, current?.running);
    if (current !== undefined) {
      current.resident -= this.#resident;
      current.running.add(-1, now);
    }
    this.#resident = 0;
    const settled = timing === undefined ? settlement : { ...settlement, timing };
    const status = settlement.status === "failed" ? (settlement.errorCode ?? this.#error ?? "failed") : settlement.status;
    obs.record(this, settled, status, now);
    return settled;
  }
}
