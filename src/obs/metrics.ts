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
import type { HealthState } from "../fleet/health.js";
import { E2E_BUCKETS_S, fleetShares, TPOT_BUCKETS_S, TTFT_BUCKETS_S, type Observatory, type ReplicaStats } from "./observatory.js";

const HEALTH_STATES: readonly HealthState[] = ["healthy", "half-open", "ejected", "draining", "terminating", "removed", "not-ready"];

/** Builds the registry for one gateway; several gateways in one process each have their own. */
export function createMetrics(obs: Observatory): Registry {
  const registry = new Registry();
  const registers = [registry];
  const byReplica = ["model", "replica"] as const;

  obs.histograms = {
    ttft: new Histogram({ name: "flotilla_time_to_first_token_seconds", help: "Time from admission to the first output token, by the replica that produced it.", labelNames: byReplica, buckets: [...TTFT_BUCKETS_S], registers }),
    tpot: new Histogram({ name: "flotilla_time_per_output_token_seconds", help: "Mean time per output token after the first, per successful request of two or more tokens.", labelNames: byReplica, buckets: [...TPOT_BUCKETS_S], registers }),
    e2e: new Histogram({ name: "flotilla_request_duration_seconds", help: "End-to-end latency of successful requests, from admission to the last token, by the replica that finished.", labelNames: byReplica, buckets: [...E2E_BUCKETS_S], registers }),
  };

  const replicaCounter = (name: string, help: string, value: (s: ReplicaStats) => number): void => {
    new Counter({
      name,
      help,
      labelNames: byReplica,
      registers,
      collect() {
        this.reset();
        for (const s of obs.replicas) this.inc({ model: s.model, replica: s.id }, value(s));
      },
    });
  };
  const replicaGauge = (name: string, help: string, value: (s: ReplicaStats) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: byReplica,
      registers,
      collect() {
        this.reset();
        for (const s of obs.replicas) {
          const v = value(s);
          if (v !== undefined) this.set({ model: s.model, replica: s.id }, v);
        }
      },
    });
  };

  new Counter({
    name: "flotilla_requests_total",
    help: "Finished /v1 requests by outcome: ok, cancelled, deadline_exceeded, or the failure code (overloaded, no_ready_replica, engine_error, ...).",
    labelNames: ["model", "endpoint", "status"],
    registers,
    collect() {
      this.reset();
      for (const r of obs.requests.values()) this.inc({ model: r.model, endpoint: r.endpoint, status: r.status }, r.count);
    },
  });
  new Counter({
    name: "flotilla_http_requests_total",
    help: "HTTP responses sent, by method, route pattern and status code; counts requests refused before they reach a model (400, 401, 404, 413, 429) too.",
    labelNames: ["method", "route", "code"],
    registers,
    collect() {
      this.reset();
      for (const r of obs.http.values()) this.inc({ method: r.method, route: r.route, code: r.code }, r.count);
    },
  });
  new Gauge({
    name: "flotilla_requests_in_flight",
    help: "Admitted /v1 requests not yet finished.",
    registers,
    collect() {
      this.set(obs.inFlight);
    },
  });
  new Gauge({
    name: "flotilla_admission_queued_requests",
    help: "Requests waiting at the gateway for capacity (every replica's slots busy), by model and priority class.",
    labelNames: ["model", "priority"],
    registers,
    collect() {
      this.reset();
      for (const q of obs.admissionQueue()) this.set({ model: q.model, priority: q.priority }, q.count);
    },
  });
  replicaCounter("flotilla_input_tokens_total", "Prompt tokens processed by successful requests (replayed text of a continuation included), by the replica that finished.", (s) => s.inputTokens);
  replicaCounter("flotilla_cached_input_tokens_total", "Prompt tokens served from the engine's KV cache instead of recomputed.", (s) => s.cachedTokens);
  replicaCounter("flotilla_output_tokens_total", "Output tokens generated, counted as they stream, by the replica that generated them.", (s) => s.outputTokens);
  replicaCounter("flotilla_failovers_total", "Attempts that failed before any output and were retried on another replica, or lost the first token to a hedge, by the replica that failed or lost.", (s) => s.failovers);
  replicaCounter("flotilla_continuations_total", "Answers resumed on another replica after this one failed mid-stream.", (s) => s.continuations);
  new Counter({
    name: "flotilla_cascade_escalations_total",
    help: "Requests a model cascade sent from its light model to its heavy one, by cascade and reason.",
    labelNames: ["model", "reason"],
    registers,
    collect() {
      this.reset();
      for (const e of obs.escalations.values()) this.inc({ model: e.model, reason: e.reason }, e.count);
    },
  });
  const energyCounter = (name: string, help: string, value: (e: { joules: number; usd: number }) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ["tenant", "model", "hardware"],
      registers,
      collect() {
        this.reset();
        for (const e of obs.energy.values()) this.inc({ tenant: e.tenant, model: e.model, hardware: e.hardware }, value(e));
      },
    });
  };
  energyCounter("flotilla_energy_joules_total", "Energy of successful requests as the tenancy prices it (x_flotilla.energy_j), by tenant, model and hardware.", (e) => e.joules);
  energyCounter("flotilla_cost_usd_total", "Cost of successful requests as the tenancy prices it (x_flotilla.cost_usd), by tenant, model and hardware.", (e) => e.usd);

  replicaGauge("flotilla_replica_queue_depth", "Requests waiting for a free slot on the replica.", (s) => s.queued);
  replicaGauge("flotilla_replica_running_requests", "Requests generating on the replica now.", (s) => s.active);
  replicaGauge("flotilla_replica_slots", "Sequences the replica runs at once (parallel).", (s) => s.slots);
  replicaGauge(
    "flotilla_replica_kv_utilization_ratio",
    "Share of the replica's KV cache (slots x context) held by requests in flight: prompt (tokenizer count, or characters / 4 for remote engines) plus output so far. Absent where the context size is unknown.",
    (s) => s.kv,
  );
  replicaGauge("flotilla_replica_up", "1 when the replica is ready and its breaker admits traffic (healthy or half-open), else 0.", (s) => (s.available ? 1 : 0));
  new Gauge({
    name: "flotilla_replica_health_state",
    help: "1 for the replica's current health state, 0 for the others.",
    labelNames: ["model", "replica", "state"],
    registers,
    collect() {
      this.reset();
      for (const s of obs.replicas) for (const state of HEALTH_STATES) this.set({ model: s.model, replica: s.id, state }, s.state === state ? 1 : 0);
    },
  });
  new Gauge({
    name: "flotilla_replica_info",
    help: "Always 1; the labels say what the replica is.",
    labelNames: ["model", "replica", "engine", "hardware"],
    registers,
    collect() {
      this.reset();
      for (const s of obs.replicas) this.set({ model: s.model, replica: s.id, engine: s.engine, hardware: s.hardware }, 1);
    },
  });
  replicaCounter("flotilla_replica_busy_slot_seconds_total", "Slot-seconds spent running requests while the replica was up (sampled every tick).", (s) => s.busySlotS);
  replicaCounter("flotilla_replica_busy_seconds_total", "Seconds the replica was up with at least one request running.", (s) => s.busyS);
  replicaCounter("flotilla_replica_ready_slot_seconds_total", "Slot-seconds the replica was up (ready, breaker closed or half-open).", (s) => s.readySlotS);
  replicaCounter("flotilla_replica_ready_seconds_total", "Seconds the replica was up.", (s) => s.readyS);
  replicaCounter("flotilla_replica_observed_seconds_total", "Seconds the replica was watched, up or not.", (s) => s.observedS);

  const fleetGauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  };
  fleetGauge("flotilla_fleet_availability_ratio", "Share of replicas up now.", () => fleetShares(obs.replicas).availability);
  fleetGauge("flotilla_fleet_utilization_ratio", "Busy slots over slots of replicas up, now.", () => fleetShares(obs.replicas).utilization);
  fleetGauge("flotilla_fleet_realised_value_ratio", "Utilisation x availability now: the share of the fleet's paid slot-time doing useful work.", () => {
    const { availability, utilization } = fleetShares(obs.replicas);
    return availability * utilization;
  });

  return registry;
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
