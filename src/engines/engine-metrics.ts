/**
 * What an engine says of its own load on /metrics, read from the names each
 * engine exports (and has exported: names change across versions), and how
 * that report joins the load this gateway counts itself.
 *
 * Sources (names only): vLLM vllm/engine/metrics.py (V0) and
 * vllm/v1/metrics/loggers.py (V1); SGLang python/sglang/srt/metrics/collector.py
 * and managers/scheduler_metrics_mixin.py (labels); llama.cpp's server
 * (examples/server/server.cpp, later tools/server/server-context.cpp);
 * Flotilla's own src/obs/metrics.ts. test/engines/fixtures/ holds scrapes
 * built from each, citing the version read.
 */
import type { EngineLoad, ReportedLoad } from "./engine.js";
import type { Sample } from "./prometheus-text.js";

export type MetricsDialect = "vllm" | "sglang" | "llama.cpp" | "flotilla";

/** An engine's own account of its load, summed over its schedulers. */
export interface EngineReport {
  readonly dialect: MetricsDialect;
  /** Requests the engine is running now, from every client. */
  readonly running: number;
  /** Requests it has accepted and not yet started. */
  readonly waiting: number;
  /** Share of its KV cache in use, 0..1; undefined where the engine does not say (llama-server since it dropped kv_cache_usage_ratio). */
  readonly kvUsage: number | undefined;
}

interface Dialect {
  readonly dialect: MetricsDialect;
  /** The gauge of running requests, whose presence says the text is this engine's. */
  readonly running: string;
  readonly waiting: readonly string[];
  /** KV usage gauges, newest name first: an engine exporting both the old and the new name is read by the new one. */
  readonly kv: readonly string[];
  /** The label naming the model a series is about. */
  readonly modelLabel?: string;
  /**
   * Whether series of other models are someone else's load. A Flotilla
   * gateway serves many models; a vLLM or SGLang server serves one, whatever
   * name its label gives it (the first of several served names), so there a
   * label that matches no upstream model name still means this model.
   */
  readonly otherModelsAreOthers: boolean;
  /** Labels whose series repeat one scheduler's figures (SGLang's tensor- and pipeline-parallel ranks): the largest counts once. */
  readonly repeats: readonly string[];
}

const DIALECTS: readonly Dialect[] = [
  {
    dialect: "vllm",
    running: "vllm:num_requests_running",
    // V0's swapped requests were preempted to CPU and resume before new ones start: waiting, as far as a new request is concerned.
    waiting: ["vllm:num_requests_waiting", "vllm:num_requests_swapped"],
    // Renamed in 0.9 (both exported for a while), the old name hidden from 0.10.
    kv: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    modelLabel: "model_name",
    otherModelsAreOthers: false,
    repeats: [],
  },
  {
    dialect: "sglang",
    running: "sglang:num_running_reqs",
    waiting: ["sglang:num_queue_reqs"],
    kv: ["sglang:token_usage"],
    modelLabel: "model_name",
    otherModelsAreOthers: false,
    repeats: ["tp_rank", "pp_rank"],
  },
  {
    dialect: "llama.cpp",
    running: "llamacpp:requests_processing",
    waiting: ["llamacpp:requests_deferred"],
    kv: ["llamacpp:kv_cache_usage_ratio"],
    otherModelsAreOthers: false,
    repeats: [],
  },
  {
    dialect: "flotilla",
    running: "flotilla_replica_running_requests",
    // Waiting on a replica's slots, and in the gateway's admission queue before any replica.
    waiting: ["flotilla_replica_queue_depth", "flotilla_admission_queued_requests"],
    kv: ["flotilla_replica_kv_utilization_ratio"],
    modelLabel: "model",
    otherModelsAreOthers: true,
    repeats: [],
  },
];

/**
 * The load report in a scrape, for `model` (the name the upstream knows);
 * undefined when the text holds no load gauge of an engine listed above.
 * Counts add up over the engine's schedulers (vLLM's data-parallel engines,
 * SGLang's dp ranks, a Flotilla's replicas); KV usage is their mean.
 */
export function readReport(samples: readonly Sample[], model: string): EngineReport | undefined {
  const byName = new Map<string, Sample[]>();
  for (const s of samples) {
    const list = byName.get(s.name);
    if (list === undefined) byName.set(s.name, [s]);
    else list.push(s);
  }
  for (const d of DIALECTS) {
    const series = (name: string): Sample[] => ofModel(byName.get(name) ?? [], d, model);
    const running = sumOver(series(d.running), d.repeats);
    if (running === undefined) continue;
    const waiting = d.waiting.reduce((n, name) => n + (sumOver(series(name), d.repeats) ?? 0), 0);
    let kvUsage: number | undefined;
    for (const name of d.kv) kvUsage ??= meanOver(series(name), d.repeats);
    return { dialect: d.dialect, running: count(running), waiting: count(waiting), kvUsage: kvUsage === undefined ? undefined : Math.min(1, Math.max(0, kvUsage)) };
  }
  return undefined;
}

/** The series about `model`: where the label names it; else, for a one-model server, all of them. */
function ofModel(series: Sample[], d: Dialect, model: string): Sample[] {
  if (d.modelLabel === undefined) return series;
  const own = series.filter((s) => s.labels[d.modelLabel!] === model);
  return own.length > 0 || d.otherModelsAreOthers ? own : series;
}

/** Per scheduler (series equal but for `repeats`), the largest finite value. */
function perScheduler(series: readonly Sample[], repeats: readonly string[]): number[] {
  const units = new Map<string, number>();
  for (const s of series) {
    if (!Number.isFinite(s.value)) continue;
    const key = JSON.stringify(Object.entries(s.labels).filter(([k]) => !repeats.includes(k)).sort(([a], [b]) => (a < b ? -1 : 1)));
    units.set(key, Math.max(units.get(key) ?? -Infinity, s.value));
  }
  return [...units.values()];
}

function sumOver(series: readonly Sample[], repeats: readonly string[]): number | undefined {
  const values = perScheduler(series, repeats);
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0);
}

function meanOver(series: readonly Sample[], repeats: readonly string[]): number | undefined {
  const values = perScheduler(series, repeats);
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0) / values.length;
}

const count = (x: number): number => Math.max(0, Math.round(x));

/**
 * Requests other clients had on a replica when it reported `running` and
 * `waiting`, this gateway having sent it `ownAtReport` then and not seen
 * them end: never below zero. The one rule for combining a report with a
 * gateway's own count, live (withReport) and in the twin
 * (sim/router-instances.ts).
 */
export function othersOnReplica(running: number, waiting: number, ownAtReport: number): number {
  return Math.max(0, running + waiting - ownAtReport);
}

/**
 * Others' requests on a replica when the gateways share their counts
 * (gateway/peer-sync.ts): what the peers last said they have there
 * (`peersNow`), plus what the engine's last report showed beyond this
 * gateway's and its peers' counts then (`reportedOthers` less
 * `peersAtReport`): clients that reach the engine past every gateway. The
 * peers' counts are fresher than the engine's report, so they lead.
 */
export function withPeers(reportedOthers: number, peersNow: number, peersAtReport: number): number {
  return peersNow + Math.max(0, reportedOthers - peersAtReport);
}

/**
 * The load the router sees once the engine has reported: this gateway's own
 * requests plus what others (another gateway, a client calling the engine
 * directly) put on it.
 *
 * Others' share is the report less what this gateway had sent the engine
 * when the report was taken (`ownAtReport`), never below zero; ours is
 * counted live. So the sum follows our own requests at once, and others'
 * only as fast as the engine is scraped, without counting a request of ours
 * twice nor a finished one of ours for a whole interval, as max(own,
 * reported) would. Which of ours the engine was running and which it had
 * queued is unknown: ours are taken to run first, so others' running
 * requests are the report's beyond ours and the rest of others' total
 * waits; the total is exact either way.
 *
 * Others' load ranks a replica but never makes this gateway refuse a
 * request: it is capped so that `active + queued` stays under
 * `slots + maxQueue`, the bound the `has-capacity` filter applies to this
 * gateway's own slots and queue.
 */
export function withReport(own: EngineLoad, report: EngineReport, ownAtReport: number, ageMs: number, peers?: PeerCounts): EngineLoad {
  const fromReport = othersOnReplica(report.running, report.waiting, ownAtReport);
  const others = peers === undefined ? fromReport : withPeers(fromReport, peers.now, peers.atReport);
  const running = Math.min(others, Math.max(0, report.running - ownAtReport));
  const reported: ReportedLoad = { running: report.running, waiting: report.waiting, kvUsage: report.kvUsage, ageMs };
  return joined(own, running, others - running, reported);
}

/** Requests other gateways said they have on a replica (gateway/peer-sync.ts): now, and when its engine's last report was taken. */
export interface PeerCounts {
  readonly now: number;
  readonly atReport: number;
}

/** The load with the peers' requests and no report from the engine: theirs taken to run where slots are free. */
export function withPeerCount(own: EngineLoad, peers: number): EngineLoad {
  const running = Math.min(peers, Math.max(0, own.slots - own.active));
  return joined(own, running, peers - running, undefined);
}

/** Others' requests joined to the gateway's own, capped so the has-capacity filter never refuses for them. */
function joined(own: EngineLoad, othersRunning: number, othersWaiting: number, reported: ReportedLoad | undefined): EngineLoad {
  const room = Math.max(0, own.slots + own.maxQueue - 1 - own.active - own.queued);
  const running = Math.min(othersRunning, room);
  const waiting = Math.min(othersWaiting, room - running);
  return { ...own, active: own.active + running, queued: own.queued + waiting, own: { active: own.active, queued: own.queued }, ...(reported === undefined ? {} : { reported }) };
}
