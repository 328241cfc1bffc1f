import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Clock } from "../core/clock.js";
import { wallClock } from "../core/clock.js";
import { estimateTokens, type GenerationRequest } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import type { Fleet, Replica, ServedModel } from "../fleet/fleet.js";
import type { Policy } from "../scheduler/pipeline.js";
import { leastLoaded } from "../scheduler/policies.js";
import { FlotillaError } from "../core/errors.js";
import type { RouteHints } from "../metering/pricing.js";
import { openTenancy, type EarlierLeg, type Principal, type Settlement, type Tenancy } from "../metering/tenancy.js";
import { loggerOptions, registerObservability, type ObservabilityOptions } from "../obs/index.js";
import type { PriorityClass } from "../scheduler/admission.js";
import type { Cascade } from "../scheduler/cascade.js";
import { enforceAccess, type RoutePolicy } from "./access.js";
import { registerAdminRoutes } from "./admin.js";
import { drainBody, guardExpectContinue, receivingOptions } from "./http-limits.js";
import { AdmissionGate } from "./admission-gate.js";
import { judgeLightLeg, replay, target, type Verdict } from "./cascades.js";
import { registerTenancyRoutes } from "./tenancy-routes.js";
import { Dispatcher, type Dispatched } from "./dispatcher.js";
import { toHttpError, type HttpError } from "./errors.js";
import { ChunkEncoder, TokenIdsOut, completeResponse, type Endpoint, type ResponseMeta, type ServedBy } from "./responses.js";
import { chatCompletionSchema, completionSchema, type ChatCompletionBody, type CompletionBody } from "./schemas.js";
import { chatRequest, completionRequest } from "./translate.js";

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
}

/** A running gateway, plus the graceful way to stop it. */
export interface Gateway {
  readonly app: FastifyInstance;
  /** Stops new work, lets in-flight requests finish (up to `graceMs`), then closes. */
  shutdown(graceMs: number): Promise<void>;
  /** Every route with who may call it. */
  routes(): readonly RoutePolicy[];
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

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
  const maxTimeoutMs = opts.requestTimeoutMs ?? 600_000;
  const tenancy = opts.tenancy ?? openTenancy;
  let shuttingDown = false;
  // Requests admitted and not yet finished (running, or queued for a slot); shutdown waits for them.
  let working = 0;
  let allDone: (() => void) | undefined;
  const dispatcher = new Dispatcher(opts.fleet, opts.policy ?? leastLoaded, {
    clock,
    ...(opts.readyWaitMs === undefined ? {} : { readyWaitMs: opts.readyWaitMs }),
    ...(opts.slowFirstTokenMs === undefined ? {} : { slowFirstTokenMs: opts.slowFirstTokenMs }),
    ...(opts.hedge === undefined ? {} : { hedge: { enabled: opts.hedge } }),
    ...(opts.routeHints === undefined ? {} : { routeHints: (r: Replica) => opts.routeHints!(r.id) }),
    ...(opts.ttftSloMs === undefined ? {} : { ttftSloMs: opts.ttftSloMs }),
  });
  const gate = new AdmissionGate({
    clock,
    ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }),
    ...(opts.maxQueuedPerTenant === undefined ? {} : { maxQueuedPerTenant: opts.maxQueuedPerTenant }),
  });
  const bodyLimit = opts.bodyLimit ?? 4 * 1024 * 1024;
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
  });
  guardExpectContinue(app, bodyLimit);

  app.addHook("onRequest", (request, reply, done) => {
    void reply.header("x-request-id", request.id);
    // New work is refused while draining; what was admitted finishes.
    if (shuttingDown && request.routeOptions.config.access === "tenant" && request.method === "POST") {
      done(new FlotillaError("shutting_down", "this server is shutting down; retry on another instance", { retryAfterS: 5 }));
      return;
    }
    done();
  });
  // Before any route: every route registered from here on must declare who may call it.
  const access = enforceAccess(app, { tenancy, adminToken: opts.adminToken, metricsPublic: opts.metricsPublic });

  registerAdminRoutes(app, opts.fleet);
  registerTenancyRoutes(app, tenancy, access.principalOf);
  const observer = registerObservability(app, opts.fleet, { clock, ...opts.observability });
  observer.admissionQueue = () => gate.depths();

  app.setErrorHandler(async (err, request, reply) => {
    const http = toHttpError(err);
    if (http.status >= 500) request.log.error({ err }, "request failed");
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

  const PUBLIC = { config: { access: "public" } } as const;
  const TENANT = { config: { access: "tenant" } } as const;
  app.get("/healthz", PUBLIC, () => ({ status: "ok" }));
  const readiness = (_request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    // A draining gateway tells its load balancer to send nothing more.
    const ready = !shuttingDown && opts.fleet.anyReady();
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "no replica ready" });
  };
  app.get("/readyz", PUBLIC, readiness);
  // Where llama-server, vLLM and SGLang answer, so a Flotilla can itself be an upstream engine.
  app.get("/health", PUBLIC, readiness);

  const cascades = opts.cascades ?? new Map<string, Cascade>();
  /** One model as OpenAI lists it, with vLLM's max_model_len where every replica knows its context window (the smallest: an answer resumed anywhere fits). */
  const modelJson = (id: string): Record<string, unknown> => {
    const windows = cascades.has(id) ? [] : dispatcher.model(id).replicas.map((r) => r.engine.contextSize);
    const known = windows.length > 0 && windows.every((w) => w !== undefined);
    return { id, object: "model", created: Math.floor(clock.epochMs() / 1000), owned_by: "flotilla", ...(known ? { max_model_len: Math.min(...(windows as number[])) } : {}) };
  };

  app.get("/v1/models", TENANT, () => {
    const names = [...[...opts.fleet.models()].map((m) => m.name), ...cascades.keys()];
    return { object: "list", data: names.map(modelJson) };
  });

  app.get<{ Params: { id: string } }>("/v1/models/*", TENANT, (request, reply) => {
    const id = (request.params as Record<string, string>)["*"] ?? "";
    return reply.send(modelJson(cascades.has(id) ? id : dispatcher.model(id).name));
  });

  const serve = (endpoint: Endpoint, toRequest: (id: string, body: never) => GenerationRequest) =>
    async (request: FastifyRequest<{ Body: ChatCompletionBody | CompletionBody }>, reply: FastifyReply): Promise<void> => {
      working++;
      try {
        await handle(endpoint, toRequest, request, reply);
      } finally {
        if (--working === 0) allDone?.();
      }
    };

  const handle = async (
    endpoint: Endpoint,
    toRequest: (id: string, body: never) => GenerationRequest,
    request: FastifyRequest<{ Body: ChatCompletionBody | CompletionBody }>,
    reply: FastifyReply,
  ): Promise<void> => {
    const body = request.body;
    const id = `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${request.id}`;
    const generation = toRequest(request.id, body as never);
    const { model, leg, probe } = target(cascades, dispatcher, body.model, request.headers["x-flotilla-cascade"], "reasoning_effort" in body ? body.reasoning_effort : undefined, generation);
    if (leg?.leg === "heavy") observer.cascadeEscalated(body.model, leg.reason);
    let cascadeInfo: Record<string, string | number> = leg === undefined ? {} : { cascade: body.model, cascade_leg: leg.leg, cascade_reason: leg.reason };
    const timeoutMs = requestTimeout(request.headers["x-flotilla-timeout-ms"], maxTimeoutMs);
    const principal = access.principalOf(request);
    const priority = priorityOf(principal, body.service_tier, request.headers["x-flotilla-priority"]);
    const ticket = await tenancy.admit({
      requestId: request.id,
      principal,
      // A probing cascade may run both legs: it reserves for two at the dearer rates.
      model: probe === undefined ? model.name : body.model,
      ...(probe === undefined ? {} : { legs: 2 }),
      endpoint,
      stream: body.stream === true,
      maxTokens: generation.sampling.maxTokens,
      prompt: generation.prompt,
      continuation: generation.continuation,
    });
    const watch = observer.start({ model: model.name, endpoint, stream: body.stream === true, generation, tenant: principal?.tenantId, ticket, log: request.log });
    const started = clock.now();
    const cancel = new AbortController();
    // 'close' on the response fires when the client goes away, or after we end it.
    reply.raw.once("close", () => {
      if (!reply.raw.writableFinished) cancel.abort();
    });
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      cancel.abort();
    }, timeoutMs);
    let lastReplica: string | undefined;
    // What reached the client, so a request cut short mid-stream is metered for it.
    // Only a stream delivers before it ends: a non-streaming answer that fails delivered nothing.
    let streamedTokens = 0;
    let streamedEstimated = false;
    const counted = (onText: TextSink): TextSink => (text, tokens, estimated, ids) => {
      streamedTokens += tokens;
      if (estimated === true) streamedEstimated = true;
      onText(text, tokens, estimated, ids);
    };
    const onAttempt = (replica: Replica): void => {
      lastReplica = replica.id;
      watch.attempt(replica);
    };
    let release: (() => void) | undefined;
    /** Past every replica's slots, requests wait their fair turn here; one turn per leg. */
    const admitTo = async (m: ServedModel): Promise<void> => {
      release?.();
      release = undefined;
      release = await gate.enter(
        m,
        {
          tenant: principal?.tenantId ?? "",
          priority,
          ...(principal?.weight === undefined ? {} : { weight: principal.weight }),
          cost: () => (dispatcher.promptTokens(m, generation) ?? estimateTokens(generation)) + (generation.sampling.maxTokens ?? DEFAULT_OUTPUT_ESTIMATE),
          deadlineMs: started + timeoutMs,
        },
        cancel.signal,
      );
    };
    let earlier: EarlierLeg[] | undefined;
    const extension = (d: Dispatched): ServedBy => ({ ...ticket.price(d.usage, d.replica.id, clock.now() - started, earlier), ...servedBy(d), ...cascadeInfo });
    let result: Dispatched | undefined;
    let failure: unknown;
    try {
      // Session affinity: the OpenAI `user` field, or a header for clients that cannot set it.
      const session = request.headers["x-flotilla-session"];
      const affinityKey = typeof session === "string" && session.length > 0 ? session : body.user;
      const routing = affinityKey === undefined ? {} : { affinityKey };
      let answerModel = model;
      let kept: (Verdict & { escalate: false }) | undefined;
      if (probe !== undefined) {
        // A light answer the cascade redoes on the heavy model unless it is confident enough.
        await admitTo(model);
        const verdict = await judgeLightLeg(probe, (g, onText) => dispatcher.run(model, g, onText, cancel.signal, onAttempt, routing), generation);
        if (!Number.isNaN(verdict.meanLogprob)) cascadeInfo.light_mean_logprob = Number(verdict.meanLogprob.toFixed(4));
        if (verdict.escalate) {
          earlier = [{ usage: verdict.light.usage, replica: verdict.light.replica.id, durationMs: clock.now() - started }];
          answerModel = dispatcher.model(probe.config.heavy);
          cascadeInfo = { ...cascadeInfo, cascade_leg: "heavy", cascade_reason: "low_confidence" };
          // An escalation is no failure: the heavy leg's first attempt is not a failover of the light one.
          watch.nextLeg();
          observer.cascadeEscalated(body.model, "low_confidence");
        } else {
          kept = verdict;
        }
      }
      if (kept === undefined) await admitTo(answerModel);
      const meta: ResponseMeta = { endpoint, id, created: Math.floor(clock.epochMs() / 1000), model: answerModel.name, tokenIds: body.return_token_ids === true };
      const run = async (onText: TextSink, attempt: (r: Replica) => void): Promise<Dispatched> =>
        kept === undefined ? dispatcher.run(answerModel, generation, onText, cancel.signal, attempt, routing) : replay(kept, onText, attempt);
      if (body.stream === true) {
        result = await stream(reply, meta, body.stream_options?.include_usage === true, extension, (err) => (failure = err), (onText, attempt) =>
          run(watch.sink(counted(onText)), (r) => {
            onAttempt(r);
            attempt(r);
          }),
        );
        return;
      }
      const parts: string[] = [];
      const ids = new TokenIdsOut();
      result = await run(
        watch.sink((t, _n, _e, chunkIds) => {
          parts.push(t);
          ids.piece(chunkIds);
        }),
        onAttempt,
      );
      void reply.header("x-flotilla-replica", result.replica.id);
      await reply.send(completeResponse(meta, parts.join(""), result.finishReason, result.usage, extension(result), result.logprobs, meta.tokenIds === true ? ids.whole() : undefined));
    } catch (err) {
      failure = err;
      watch.failed(err);
      if (!timedOut) throw err;
      throw new FlotillaError("deadline_exceeded", `the request ran past its ${timeoutMs} ms deadline and was cancelled`, { cause: err });
    } finally {
      release?.();
      clearTimeout(deadline);
      const ended = settlement(result, lastReplica, clock.now() - started, cancel.signal.aborted, timedOut, failure);
      const settled: Settlement = { ...ended, streamedTokens, streamedEstimated, ...(earlier === undefined ? {} : { earlier }) };
      watch.finish(settled);
      await ticket.settle(settled);
    }
  };

  app.post("/v1/chat/completions", { ...TENANT, schema: { body: chatCompletionSchema } }, serve("chat", chatRequest));
  app.post("/v1/completions", { ...TENANT, schema: { body: completionSchema } }, serve("completion", completionRequest));

  app.addHook("onClose", async () => {
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
    shuttingDown = true;
    if (working > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (allDone = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    await app.close();
  };

  return { app, shutdown, routes: access.routes };
}

/** Fair-share cost of a request that set no max_tokens: a typical answer's length. */
const DEFAULT_OUTPUT_ESTIMATE = 256;

/**
 * A tenant's class is its ceiling: a request may lower itself to batch
 * (OpenAI's service_tier "flex", or x-flotilla-priority: batch), never rise
 * above its tenant's class.
 */
function priorityOf(principal: Principal | undefined, serviceTier: string | null | undefined, header: string | string[] | undefined): PriorityClass {
  if (principal?.priority === "batch") return "batch";
  if (serviceTier === "flex") return "batch";
  if (header === undefined) return "interactive";
  if (header === "batch" || header === "interactive") return header;
  throw new FlotillaError("invalid_request", `x-flotilla-priority must be "interactive" or "batch", got ${JSON.stringify(header)}`, { param: "x-flotilla-priority" });
}

function requestTimeout(header: string | string[] | undefined, maxMs: number): number {
  if (typeof header !== "string") return maxMs;
  const asked = Number(header);
  if (!Number.isInteger(asked) || asked < 1) {
    throw new FlotillaError("invalid_request", "x-flotilla-timeout-ms must be a positive integer number of milliseconds", { param: "x-flotilla-timeout-ms" });
  }
  return Math.min(asked, maxMs);
}

/**
 * Streams over SSE. Headers go out only once the first text (or the end)
 * arrives, so a request that fails before any token still gets a proper HTTP
 * error status rather than a 200 stream holding an error event.
 */
async function stream(
  reply: FastifyReply,
  meta: ResponseMeta,
  includeUsage: boolean,
  extension: (d: Dispatched) => ServedBy,
  broke: (err: unknown) => void,
  run: (onText: TextSink, onAttempt: (replica: Replica) => void) => ReturnType<Dispatcher["run"]>,
): Promise<Dispatched | undefined> {
  const encoder = new ChunkEncoder(meta);
  const ids = meta.tokenIds === true ? new TokenIdsOut() : undefined;
  const raw = reply.raw;
  let open = false;
  let replicaId = "";
  const openStream = (): void => {
    open = true;
    reply.hijack();
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-request-id": String(reply.request.id),
      "x-flotilla-replica": replicaId,
    });
    const start = encoder.start();
    if (start !== undefined) raw.write(start);
  };
  // Text that arrives within one tick leaves in one write: an engine that
  // yields several pieces at once costs one syscall, not one per piece, and
  // no piece waits longer than the current tick.
  let corked = false;
  const uncork = (): void => {
    corked = false;
    raw.uncork();
  };
  try {
    const result = await run(
      (text, _tokens, _estimated, chunkIds) => {
        if (!open) openStream();
        if (!corked) {
          corked = true;
          raw.cork();
          process.nextTick(uncork);
        }
        raw.write(encoder.text(text, ids?.piece(chunkIds)));
      },
      (replica) => {
        replicaId = replica.id;
      },
    );
    if (!open) openStream();
    raw.write(encoder.finish(result.finishReason, result.logprobs));
    if (includeUsage) raw.write(encoder.usage(result.usage, extension(result)));
    raw.end(ChunkEncoder.done);
    return result;
  } catch (err) {
    if (!open) throw err; // the error handler answers with a status
    broke(err);
    endWithError(raw, toHttpError(err));
    return undefined;
  }
}

/** What the ledger is told: every request ends in exactly one of these. */
function settlement(result: Dispatched | undefined, lastReplica: string | undefined, durationMs: number, aborted: boolean, timedOut: boolean, failure: unknown): Settlement {
  if (result !== undefined) {
    const estimated = result.usageEstimated === true ? { usageEstimated: true } : {};
    return { status: "ok", usage: result.usage, replica: result.replica.id, attempts: result.attempts, continuations: result.continuations, durationMs, ...estimated };
  }
  const status = timedOut ? "deadline_exceeded" : aborted ? "cancelled" : "failed";
  // A stream that broke after its headers ended with an error event, not a throw: the failure is the engine's.
  const errorCode = status === "failed" ? (failure instanceof FlotillaError ? failure.code : failure === undefined ? "engine_error" : "internal_error") : status;
  return { status, usage: undefined, replica: lastReplica, attempts: lastReplica === undefined ? 0 : 1, continuations: 0, durationMs, errorCode };
}

/** Once a stream has begun the status is spent; the error travels as an event, as OpenAI's does. */
function endWithError(raw: ServerResponse, http: HttpError): void {
  if (raw.destroyed || raw.writableEnded) return;
  raw.end(ChunkEncoder.error(http.body) + ChunkEncoder.done);
}

function servedBy(d: Dispatched): ServedBy {
  return { replica: d.replica.id, attempts: d.attempts, continuations: d.continuations };
}

function sendError(reply: FastifyReply, http: HttpError): FastifyReply {
  if (http.retryAfterS !== undefined) void reply.header("retry-after", String(http.retryAfterS));
  return reply.code(http.status).send(http.body);
}
