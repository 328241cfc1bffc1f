/**
 * Aggregates a simulation into the report people and machines read: latency
 * distributions, throughput, goodput against the SLO, prefix-cache reuse,
 * utilization, energy and cost. Pure: takes a SimResult, returns plain data
 * that JSON.stringify writes as is.
 */
import { sums } from "../core/sums.js";
import { efficiencyOf, type Efficiency, type EfficiencyTotals } from "../hardware/index.js";
import type { SimFleet, SimIsland } from "./fleet-file.js";
import type { SimReplicaResult, SimResult, SimTimeline } from "./simulator.js";
import { STATUS } from "./simulator.js";
import { traceStats } from "./traces.js";

export interface Distribution {
  readonly count: number;
  readonly mean: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface ReplicaReport {
  readonly name: string;
  readonly island: string;
  /** Share of the time it was up that it spent running passes. */
  readonly utilization: number;
  readonly completed: number;
  readonly outputTokens: number;
  readonly busyS: number;
  readonly downS: number;
  /** Seconds it was part of the fleet: the run's span, unless membership changes added or removed it. */
  readonly memberS: number;
  readonly failures: number;
  readonly preemptions: number;
  readonly cacheHitRate: number;
  readonly joules: number;
  readonly usd: number;
  /**
   * Its passes' time at the physical limit over its time up, its time up over
   * its time in the fleet, and the share of the requests it finished that met
   * the SLO (a replica that finishes none, a prefill replica whose requests end
   * on a decoder, takes the fleet's share).
   */
  readonly efficiency: Efficiency;
}

export interface SimReport {
  readonly trace: { readonly name: string; readonly requests: number; readonly spanS: number; readonly inputTokens: number; readonly outputTokens: number };
  readonly fleet: {
    readonly replicas: number;
    readonly devices: number;
    readonly islands: readonly {
      readonly name: string;
      readonly hardware: string;
      readonly model: string;
      readonly precision: string;
      readonly tp: number;
      readonly count: number;
      readonly maxBatch: number;
      readonly maxQueue: number;
      readonly kvCapacityTokens: number;
      readonly contextSize: number;
      readonly usdPerHour: number;
      /** prefill, decode or both (colocated). */
      readonly role: string;
    }[];
  };
  readonly policy: string;
  readonly sample: number;
  readonly chunkedPrefill: boolean;
  readonly blockTokens: number;
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  readonly requests: {
    readonly total: number;
    readonly completed: number;
    readonly rejected: number;
    readonly rejectedBy: Readonly<Record<string, number>>;
    /** Displaced by a failure and never served. */
    readonly lost: number;
    /** Still queued or running when the simulation stopped (--duration). */
    readonly unfinished: number;
    /** Re-routings after replica failures. */
    readonly retries: number;
    readonly preemptions: number;
  };
  readonly latency: { readonly ttftMs: Distribution; readonly tpotMs: Distribution; readonly e2eMs: Distribution };
  readonly throughput: { readonly spanS: number; readonly requestsPerS: number; readonly outputTokensPerS: number; readonly inputTokensPerS: number };
  readonly goodput: { readonly requests: number; readonly share: number; readonly requestsPerS: number };
  /** The fleet's: its replicas' roofline time over their time up and in the fleet, and the goodput share of requests served. */
  readonly efficiency: Efficiency;
  /** Share of replica-time up (not failed or in repair), and how often replicas failed. */
  readonly availability: { readonly share: number; readonly failures: number; readonly downReplicaS: number };
  readonly cache: {
    readonly blockRefs: number;
    /** Blocks found in either tier; `hitRate` is their share of lookups. */
    readonly blockHits: number;
    readonly hitRate: number;
    /** Of the hits, those in HBM and those loaded from the host tier, each as a share of lookups. */
    readonly hbmHitRate: number;
    readonly hostBlockHits: number;
    readonly hostHitRate: number;
    /** Replica-seconds passes spent loading from the host tier, and blocks written to it. */
    readonly hostLoadS: number;
    readonly hostStores: number;
    readonly cachedPromptTokens: number;
    readonly computedPromptTokens: number;
  };
  /**
   * KV moved from prefill to decode replicas (disaggregated fleets only):
   * transfers, bytes, each transfer's time, and the links' energy (facility,
   * x PUE; included in `energy.joules`).
   */
  readonly kvTransfer?: {
    readonly link: string;
    readonly linkName: string;
    readonly transfers: number;
    readonly bytes: number;
    readonly ms: Distribution;
    readonly joules: number;
  };
  readonly energy: { readonly joules: number; readonly joulesPerToken: number; readonly busyJoules: number; readonly idleJoules: number; readonly pue: number };
  readonly cost: { readonly usd: number; readonly usdPerMTok: number; readonly deviceUsd: number; readonly energyUsd: number };
  readonly replicas: readonly ReplicaReport[];
  readonly timeline: {
    readonly bucketS: number;
    readonly outputTokensPerS: readonly number[];
    readonly completedPerS: readonly number[];
    readonly queued: readonly number[];
    readonly running: readonly number[];
    readonly down: readonly number[];
  };
  readonly simulation: {
    readonly events: number;
    readonly eventsPerS: number;
    readonly wallS: number;
    readonly simulatedS: number;
    readonly decisions: number;
    readonly decisionUs: number;
  };
}

/** Percentile of sorted values by linear interpolation between closest ranks (numpy's default). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo]!;
  return a + (sorted[hi]! - a) * (pos - lo);
}

/** Summary of a sample (sorted in place when a Float64Array is passed). */
export function distribution(values: Float64Array): Distribution {
  const n = values.length;
  if (n === 0) return { count: 0, mean: NaN, min: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN };
  values.sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i]!;
  return { count: n, mean: sum / n, min: values[0]!, p50: percentile(values, 0.5), p90: percentile(values, 0.9), p99: percentile(values, 0.99), max: values[n - 1]! };
}

export interface RequestLatencies {
  readonly ttft: Float64Array;
  readonly tpot: Float64Array;
  readonly e2e: Float64Array;
  /** Completed requests within the SLO. */
  readonly good: number;
  /** By the replica each completed on (the result's order): requests completed, and those within the SLO. */
  readonly servedBy: Int32Array;
  readonly goodBy: Int32Array;
}

/** Per-request latencies of completed requests: TTFT, TPOT (requests of 2+ tokens), end to end. */
export function requestLatencies(result: SimResult): RequestLatencies {
  const { trace, requests } = result;
  const slo = result.fleet.slo;
  let done = 0;
  let multi = 0;
  for (let i = 0; i < trace.count; i++) {
    if (requests.status[i] !== STATUS.done) continue;
    done++;
    if (trace.outputTokens[i]! > 1) multi++;
  }
  const ttft = new Float64Array(done);
  const tpot = new Float64Array(multi);
  const e2e = new Float64Array(done);
  let a = 0;
  let b = 0;
  let good = 0;
  const servedBy = new Int32Array(result.replicas.length);
  const goodBy = new Int32Array(result.replicas.length);
  for (let i = 0; i < trace.count; i++) {
    if (requests.status[i] !== STATUS.done) continue;
    const r = requests.replica[i]!;
    servedBy[r]!++;
    const arrival = requests.arrivalMs[i]!;
    const t = requests.firstTokenMs[i]! - arrival;
    const e = requests.finishMs[i]! - arrival;
    ttft[a] = t;
    e2e[a++] = e;
    const out = trace.outputTokens[i]!;
    let p = 0;
    if (out > 1) {
      p = (requests.finishMs[i]! - requests.firstTokenMs[i]!) / (out - 1);
      tpot[b++] = p;
    }
    if (t <= slo.ttftMs && p <= slo.tpotMs) {
      good++;
      goodBy[r]!++;
    }
  }
  return { ttft, tpot, e2e, good, servedBy, goodBy };
}

/** Counters of the replicas that the report gives fleet totals of. */
const TOTALLED = ["blockRefs", "blockHits", "hostBlockHits", "hostLoadMs", "hostStores", "cachedTokens", "prefillTokens", "outputTokens", "preemptions"] as const;

type Totals = Record<(typeof TOTALLED)[number], number>;

export function buildReport(result: SimResult): SimReport {
  const { fleet, trace } = result;
  const ts = traceStats(trace);
  const lat = requestLatencies(result);
  const spanS = result.endMs / 1000;
  const perS = (x: number): number => (spanS > 0 ? x / spanS : 0);
  const completed = completedCount(result);
  const totals = sums(result.replicas.map((r) => r.counters), TOTALLED);
  const islandByName = new Map(fleet.islands.map((i) => [i.name, i]));
  const rows = result.replicas.map((rep, i) => {
    const own = lat.servedBy[i]! > 0;
    return replicaRow(result, rep, islandByName.get(rep.island)!, { served: own ? lat.servedBy[i]! : completed, useful: own ? lat.goodBy[i]! : lat.good });
  });
  const replicas = rows.map((r) => r.report);
  const { busyJ, idleJ, deviceUsd, atLimitMs, upMs, paidMs } = sums(rows, ["busyJ", "idleJ", "deviceUsd", "atLimitMs", "upMs", "paidMs"]);
  const kvTransfer = kvTransferOf(result);
  const joules = busyJ + idleJ + (kvTransfer?.joules ?? 0);
  const energyUsd = (joules / 3.6e6) * fleet.usdPerKwh;
  const usd = deviceUsd + energyUsd;
  const outputTokens = totals.outputTokens;
  return {
    trace: { name: trace.name, requests: trace.count, spanS: ts.durationMs / 1000, inputTokens: ts.inputTokens, outputTokens: ts.outputTokens },
    fleet: fleetOf(fleet),
    policy: result.policy,
    sample: fleet.sample,
    chunkedPrefill: fleet.chunkedPrefill,
    blockTokens: fleet.blockTokens,
    slo: fleet.slo,
    requests: requestsOf(result, completed, totals.preemptions),
    latency: { ttftMs: distribution(lat.ttft), tpotMs: distribution(lat.tpot), e2eMs: distribution(lat.e2e) },
    throughput: { spanS, requestsPerS: perS(completed), outputTokensPerS: perS(outputTokens), inputTokensPerS: perS(totals.cachedTokens + totals.prefillTokens) },
    goodput: { requests: lat.good, share: trace.count > 0 ? lat.good / trace.count : 0, requestsPerS: perS(lat.good) },
    availability: availabilityOf(replicas),
    efficiency: efficiencyOf({ atLimit: atLimitMs, up: upMs, paid: paidMs, served: completed, useful: lat.good }),
    cache: cacheOf(totals),
    ...(kvTransfer === undefined ? {} : { kvTransfer }),
    energy: { joules, joulesPerToken: outputTokens > 0 ? joules / outputTokens : NaN, busyJoules: busyJ, idleJoules: idleJ, pue: fleet.pue },
    cost: { usd, usdPerMTok: outputTokens > 0 ? (usd / outputTokens) * 1e6 : NaN, deviceUsd, energyUsd },
    replicas,
    timeline: timelineOf(result.timeline),
    simulation: simulationOf(result, spanS),
  };
}

function kvTransferOf(result: SimResult): SimReport["kvTransfer"] {
  const x = result.kvTransfer;
  if (x === undefined) return undefined;
  return { link: x.link, linkName: x.linkName, transfers: x.transfers, bytes: x.bytes, ms: distribution(x.ms.slice()), joules: x.joules * result.fleet.pue };
}

function completedCount(result: SimResult): number {
  let completed = 0;
  for (let i = 0; i < result.trace.count; i++) if (result.requests.status[i] === STATUS.done) completed++;
  return completed;
}

/** A replica's row, and the energy, device cost and times (at the limit, up, paid) the fleet's totals add up. */
function replicaRow(result: SimResult, rep: SimReplicaResult, isl: SimIsland, requests: Served): ReplicaRow {
  const { fleet } = result;
  // Its time in the fleet: the whole run, unless it joined late or left (membership changes).
  const spanMs = rep.memberMs;
  const c = rep.counters;
  const upMs = Math.max(0, spanMs - rep.downMs);
  const idleMs = Math.max(0, upMs - c.busyMs);
  // Facility joules: passes' energy plus idle draw while up (a replica down for repair draws nothing), x tp x PUE.
  const busy = c.joulesPerDevice * isl.tp * fleet.pue;
  const idle = (idleMs / 1000) * isl.hardware.idleW * isl.tp * fleet.pue;
  // Devices are paid while in the fleet, up or down.
  const usd = (isl.usdPerHour * spanMs) / 3.6e6;
  const report: ReplicaReport = {
    name: rep.name,
    island: rep.island,
    utilization: upMs > 0 ? Math.min(1, c.busyMs / upMs) : 0,
    completed: c.completed,
    outputTokens: c.outputTokens,
    busyS: c.busyMs / 1000,
    downS: rep.downMs / 1000,
    memberS: spanMs / 1000,
    failures: rep.failures,
    preemptions: c.preemptions,
    cacheHitRate: c.blockRefs > 0 ? c.blockHits / c.blockRefs : 0,
    joules: busy + idle,
    usd: usd + ((busy + idle) / 3.6e6) * fleet.usdPerKwh,
    efficiency: efficiencyOf({ atLimit: c.rooflineMs, up: upMs, paid: spanMs, ...requests }),
  };
  return { report, busyJ: busy, idleJ: idle, deviceUsd: usd, atLimitMs: c.rooflineMs, upMs, paidMs: spanMs };
}

interface ReplicaRow {
  readonly report: ReplicaReport;
  readonly busyJ: number;
  readonly idleJ: number;
  readonly deviceUsd: number;
  readonly atLimitMs: number;
  readonly upMs: number;
  readonly paidMs: number;
}

/** Requests completed, and of those within the SLO. */
type Served = Pick<EfficiencyTotals, "served" | "useful">;

function fleetOf(fleet: SimFleet): SimReport["fleet"] {
  return {
    replicas: fleet.replicaCount,
    devices: fleet.islands.reduce((s, i) => s + i.count * i.tp, 0),
    islands: fleet.islands.map((i) => ({
      name: i.name,
      hardware: i.hardware.id,
      model: i.model.id,
      precision: i.precision.id,
      tp: i.tp,
      count: i.count,
      maxBatch: i.maxBatch,
      maxQueue: i.maxQueue,
      kvCapacityTokens: i.profile.kvCapacityTokens,
      contextSize: i.contextSize,
      usdPerHour: i.usdPerHour,
      role: i.role ?? "both",
    })),
  };
}

function requestsOf(result: SimResult, completed: number, preemptions: number): SimReport["requests"] {
  return {
    total: result.trace.count,
    completed,
    rejected: result.rejected.no_ready_replica + result.rejected.overloaded + result.rejected.context_length_exceeded,
    rejectedBy: { ...result.rejected },
    lost: result.lost,
    unfinished: result.unfinished,
    retries: result.retries,
    preemptions,
  };
}

function cacheOf(t: Totals): SimReport["cache"] {
  return {
    blockRefs: t.blockRefs,
    blockHits: t.blockHits,
    hitRate: share(t.blockHits, t.blockRefs),
    hbmHitRate: share(t.blockHits - t.hostBlockHits, t.blockRefs),
    hostBlockHits: t.hostBlockHits,
    hostHitRate: share(t.hostBlockHits, t.blockRefs),
    hostLoadS: t.hostLoadMs / 1000,
    hostStores: t.hostStores,
    cachedPromptTokens: t.cachedTokens,
    computedPromptTokens: t.prefillTokens,
  };
}

/** The timeline's counts per bucket as rates per second. */
function timelineOf(tl: SimTimeline): SimReport["timeline"] {
  const bucketS = tl.bucketMs / 1000;
  return {
    bucketS,
    outputTokensPerS: tl.outputTokens.map((x) => x / bucketS),
    completedPerS: tl.completed.map((x) => x / bucketS),
    queued: tl.queued,
    running: tl.running,
    down: tl.down,
  };
}

function simulationOf(result: SimResult, spanS: number): SimReport["simulation"] {
  return {
    events: result.events,
    eventsPerS: result.wallMs > 0 ? (result.events / result.wallMs) * 1000 : 0,
    wallS: result.wallMs / 1000,
    simulatedS: spanS,
    decisions: result.decisions,
    decisionUs: result.decisions > 0 ? (result.decisionMs * 1000) / result.decisions : 0,
  };
}

/** Per-request rows as CSV: id, arrival, outcome, TTFT, TPOT, end to end, replica, retries, cached prompt tokens. */
export function requestsCsv(result: SimResult): string {
  const { trace, requests } = result;
  const names = result.replicas.map((r) => r.name);
  const outcome = ["pending", "done", "rejected", "lost"];
  const rows = ["id,arrival_ms,input_tokens,output_tokens,outcome,ttft_ms,tpot_ms,e2e_ms,replica,retries,cached_tokens"];
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : "");
  for (let i = 0; i < trace.count; i++) {
    // A closed-loop request that never arrived (the run stopped first) keeps its place in the trace.
    const a = Number.isNaN(requests.arrivalMs[i]!) ? trace.arrivalMs[i]! : requests.arrivalMs[i]!;
    const first = requests.firstTokenMs[i]!;
    const fin = requests.finishMs[i]!;
    const out = trace.outputTokens[i]!;
    const done = requests.status[i] === STATUS.done;
    const r = requests.replica[i]!;
    rows.push(
      [
        i,
        a.toFixed(3),
        trace.inputTokens[i],
        out,
        outcome[requests.status[i]!] ?? "pending",
        done ? f(first - a) : "",
        done && out > 1 ? f((fin - first) / (out - 1)) : "",
        done ? f(fin - a) : "",
        r >= 0 ? names[r] : "",
        requests.retries[i],
        done ? requests.cachedTokens[i] : "",
      ].join(","),
    );
  }
  return `${rows.join("\n")}\n`;
}

/** JSON text of a report (NaN and Infinity become null, as JSON requires). */
export function reportJson(report: SimReport): string {
  return `${JSON.stringify(report, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`;
}

function share(part: number, whole: number): number {
  return whole > 0 ? part / whole : 0;
}

/** Up time over the time replicas were in the fleet (a replica added late or removed counts only while a member). */
function availabilityOf(replicas: readonly ReplicaReport[]): SimReport["availability"] {
  let downReplicaS = 0;
  let failures = 0;
  let total = 0;
  for (const r of replicas) {
    downReplicaS += r.downS;
    failures += r.failures;
    total += r.memberS;
  }
  return { share: total > 0 ? 1 - downReplicaS / total : 1, failures, downReplicaS };
}
