import { randomUUID } from "node:crypto";
import { AjvCompiler } from "@fastify/ajv-compiler";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { NO_LONGER_NEEDED } from "../core/abort.js";
import type { Clock } from "../core/clock.js";
import { wallClock } from "../core/clock.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import type { Policy } from "../scheduler/pipeline.js";
import { leastLoaded } from "../scheduler/policies.js";
import { FlotillaError } from "../core/errors.js";
import type { RouteHints } from "../metering/pricing.js";
import { openTenancy, type Tenancy } from "../metering/tenancy.js";
import { loggerOptions, recentBatches, registerObservability, type ObservabilityOptions, type Observatory } from "../obs/index.js";
import { levelEnabled } from "../obs/logging.js";
import { explainDecision, type DecisionListener } from "../scheduler/decision.js";
import type { Cascade } from "../scheduler/cascade.js";
import { checkAdmin, enforceAccess, type RoutePolicy } from "./access.js";
import { registerAdminRoutes } from "./admin.js";
import { Membership, type MembershipOptions } from "./membership.js";
import type { FleetConfig } from "../fleet/config.js";
import { drainBody, guardExpectContinue, receivingOptions } from "./http-limits.js";
import { AdmissionGate } from "./admission-gate.js";
import { Autoscaling } from "./autoscaling.js";
import { registerTenancyRoutes } from "./tenancy-routes.js";
import { Dispatcher } from "./dispatcher.js";
import { logFailure, toHttpError, type HttpError } from "./errors.js";
import { completionHandler, type CompletionServices } from "./completions.js";
import { messagesErrorHandler, messagesHandler } from "./anthropic-messages.js";
import { responsesHandler, responsesSchema } from "./openai-responses-request.js";
import { embeddingsHandler, embeddingsSchema } from "./embeddings.js";
import { chatCompletionSchema, completionSchema } from "./schemas.js";
import { chatRequest, completionRequest } from "./translate.js";
import { BatchRunner } from "./batches/runner.js";
import { registerBatchRoutes } from "./batches/routes.js";
import { MAX_FILE_BYTES } from "./batches/input-file.js";
import type { PeerSync } from "./peer-sync.js";
import type { Store } from "../store/index.js";

export interface GatewayOptions {
  readonly fleet: Fleet;
  readonly policy?: Policy;
  readonly clock?: Clock;
  /** Largest request body accepted, in bytes. */
  readonly bodyLimit?: number;
  /** Longest a client may take to send a request's headers and body before 408 (default 30 s). */
  readonly bodyTimeoutMs?: number;
  readonly logLevel?: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Longest a request may run; a client may ask for less with x-flotilla-timeout-ms. */
  readonly requestTimeoutMs?: number;
  /** Bearer token for /admin routes, /metrics and /ui; without one, only direct loopback clients may use them. */
  readonly adminToken?: string;
  /** /metrics, /ui and its data routes answer anyone, admin token or not. */
  readonly metricsPublic?: boolean;
  /** How long a request waits for a replica to become ready before 503. */
  readonly readyWaitMs?: number;
  /** A first token slower than this counts against the replica's circuit breaker. */
  readonly slowFirstTokenMs?: number;
  /** Hedge an attempt that is slow to its first token on a replica with a free slot (default true). */
  readonly hedge?: boolean;
  /** Keys, limits and the usage ledger; without one every caller is anonymous and unmetered. */
  readonly tenancy?: Tenancy;
  /** Requests that wait for capacity, per model, before 429 (default: the sum of its replicas' max_queue); and per tenant (default: no own limit). */
  readonly maxQueued?: number;
  readonly maxQueuedPerTenant?: number;
  /** Model aliases served by a light model first and a heavy one for hard requests (buildCascades). */
  readonly cascades?: ReadonlyMap<string, Cascade>;
  /** Per replica id, its speed, price and energy for the router's TTFT, cost and energy scorers (from the fleet file's hardware). */
  readonly routeHints?: (replicaId: string) => RouteHints | undefined;
  /** The TTFT objective cost-aware routing holds replicas to, ms. */
  readonly ttftSloMs?: number;
  /** Metrics, logs and the /ui dashboard: prompt logging, sim reports to open, log destination. */
  readonly observability?: ObservabilityOptions;
  /**
   * How replicas added while serving are built and priced (gateway/membership.ts); the fleet file as
   * started, and how to read it again (POST /admin/reload, SIGHUP).
   */
  readonly membership?: Omit<MembershipOptions, "fleet" | "dispatcher" | "clock" | "cascades"> & { readonly config?: FleetConfig; readonly load?: () => Promise<FleetConfig> };
  /** The Batch API's store, and this process's instance id (who holds the batch runner's lease); without it the Files and Batches routes say they need a store. */
  readonly batches?: { readonly store: Store; readonly holder: string; readonly headroomSlots?: number; readonly pollMs?: number; readonly leaseMs?: number };
  /** Other gateways on the same store, told what this one routes and telling it theirs (gateway/peer-sync.ts); the caller closes it after shutdown. */
  readonly peers?: PeerSync;
}

/** A running gateway, plus the graceful way to stop it. */
export interface Gateway {
  readonly app: FastifyInstance;
  /** Stops new work, lets in-flight requests finish (up to `graceMs`), then closes. */
  shutdown(graceMs: number): Promise<void>;
  /** Every route with who may call it. */
  routes(): readonly RoutePolicy[];
  /** Replicas added, changed and removed while serving; reloads of the fleet file. */
  readonly membership: Membership;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;
const DEFAULT_BODY_LIMIT = 4 * 1024 * 1024;

/**
 * The OpenAI-compatible HTTP front door. It validates, hands the request to
 * the dispatcher, and streams text back as it arrives; it knows nothing of
 * how engines work.
 */
export function createGateway(opts: GatewayOptions): FastifyInstance {
  return createGatewayWithShutdown(opts).app;
}

export function createGatewayWithShutdown(opts: GatewayOptions): Gateway {
  const clock = opts.clock ?? wallClock;
  const tenancy = opts.tenancy ?? openTenancy;
  const work = new Work(clock);
  const app = fastifyFor(opts);
  const autoscaling = new Autoscaling(opts.membership?.config, {
    fleet: opts.fleet,
    clock,
    waiting: () => gate.depths(),
    warn: (m) => app.log.warn(m),
    ...(opts.membership?.build === undefined ? {} : { build: opts.membership.build }),
  });
  const gate = new AdmissionGate({
    clock,
    latest: (name) => opts.fleet.model(name),
    arrived: (model) => autoscaling.arrived(model),
    ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }),
    ...(opts.maxQueuedPerTenant === undefined ? {} : { maxQueuedPerTenant: opts.maxQueuedPerTenant }),
  });
  app.addHook("onRequest", (request, reply, done) => {
    void reply.header("x-request-id", request.id);
    // New work is refused while draining; what was admitted finishes.
    if (work.closing && request.routeOptions.config.access === "tenant" && request.method === "POST") {
      done(new FlotillaError("shutting_down", "this server is shutting down; retry on another instance", { retryAfterS: 5 }));
      return;
    }
    done();
  });
  // Before any route: every route registered from here on must declare who may call it.
  const access = enforceAccess(app, { tenancy, adminToken: opts.adminToken, metricsPublic: opts.metricsPublic });
  registerTenancyRoutes(app, tenancy, access.principalOf, clock);
  const observer = registerObservability(app, opts.fleet, { clock, ...(opts.batches === undefined ? {} : { batches: recentBatches(opts.batches.store) }), ...opts.observability });
  observer.admissionQueue = () => gate.depths();
  observer.autoscaling = () => autoscaling.rows();
  if (opts.peers !== undefined) observer.peers = () => opts.peers!.stats();
  app.addHook("onReady", async () => autoscaling.start());
  const dispatcher = dispatcherFor(opts, clock, decisionListener(app, observer, opts.policy ?? leastLoaded), levelEnabled(app.log.level, "debug"));
  registerErrorHandlers(app);

  const cascades = opts.cascades ?? new Map<string, Cascade>();
  const { config: fleetFile, load, ...building } = opts.membership ?? { build: { baseDir: process.cwd(), env: process.env } };
  const membership = new Membership({ ...building, fleet: opts.fleet, dispatcher, clock, cascades, log: (m) => app.log.info(m) }, fleetFile);
  registerAdminRoutes(app, opts.fleet, membership, clock, load === undefined ? undefined : async () => membership.reload(await load()));
  registerModelRoutes(app, { fleet: opts.fleet, cascades, dispatcher, clock, ready: () => !work.closing && opts.fleet.anyReady() });
  const services: CompletionServices = {
    clock,
    dispatcher,
    gate,
    tenancy,
    observer,
    cascades,
    principalOf: access.principalOf,
    maxTimeoutMs: opts.requestTimeoutMs ?? 600_000,
    explainAllowed: (raw) => checkAdmin(raw, raw.socket.remoteAddress, opts.adminToken) === undefined,
  };
  app.post("/v1/chat/completions", { ...TENANT, schema: { body: chatCompletionSchema } }, work.track(completionHandler(services, "chat", chatRequest)));
  app.post("/v1/completions", { ...TENANT, schema: { body: completionSchema } }, work.track(completionHandler(services, "completion", completionRequest)));
  app.post("/v1/messages", { ...TENANT, errorHandler: messagesErrorHandler }, work.track(messagesHandler(services)));
  app.post("/v1/responses", { ...TENANT, schema: { body: responsesSchema } }, work.track(responsesHandler(services)));
  app.post("/v1/embeddings", { ...TENANT, schema: { body: embeddingsSchema } }, work.track(embeddingsHandler(services)));
  const batches = opts.batches;
  const runner = batches === undefined ? undefined : new BatchRunner({ ...batches, services, fleet: opts.fleet, gate, clock, log: app.log.child({ component: "batches" }) });
  registerBatchRoutes(app, { store: batches?.store, clock, principalOf: access.principalOf, bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT, changed: () => runner?.wake() });
  if (runner !== undefined) app.addHook("onReady", async () => runner.start());

  app.addHook("onClose", async () => {
    autoscaling.stop();
    await runner?.stop(0);
    gate.close();
    await opts.fleet.close();
  });

  /**
   * New requests are refused (503 shutting_down, and /readyz says so), while
   * everything already admitted, running or queued for a slot, is served as
   * usual, on any replica, resumes included. Past the grace period, closing
   * the fleet cancels what still runs: streams end with an error event, the
   * rest get 503, and each is settled by the billing rule.
   */
  const shutdown = async (graceMs: number): Promise<void> => {
    await Promise.all([work.close(graceMs), runner?.stop(graceMs)]);
    await app.close();
  };

  return { app, shutdown, routes: access.routes, membership };
}

const PUBLIC = { config: { access: "public" } } as const;
const TENANT = { config: { access: "tenant" } } as const;

/** The requests admitted and not yet finished (running, or queued for a slot): what shutdown waits for. */
class Work {
  closing = false;
  #working = 0;
  #allDone: (() => void) | undefined;

  constructor(readonly clock: Clock) {}

  track<R, P>(handler: (request: R, reply: P) => Promise<void>): (request: R, reply: P) => Promise<void> {
    return async (request, reply) => {
      this.#working++;
      try {
        await handler(request, reply);
      } finally {
        if (--this.#working === 0) this.#allDone?.();
      }
    };
  }

  /** Refuses new work from now on, and waits for what is admitted, or for `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    if (this.#working === 0) return;
    const done = new AbortController();
    await Promise.race([new Promise<void>((resolve) => (this.#allDone = resolve)), this.clock.sleep(graceMs, done.signal)]);
    done.abort(NO_LONGER_NEEDED);
  }
}

/** Every routing decision: its plugins' times into /metrics, and the decision itself as a debug log line. */
function decisionListener(app: FastifyInstance, observer: Observatory, policy: Policy): DecisionListener {
  const debug = levelEnabled(app.log.level, "debug");
  return (decision) => {
    observer.routed(policy.name, decision);
    if (debug) app.log.debug({ decision: explainDecision(decision) }, "routed");
  };
}

function dispatcherFor(opts: GatewayOptions, clock: Clock, onDecision: DecisionListener, scoreEveryDecision: boolean): Dispatcher {
  return new Dispatcher(opts.fleet, opts.policy ?? leastLoaded, {
    clock,
    onDecision,
    scoreEveryDecision,
    // Timing every plugin of every decision, and observing a histogram per plugin, showed in the request
    // path's profile; one decision in 16 gives the same distribution. Debug logging hears every one.
    decisionSample: 16,
    ...(opts.readyWaitMs === undefined ? {} : { retry: { readyWaitMs: opts.readyWaitMs } }),
    ...(opts.slowFirstTokenMs === undefined ? {} : { slowFirstTokenMs: opts.slowFirstTokenMs }),
    ...(opts.hedge === undefined ? {} : { hedge: { enabled: opts.hedge } }),
    ...(opts.routeHints === undefined ? {} : { routeHints: (r: Replica) => opts.routeHints!(r.id) }),
    ...(opts.ttftSloMs === undefined ? {} : { ttftSloMs: opts.ttftSloMs }),
    ...(opts.peers === undefined ? {} : { peers: opts.peers }),
  });
}

/**
 * One ajv pool for every gateway in the process. Fastify otherwise makes a
 * new one per instance and compiles every route's schema again (~60 ms a
 * gateway); with the schemas being module constants, ajv's own cache, keyed
 * by the schema object, makes each later gateway's compile a lookup. Tests,
 * benches and library callers that build several gateways pay it once.
 */
const validators = AjvCompiler();

function fastifyFor(opts: GatewayOptions): FastifyInstance {
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    bodyLimit,
    ...receivingOptions(opts.bodyTimeoutMs ?? 30_000),
    logger: loggerOptions(opts.logLevel ?? "warn", opts.observability?.logDestination),
    // A client-supplied id is kept (and echoed) so logs join up across hops.
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    return503OnClosing: true,
    schemaController: { compilersFactory: { buildValidator: validators } },
  });
  guardExpectContinue(app, bodyLimit, MAX_FILE_BYTES + 1024 * 1024);
  // Every body is JSON: a text/plain one is the 415 the API documents, not a string that fails the schema.
  app.removeContentTypeParser("text/plain");
  return app;
}

function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler(async (err, request, reply) => {
    const http = toHttpError(err);
    logFailure(request.log, err, http);
    // The sender of an oversized body is still writing it: let it finish, or it never reads the 413.
    if (http.status === 413) void reply.header("connection", (await drainBody(request.raw)) ? "keep-alive" : "close");
    return sendError(reply, http);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, {
      status: 404,
      retryAfterS: undefined,
      body: { error: { message: `no route ${request.method} ${request.url.split("?")[0]}; see GET /v1/models, POST /v1/chat/completions, POST /v1/completions`, type: "invalid_request_error", param: null, code: "unknown_route" } },
    }),
  );
}

/** Liveness, readiness (a draining gateway tells its load balancer to send nothing more) and the model list. */
function registerModelRoutes(
  app: FastifyInstance,
  s: { fleet: Fleet; cascades: ReadonlyMap<string, Cascade>; dispatcher: Dispatcher; clock: Clock; ready: () => boolean },
): void {
  app.get("/healthz", PUBLIC, () => ({ status: "ok" }));
  const readiness = (_request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const ready = s.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "no replica ready" });
  };
  app.get("/readyz", PUBLIC, readiness);
  // Where llama-server, vLLM and SGLang answer, so a Flotilla can itself be an upstream engine.
  app.get("/health", PUBLIC, readiness);
  /** One model as OpenAI lists it, with vLLM's max_model_len where every replica knows its context window (the smallest: an answer resumed anywhere fits). */
  const modelJson = (id: string): Record<string, unknown> => {
    const windows = s.cascades.has(id) ? [] : s.dispatcher.model(id).replicas.map((r) => r.engine.contextSize);
    const known = windows.length > 0 && windows.every((w) => w !== undefined);
    return { id, object: "model", created: Math.floor(s.clock.epochMs() / 1000), owned_by: "flotilla", ...(known ? { max_model_len: Math.min(...(windows as number[])) } : {}) };
  };
  app.get("/v1/models", TENANT, () => {
    const names = [...[...s.fleet.models()].map((m) => m.name), ...s.cascades.keys()];
    return { object: "list", data: names.map(modelJson) };
  });
  app.get<{ Params: { id: string } }>("/v1/models/*", TENANT, (request, reply) => {
    const id = (request.params as Record<string, string>)["*"] ?? "";
    return reply.send(modelJson(s.cascades.has(id) ? id : s.dispatcher.model(id).name));
  });
}

function sendError(reply: FastifyReply, http: HttpError): FastifyReply {
  if (http.retryAfterS !== undefined) void reply.header("retry-after", String(http.retryAfterS));
  return reply.code(http.status).send(http.body);
}
