/**
 * The seam between the gateway and observation: the gateway calls these at
 * fixed points of every /v1 request, and the observer turns them into
 * metrics, logs and the dashboard's numbers. It never changes what the
 * request does.
 */
import type { ApiEndpoint, GenerationRequest } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import type { Replica } from "../fleet/fleet.js";
import type { Settlement, Ticket } from "../metering/tenancy.js";

/** Where a logger writes: pino's destination. */
export interface LogDestination {
  write(line: string): void;
}

/** The small part of a (pino) logger a watch uses. */
export interface RequestLog {
  info(obj: object, msg: string): void;
}

export interface RequestStart {
  /** The model as served (a name in the fleet file, so a bounded label). */
  readonly model: string;
  readonly endpoint: ApiEndpoint;
  readonly stream: boolean;
  readonly generation: GenerationRequest;
  /** The caller's tenant, when the tenancy knows one. */
  readonly tenant: string | undefined;
  /** Prices the finished generation (energy, cost) for the per-tenant counters. */
  readonly ticket: Ticket;
  /** The request's logger: every line carries its request id. */
  readonly log: RequestLog;
}

/** One request under observation, from admission to settlement. */
export interface RequestWatch {
  /** The dispatcher chose `replica`; a second call means the previous attempt failed (failover, or continuation once text was sent). */
  attempt(replica: Replica): void;
  /** A new generation of the same request begins (a cascade's heavy leg): the next attempt is no failover. */
  nextLeg(): void;
  /** Wraps the sink text goes to, counting tokens as they pass (no allocation per token). */
  sink(onText: TextSink): TextSink;
  /** The request failed with `err` (its FailureCode becomes the status label). */
  failed(err: unknown): void;
  /**
   * The request ended; called exactly once, with what the ledger is told.
   * Returns it with the answering generation's timing added where one was
   * measured (Settlement.timing), which is what the ledger should record.
   */
  finish(settlement: Settlement): Settlement;
}

export interface RequestObserver {
  start(request: RequestStart): RequestWatch;
  /** A cascade sent a request from its light model to its heavy one. */
  cascadeEscalated(model: string, reason: string): void;
}
