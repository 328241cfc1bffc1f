/**
 * Observation of the fleet: Prometheus metrics, structured logs, and the
 * /ui dashboard (live fleet, and reports of `flotilla sim`). It watches; it
 * decides nothing.
 */
import type { FastifyInstance } from "fastify";
import type { Clock } from "../core/clock.js";
import type { Fleet } from "../fleet/fleet.js";
import type { BatchSource } from "./batches.js";
import { levelEnabled } from "./logging.js";
import { createMetrics } from "./metrics.js";
import { Observatory, type ObservatoryOptions } from "./observatory.js";
import type { LogDestination } from "./observer.js";
import { registerObsRoutes } from "./routes.js";
import { SimReports } from "./sim-reports.js";

export { recentBatches, type BatchSource, type BatchSummary } from "./batches.js";
export { loggerOptions, REDACTED_PATHS, type LogLevel } from "./logging.js";
export { Observatory, hardwareByReplica, hardwareOf, TTFT_BUCKETS_S, type FleetPoint } from "./observatory.js";
export type { LogDestination, RequestObserver, RequestStart, RequestWatch } from "./observer.js";

export interface ObservabilityOptions {
  /** Log every prompt (at info, with its request id). Off unless explicitly switched on (`--log-prompts`). */
  readonly logPrompts?: boolean;
  /** Folders written by `flotilla sim --out`, opened read-only at /ui. */
  readonly simReports?: readonly string[];
  /** Where log lines go instead of stdout (tests capture them here). */
  readonly logDestination?: LogDestination;
  /** How often load and health are sampled and pushed to open dashboards, in ms (default 1000). */
  readonly tickMs?: number;
  /** Hardware of replicas by id, where the fleet file names it (hardwareByReplica(config)); labels and dashboard groups. */
  readonly hardware?: Readonly<Record<string, string>>;
  /** A replica's hardware model (its rate card's `perf`), for flotilla_twin_error_ratio; replicas without one get no series. */
  readonly perfProfile?: ObservatoryOptions["perfProfile"];
  /** A replica at its devices' physical limit (its rate card's `roofline`), for its efficiency; replicas without one have none. */
  readonly rooflineProfile?: ObservatoryOptions["rooflineProfile"];
  /** The Batch API's batches, newest first (recentBatches over the gateway's store): the dashboard's Batches panel. */
  readonly batches?: BatchSource;
}

/**
 * Adds /metrics, /ui and its API to `app`, starts the sampler, and returns
 * the observer the gateway tells about each request.
 */
export function registerObservability(app: FastifyInstance, fleet: Fleet, opts: ObservabilityOptions & { readonly clock: Clock }): Observatory {
  const obs = new Observatory(fleet, {
    clock: opts.clock,
    ...(opts.tickMs === undefined ? {} : { tickMs: opts.tickMs }),
    ...(opts.hardware === undefined ? {} : { hardware: opts.hardware }),
    ...(opts.perfProfile === undefined ? {} : { perfProfile: opts.perfProfile }),
    ...(opts.rooflineProfile === undefined ? {} : { rooflineProfile: opts.rooflineProfile }),
    logRequests: levelEnabled(app.log.level, "info"),
    logPrompts: opts.logPrompts === true,
  });
  const registry = createMetrics(obs);
  registerObsRoutes(app, obs, registry, new SimReports(opts.simReports ?? []), opts.batches);

  // Counted when the last byte is handed to the socket: streamed (hijacked) replies included.
  app.addHook("onRequest", (request, reply, done) => {
    reply.raw.once("finish", () => obs.countHttp(request.method, request.routeOptions.url ?? "unmatched", reply.raw.statusCode));
    done();
  });
  app.addHook("onReady", (done) => {
    obs.startSampling();
    done();
  });
  app.addHook("onClose", (_app, done) => {
    obs.close();
    done();
  });
  return obs;
}
