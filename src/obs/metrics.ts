/**
 * The Prometheus view of the Observatory, through prom-client. Histograms are
 * observed once per request; every counter and gauge is filled from the
 * Observatory's plain numbers when /metrics is scraped, so serving a token
 * touches no labelled metric at all.
 *
 * Labels are bounded: model (names in the fleet file), replica (ids the
 * fleet file creates), hardware, engine, endpoint, status (a fixed
 * vocabulary), tenant (tenants the operator created). Never a request id, a
 * key or a prompt.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { HealthState } from "../scheduler/health.js";
import { WINDOW_MS, WINDOW_REQUESTS } from "./twin-error.js";
import { E2E_BUCKETS_S, ROUTER_PLUGIN_BUCKETS_S, fleetEfficiency, fleetShares, TPOT_BUCKETS_S, TTFT_BUCKETS_S, type HistogramSinks, type Observatory, type PeerRow, type ReplicaStats, type TenantEnergy } from "./observatory.js";

const HEALTH_STATES: readonly HealthState[] = ["healthy", "half-open", "ejected", "draining", "terminating", "removed", "not-ready"];

type Labels = Record<string, string>;

const BY_REPLICA = ["model", "replica"] as const;
const replicaLabels = (s: ReplicaStats): Labels => ({ model: s.model, replica: s.id });

/**
 * Metrics read from the Observatory when /metrics is scraped: each collect
 * resets the metric and sets it afresh from plain rows, so a series whose
 * row went away (a removed replica) leaves the output too.
 */
interface Pull {
  /** A counter with a series per row. */
  counter<T>(name: string, help: string, labelNames: readonly string[], rows: () => Iterable<T>, labels: (row: T) => Labels, value: (row: T) => number): void;
  /** A gauge with a series per row; none for a row whose value is undefined. */
  gauge<T>(name: string, help: string, labelNames: readonly string[], rows: () => Iterable<T>, labels: (row: T) => Labels, value: (row: T) => number | undefined): void;
  /** A counter with a series per replica, by model and replica. */
  replicaCounter(name: string, help: string, value: (s: ReplicaStats) => number): void;
  /** A gauge with a series per replica, by model and replica; none where the value is undefined. */
  replicaGauge(name: string, help: string, value: (s: ReplicaStats) => number | undefined): void;
  /** A gauge of one value, without labels. */
  scalarGauge(name: string, help: string, value: () => number): void;
}

function pulling(obs: Observatory, registry: Registry): Pull {
  const registers = [registry];
  const pull: Pull = {
    counter(name, help, labelNames, rows, labels, value) {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const row of rows()) this.inc(labels(row), value(row));
        },
      });
    },
    gauge(name, help, labelNames, rows, labels, value) {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const row of rows()) {
            const v = value(row);
            if (v !== undefined) this.set(labels(row), v);
          }
        },
      });
    },
    replicaCounter: (name, help, value) => pull.counter(name, help, BY_REPLICA, () => obs.replicas, replicaLabels, value),
    replicaGauge: (name, help, value) => pull.gauge(name, help, BY_REPLICA, () => obs.replicas, replicaLabels, value),
    scalarGauge(name, help, value) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
    },
  };
  return pull;
}

/** Builds the registry for one gateway; several gateways in one process each have their own. */
export function createMetrics(obs: Observatory): Registry {
  const registry = new Registry();
  obs.histograms = latencyHistograms(registry);
  const pull = pulling(obs, registry);
  // Registered in the order the scrape lists them.
  requestMetrics(obs, pull);
  workMetrics(obs, pull);
  replicaMetrics(obs, pull);
  fleetMetrics(obs, pull);
  autoscalingMetrics(obs, pull);
  peerMetrics(obs, pull);
  twinMetrics(obs, pull);
  return registry;
}

/** The only metrics observed per request; the Observatory pushes to them. */
function latencyHistograms(registry: Registry): HistogramSinks {
  const registers = [registry];
  return {
    ttft: new Histogram({ name: "flotilla_time_to_first_token_seconds", help: "Time from admission to the first output token, by the replica that produced it.", labelNames: BY_REPLICA, buckets: [...TTFT_BUCKETS_S], registers }),
    tpot: new Histogram({ name: "flotilla_time_per_output_token_seconds", help: "Mean time per output token after the first, per successful request of two or more tokens.", labelNames: BY_REPLICA, buckets: [...TPOT_BUCKETS_S], registers }),
    e2e: new Histogram({ name: "flotilla_request_duration_seconds", help: "End-to-end latency of successful requests, from admission to the last token, by the replica that finished.", labelNames: BY_REPLICA, buckets: [...E2E_BUCKETS_S], registers }),
    routerPlugin: new Histogram({
      name: "flotilla_router_plugin_duration_seconds",
      help: "Time each routing plugin (filter:<name>, scorer:<name>, pick) took per decision, by policy.",
      labelNames: ["policy", "plugin"],
      buckets: [...ROUTER_PLUGIN_BUCKETS_S],
      registers,
    }),
  };
}

/** Requests by outcome, HTTP responses, and what is in flight or queued at the gateway. */
function requestMetrics(obs: Observatory, pull: Pull): void {
  pull.counter(
    "flotilla_requests_total",
    "Finished /v1 requests by outcome: ok, cancelled, deadline_exceeded, or the failure code (overloaded, no_ready_replica, engine_error, ...).",
    ["model", "endpoint", "status"],
    () => obs.requests.values(),
    (r) => ({ model: r.model, endpoint: r.endpoint, status: r.status }),
    (r) => r.count,
  );
  pull.counter(
    "flotilla_http_requests_total",
    "HTTP responses sent, by method, route pattern and status code; counts requests refused before they reach a model (400, 401, 404, 413, 429) too.",
    ["method", "route", "code"],
    () => obs.http.values(),
    (r) => ({ method: r.method, route: r.route, code: r.code }),
    (r) => r.count,
  );
  pull.scalarGauge("flotilla_requests_in_flight", "Admitted /v1 requests not yet finished.", () => obs.inFlight);
  pull.gauge(
    "flotilla_admission_queued_requests",
    "Requests waiting at the gateway for capacity (every replica's slots busy), by model and priority class.",
    ["model", "priority"],
    () => obs.admissionQueue(),
    (q) => ({ model: q.model, priority: q.priority }),
    (q) => q.count,
  );
}

/** What the replicas did for the requests: tokens, retries elsewhere, cascade escalations, energy and cost. */
function workMetrics(obs: Observatory, pull: Pull): void {
  pull.replicaCounter("flotilla_input_tokens_total", "Prompt tokens processed by successful requests (replayed text of a continuation included), by the replica that finished.", (s) => s.inputTokens);
  pull.replicaCounter("flotilla_cached_input_tokens_total", "Prompt tokens served from the engine's KV cache instead of recomputed.", (s) => s.cachedTokens);
  pull.replicaCounter("flotilla_output_tokens_total", "Output tokens generated, counted as they stream, by the replica that generated them.", (s) => s.outputTokens);
  pull.replicaCounter("flotilla_failovers_total", "Attempts that failed before any output and were retried on another replica, or lost the first token to a hedge, by the replica that failed or lost.", (s) => s.failovers);
  pull.replicaCounter("flotilla_continuations_total", "Answers resumed on another replica after this one failed mid-stream.", (s) => s.continuations);
  pull.counter(
    "flotilla_cascade_escalations_total",
    "Requests a model cascade sent from its light model to its heavy one, by cascade and reason.",
    ["model", "reason"],
    () => obs.escalations.values(),
    (e) => ({ model: e.model, reason: e.reason }),
    (e) => e.count,
  );
  const energyCounter = (name: string, help: string, value: (e: TenantEnergy) => number): void =>
    pull.counter(name, help, ["tenant", "model", "hardware"], () => obs.energy.values(), (e) => ({ tenant: e.tenant, model: e.model, hardware: e.hardware }), value);
  energyCounter("flotilla_energy_joules_total", "Energy of successful requests as the tenancy prices it (x_flotilla.energy_j), by tenant, model and hardware.", (e) => e.joules);
  energyCounter("flotilla_cost_usd_total", "Cost of successful requests as the tenancy prices it (x_flotilla.cost_usd), by tenant, model and hardware.", (e) => e.usd);
}

/** Each replica's load, health and identity now, and the time it spent up and busy. */
function replicaMetrics(obs: Observatory, pull: Pull): void {
  pull.replicaGauge("flotilla_replica_queue_depth", "Requests waiting for a free slot on the replica.", (s) => s.queued);
  pull.replicaGauge("flotilla_replica_running_requests", "Requests generating on the replica now.", (s) => s.active);
  pull.replicaGauge("flotilla_replica_slots", "Sequences the replica runs at once (parallel).", (s) => s.slots);
  pull.replicaGauge(
    "flotilla_replica_kv_utilization_ratio",
    "Share of the replica's KV cache (slots x context) held by requests in flight: prompt (tokenizer count, or characters / 4 for remote engines) plus output so far. Absent where the context size is unknown.",
    (s) => s.kv,
  );
  pull.replicaGauge("flotilla_replica_up", "1 when the replica is ready and its breaker admits traffic (healthy or half-open), else 0.", (s) => (s.available ? 1 : 0));
  // A series for every state, 1 for the current one, so a state change shows as one series falling and another rising.
  pull.gauge(
    "flotilla_replica_health_state",
    "1 for the replica's current health state, 0 for the others.",
    ["model", "replica", "state"],
    () => obs.replicas.flatMap((s) => HEALTH_STATES.map((state) => ({ s, state }))),
    ({ s, state }) => ({ model: s.model, replica: s.id, state }),
    ({ s, state }) => (s.state === state ? 1 : 0),
  );
  pull.gauge(
    "flotilla_replica_info",
    "Always 1; the labels say what the replica is.",
    ["model", "replica", "engine", "hardware"],
    () => obs.replicas,
    (s) => ({ model: s.model, replica: s.id, engine: s.engine, hardware: s.hardware }),
    () => 1,
  );
  pull.replicaCounter("flotilla_replica_busy_slot_seconds_total", "Slot-seconds spent running requests while the replica was up (sampled every tick).", (s) => s.busySlotS);
  pull.replicaCounter("flotilla_replica_busy_seconds_total", "Seconds the replica was up with at least one request running.", (s) => s.busyS);
  pull.replicaCounter("flotilla_replica_ready_slot_seconds_total", "Slot-seconds the replica was up (ready, breaker closed or half-open).", (s) => s.readySlotS);
  pull.replicaCounter("flotilla_replica_ready_seconds_total", "Seconds the replica was up.", (s) => s.readyS);
  pull.replicaCounter("flotilla_replica_observed_seconds_total", "Seconds the replica was watched, up or not.", (s) => s.observedS);
  pull.replicaCounter("flotilla_replica_requests_ended_total", "Requests that ended on the replica, answered in full or not (failed, cancelled, cut off).", (s) => s.ended);
  pull.replicaCounter("flotilla_replica_requests_completed_total", "Requests the replica answered in full.", (s) => s.completed);
  pull.counter(
    "flotilla_replica_roofline_seconds_total",
    "Seconds the work of the requests that ended on the replica would take at its devices' physical limit (datasheet bandwidth and FLOPS, no software overhead); only replicas whose hardware the fleet file names.",
    BY_REPLICA,
    () => obs.replicas.filter((s) => s.roofline !== undefined),
    replicaLabels,
    (s) => s.rooflineS,
  );
  pull.replicaGauge("flotilla_replica_efficiency_ratio", "Over the last minute: the work at the physical limit over seconds up x seconds up over seconds watched x requests completed over requests ended.", (s) => s.efficiency()?.value);
}

/** The fleet's shares now, as the dashboard's points have them. */
function fleetMetrics(obs: Observatory, pull: Pull): void {
  pull.scalarGauge("flotilla_fleet_availability_ratio", "Share of replicas up now.", () => fleetShares(obs.replicas).availability);
  pull.scalarGauge("flotilla_fleet_utilization_ratio", "Busy slots over slots of replicas up, now.", () => fleetShares(obs.replicas).utilization);
  // NaN, not 0, where no replica names its hardware: unknown is not "0% efficient".
  pull.scalarGauge(
    "flotilla_fleet_efficiency_ratio",
    "Over the last minute, the replicas with a physical limit (named hardware): the share of what their hardware could deliver that it delivered as answers; NaN where no replica has one.",
    () => fleetEfficiency(obs.replicas)?.value ?? NaN,
  );
}

/** The autoscaler's counts per pool (gateway/autoscaling.ts), and what became of handing them over. */
function autoscalingMetrics(obs: Observatory, pull: Pull): void {
  pull.gauge("flotilla_desired_replicas", "Replicas the autoscaler wants for the island (a model's pool), from its last decision.", ["island"], () => obs.autoscaling(), (r) => ({ island: r.island }), (r) => r.desired);
  pull.gauge("flotilla_autoscale_serving_replicas", "Replicas of the island serving now (not draining or removed).", ["island"], () => obs.autoscaling(), (r) => ({ island: r.island }), (r) => r.current);
  pull.counter(
    "flotilla_autoscale_actions_total",
    "Counts handed to the island's actuator, by outcome (ok, failed).",
    ["island", "outcome"],
    () => obs.autoscaling().flatMap((r) => [{ island: r.island, outcome: "ok", n: r.actions.ok }, { island: r.island, outcome: "failed", n: r.actions.failed }]),
    (r) => ({ island: r.island, outcome: r.outcome }),
    (r) => r.n,
  );
}

/** Gateways on one store telling each other placements and load (server.peer_sync_ms); no series where peer sync is off. */
function peerMetrics(obs: Observatory, pull: Pull): void {
  const row = (): PeerRow[] => {
    const r = obs.peers();
    return r === undefined ? [] : [r];
  };
  pull.gauge("flotilla_peer_gateways", "Other gateways on the store heard from in the last max(1 s, 5 x server.peer_sync_ms); a gateway sends only while it routes.", [], row, () => ({}), (r) => r.gateways);
  pull.counter("flotilla_peer_placements_heard_total", "Prompts other gateways said they placed, as this one heard them.", [], row, () => ({}), (r) => r.placementsHeard);
  pull.gauge("flotilla_peer_broadcast_failing", "1 while this gateway's broadcasts to its peers fail (they route without its placements and counts), else 0.", [], row, () => ({}), (r) => (r.failing ? 1 : 0));
}

/** The hardware model against the live replicas (twin-error.ts): 1 is a perfect twin. */
function twinMetrics(obs: Observatory, pull: Pull): void {
  pull.gauge(
    "flotilla_twin_error_ratio",
    `Predicted / measured time to first token (metric="ttft") and per output token ("tpot") of the replica's last ${WINDOW_REQUESTS} timed requests of the last ${WINDOW_MS / 60_000} minutes (median), the prediction from the hardware model for each request's prompt, cached tokens and batch: 1 is a perfect model, below 1 the engine is slower. Only replicas with hardware in the fleet file.`,
    ["replica", "metric"],
    () => obs.twin.rows(obs.clock.now()),
    (r) => ({ replica: r.replica, metric: r.metric }),
    (r) => r.value,
  );
}

let processRegistry: Registry | undefined;

/** Node's standard process metrics (CPU, memory, event loop lag, GC), one collector per process however many gateways it runs. */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Prometheus text for a scrape: fresh load and health first, then the process's own metrics. */
export async function scrape(obs: Observatory, registry: Registry): Promise<string> {
  obs.refresh();
  const [fleet, process] = await Promise.all([registry.metrics(), processMetrics().metrics()]);
  return `${fleet}\n${process}`;
}
