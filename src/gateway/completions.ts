/**
 * One completion request, from a validated body to a settled ledger row, in
 * four steps: admit (the tenant's limits and the ticket), decide (the
 * cascade's leg, then a fair turn for capacity), respond (streamed or
 * whole), settle (exactly one ledger row, whatever happened). The routing and
 * the engines are the dispatcher's. Every API takes this path: OpenAI's chat
 * and legacy completions, responses and embeddings, Anthropic's messages
 * (anthropic-messages.ts); each reads its own body into an ApiRequest and
 * writes its own answer. A request arrives through an Exchange: an HTTP
 * request and reply, or a Batch API line (batches/line-run.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from "fastify";
import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { callsTools, estimateTokens, type ApiEndpoint, type GenerationRequest } from "../core/request.js";
import type { ChunkIds, TextSink } from "../engines/engine.js";
import type { Replica, ServedModel } from "../fleet/fleet.js";
import type { EarlierLeg, Principal, Settlement, Tenancy, Ticket } from "../metering/tenancy.js";
import type { BatchLineResult } from "../store/types.js";
import type { RequestObserver, RequestWatch } from "../obs/observer.js";
import type { PriorityClass } from "../scheduler/admission.js";
import type { Cascade } from "../scheduler/cascade.js";
import { explainDecision, type Decision } from "../scheduler/decision.js";
import type { AdmissionGate } from "./admission-gate.js";
import { judgeLightLeg, replay, target, type Verdict } from "./cascades.js";
import type { Dispatched, Dispatcher, Routing } from "./dispatcher.js";
import { toHttpError, type HttpError } from "./errors.js";
import { explainAsked } from "./explain.js";
import { formatViolation, toolCallViolation } from "./format-check.js";
import type { AnswerHead, AnswerWriter, StreamWriter } from "./answer-writer.js";
import { openAiWriter, type Endpoint, type ServedBy } from "./responses.js";
import type { ChatCompletionBody, CompletionBody } from "./schemas.js";

/** What a completion request uses of the gateway around it. */
export interface CompletionServices {
  readonly clock: Clock;
  readonly dispatcher: Dispatcher;
  readonly gate: AdmissionGate;
  readonly tenancy: Tenancy;
  readonly observer: RequestObserver;
  readonly cascades: ReadonlyMap<string, Cascade>;
  readonly principalOf: (request: FastifyRequest) => Principal | undefined;
  /** The longest any request may run; a client may ask for less. */
  readonly maxTimeoutMs: number;
  /** Whether a client may see how its request was routed (x-flotilla-explain): the admin rule. */
  readonly explainAllowed: (raw: IncomingMessage) => boolean;
}

/** What one API makes of a request: what the run reads of it, and how the answer is written. */
export interface ApiRequest {
  /** The ledger's and the metrics' name for the API. */
  readonly endpoint: ApiEndpoint;
  readonly generation: GenerationRequest;
  /** The model (or cascade alias) asked for. */
  readonly model: string;
  readonly stream: boolean;
  /** The body's session affinity key (OpenAI's user, Anthropic's metadata.user_id); x-flotilla-session wins over it. */
  readonly sessionKey: string | undefined;
  /** OpenAI's service_tier: "flex" waits behind interactive traffic. */
  readonly serviceTier?: string | null | undefined;
  /** OpenAI's reasoning_effort, read by model cascades. */
  readonly reasoningEffort?: string | null | undefined;
  /** Headers every answer carries, streamed or whole. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly writer: AnswerWriter;
  /** Tokens the engine reads beyond the prompt's text, for admission's reservation (AdmissionRequest.promptMarks). */
  readonly promptMarks?: number;
  /**
   * What runs on the chosen model in place of a generation (embeddings:
   * `generation` then only sizes the request for admission and the fair
   * share). Such a request names a served model, never a cascade.
   */
  readonly execute?: (model: ServedModel, signal: AbortSignal, onAttempt: (replica: Replica) => void, routing: Routing) => Promise<Dispatched>;
}

/** What an API reads of a request: an HTTP request's, or a Batch API line's. */
export interface ApiInput<B = unknown> {
  readonly id: string;
  readonly body: B;
  readonly headers: IncomingHttpHeaders;
}

/** An API's reading of its request into what the run needs; throws to refuse it. */
export type ApiReader<B = never> = (request: ApiInput<B>) => ApiRequest;

/**
 * Where a request comes from and where its answer goes: an HTTP exchange
 * (httpExchange), or a Batch API line (batches/line-run.ts), which is
 * answered whole and whose result commits with its ledger row.
 */
export interface Exchange {
  readonly id: string;
  readonly headers: IncomingHttpHeaders;
  readonly log: FastifyBaseLogger;
  readonly principal: Principal | undefined;
  /** The caller asked to see how its request was routed, and may (x-flotilla-explain). */
  readonly explain: boolean;
  /** A Batch API line: the batch priority class and price. */
  readonly batch?: boolean;
  /** Calls `cancel` once when the caller is gone. */
  onGone(cancel: () => void): void;
  /** The whole answer. */
  send(headers: Readonly<Record<string, string>>, body: unknown): Promise<void>;
  /** The HTTP reply a stream is written to; a batch line never streams. */
  readonly reply?: FastifyReply;
  /** The result to commit with the ledger row: the answer sent, or else the failure (`started`: on a replica); undefined to commit none. */
  result?(answer: unknown, failure: unknown, started: boolean): BatchLineResult | undefined;
}

/** An HTTP request and its reply, as a run sees them. */
export function httpExchange(services: CompletionServices, request: FastifyRequest, reply: FastifyReply): Exchange {
  return {
    id: request.id,
    headers: request.headers,
    log: request.log,
    principal: services.principalOf(request),
    explain: explainAsked(request.raw, services.explainAllowed),
    // 'close' on the response fires when the client goes away, or after we end it.
    onGone: (cancel) => reply.raw.once("close", () => !reply.raw.writableFinished && cancel()),
    send: async (headers, body) => {
      await reply.headers(headers).send(body);
    },
    reply,
  };
}

type Body = ChatCompletionBody | CompletionBody;
type Run = (onText: TextSink, onAttempt: (replica: Replica) => void) => Promise<Dispatched>;
/** Who waits for capacity, in which class, until when. */
type Turn = { readonly principal: Principal | undefined; readonly priority: PriorityClass; readonly deadlineMs: number };

/** The route handler for one OpenAI endpoint. */
export function completionHandler(services: CompletionServices, endpoint: Endpoint, toRequest: (id: string, body: never) => GenerationRequest) {
  return apiHandler(services, completionReader(endpoint, toRequest));
}

/** How an OpenAI chat or legacy completions request is read. */
export function completionReader(endpoint: Endpoint, toRequest: (id: string, body: never) => GenerationRequest): ApiReader<Body> {
  return (request) => {
    const body = request.body;
    return {
      endpoint,
      generation: toRequest(request.id, body as never),
      model: body.model,
      stream: body.stream === true,
      sessionKey: body.prompt_cache_key ?? body.user,
      serviceTier: body.service_tier,
      reasoningEffort: "reasoning_effort" in body ? body.reasoning_effort : undefined,
      writer: openAiWriter(endpoint, { tokenIds: body.return_token_ids === true, includeUsage: body.stream_options?.include_usage === true }),
    };
  };
}

/** The route handler for any API: `read` turns its request into what the run needs (and throws to refuse it). */
export function apiHandler<B>(services: CompletionServices, read: ApiReader<B>) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const api = read(request as ApiInput<B>);
    await runApi(services, httpExchange(services, request, reply), api);
  };
}

/** Runs one request from admission to its settled ledger row; throws what the caller answers with an error. */
export function runApi(services: CompletionServices, exchange: Exchange, api: ApiRequest): Promise<void> {
  return new CompletionRun(services, exchange, api).serve();
}

/** Why a request's work was stopped (the cause its engines' errors carry), made once: see core/abort.ts. */
const CLIENT_GONE: Error = new Error("the client went away");
const DEADLINE_PASSED: Error = new Error("the request's deadline passed");

/** Fair-share cost of a request that set no max_tokens: a typical answer's length. */
const DEFAULT_OUTPUT_ESTIMATE = 256;

class CompletionRun {
  readonly #s: CompletionServices;
  readonly #x: Exchange;
  readonly #api: ApiRequest;
  #generation: GenerationRequest;
  #started = 0;
  readonly #cancel = new AbortController();
  #timedOut = false;
  /** Cancels the deadline: called once the request is settled. */
  #cancelDeadline: () => void = () => undefined;
  #lastReplica: string | undefined;
  /** What reached the client, so a request cut short mid-stream is metered for it; only a stream delivers before it ends. */
  #streamedTokens = 0;
  #streamedEstimated = false;
  #release: (() => void) | undefined;
  #earlier: EarlierLeg[] | undefined;
  #cascadeInfo: Record<string, string | number> = {};
  #result: Dispatched | undefined;
  /** The whole answer sent. */
  #answer: unknown;
  #failure: unknown;
  /** The routing decisions, explained, when the client asked for them (x-flotilla-explain). */
  #explained: Record<string, unknown>[] | undefined;

  constructor(services: CompletionServices, exchange: Exchange, api: ApiRequest) {
    this.#s = services;
    this.#x = exchange;
    this.#api = api;
    this.#generation = api.generation;
  }

  async serve(): Promise<void> {
    const api = this.#api;
    const x = this.#x;
    const { model, leg, probe } = target(this.#s.cascades, this.#s.dispatcher, api.model, x.headers["x-flotilla-cascade"], api.reasoningEffort, this.#generation);
    if (leg !== undefined) {
      if (leg.leg === "heavy") this.#s.observer.cascadeEscalated(api.model, leg.reason);
      this.#cascadeInfo = { cascade: api.model, cascade_leg: leg.leg, cascade_reason: leg.reason };
    }
    const timeoutMs = requestTimeout(x.headers["x-flotilla-timeout-ms"], this.#s.maxTimeoutMs);
    const principal = x.principal;
    // Every bad header is refused before anything is reserved.
    const priority = x.batch === true ? "batch" : priorityOf(principal, api.serviceTier, x.headers["x-flotilla-priority"]);
    if (priority === "batch") this.#generation = { ...this.#generation, background: true };
    if (x.explain) this.#explained = [];
    const ticket = await this.#admit(principal, probe === undefined ? model.name : api.model, probe !== undefined);
    const watch = this.#s.observer.start({ model: model.name, endpoint: api.endpoint, stream: api.stream, generation: this.#generation, tenant: principal?.tenantId, ticket, log: x.log });
    this.#started = this.#s.clock.now();
    this.#watchClient(timeoutMs);
    try {
      const decided = await this.#decide(model, probe, watch, { principal, priority, deadlineMs: this.#started + timeoutMs });
      await this.#respond(decided, watch, ticket);
    } catch (err) {
      this.#failure = err;
      watch.failed(err);
      if (!this.#timedOut) throw err;
      const asked = Number(x.headers["x-flotilla-timeout-ms"]);
      throw new FlotillaError("deadline_exceeded", `the request ran past its ${timeoutMs} ms deadline and was cancelled`, { cause: err, clientCaused: asked <= this.#s.maxTimeoutMs });
    } finally {
      await this.#settle(watch, ticket);
    }
  }

  /** The tenant's limits, reserved against this request's worst case. A probing cascade may run both legs: it reserves for two at the dearer rates. */
  #admit(principal: Principal | undefined, model: string, twoLegs: boolean): Promise<Ticket> {
    const generation = this.#generation;
    return this.#s.tenancy.admit({
      requestId: this.#x.id,
      ...(this.#x.batch === true ? { batch: true } : {}),
      principal,
      model,
      ...(twoLegs ? { legs: 2 } : {}),
      endpoint: this.#api.endpoint,
      stream: this.#api.stream,
      maxTokens: generation.sampling.maxTokens,
      prompt: generation.prompt,
      continuation: generation.continuation,
      ...(this.#api.promptMarks === undefined ? {} : { promptMarks: this.#api.promptMarks }),
    });
  }

  /** A client that goes away, or the deadline, cancels the work. */
  #watchClient(timeoutMs: number): void {
    this.#x.onGone(() => this.#cancel.abort(CLIENT_GONE));
    this.#cancelDeadline = this.#s.clock.after(timeoutMs, () => {
      this.#timedOut = true;
      this.#cancel.abort(DEADLINE_PASSED);
    });
  }

  /**
   * Which model answers and how: a probing cascade first runs its light leg
   * and keeps that answer unless it is unsure; then a fair turn for capacity
   * (one per leg). Returns the model and the run that writes the answer.
   */
  async #decide(
    model: ServedModel,
    probe: Parameters<typeof judgeLightLeg>[0] | undefined,
    watch: RequestWatch,
    turn: Turn,
  ): Promise<{ model: ServedModel; run: Run }> {
    const { dispatcher } = this.#s;
    const onAttempt = (replica: Replica): void => {
      this.#lastReplica = replica.id;
      watch.attempt(replica);
    };
    let answerModel = model;
    let kept: (Verdict & { escalate: false }) | undefined;
    if (probe !== undefined) {
      await this.#admitTo(model, turn);
      const verdict = await judgeLightLeg(probe, (g, onText) => dispatcher.run(model, g, onText, this.#cancel.signal, onAttempt, this.#routing(model)), this.#generation);
      if (!Number.isNaN(verdict.meanLogprob)) this.#cascadeInfo.light_mean_logprob = Number(verdict.meanLogprob.toFixed(4));
      if (verdict.escalate) {
        this.#earlier = [{ usage: verdict.light.usage, replica: verdict.light.replica.id, durationMs: this.#s.clock.now() - this.#started }];
        answerModel = dispatcher.model(probe.config.heavy);
        this.#cascadeInfo = { ...this.#cascadeInfo, cascade_leg: "heavy", cascade_reason: "low_confidence" };
        // An escalation is no failure: the heavy leg's first attempt is not a failover of the light one.
        watch.nextLeg();
        this.#s.observer.cascadeEscalated(this.#api.model, "low_confidence");
      } else {
        kept = verdict;
      }
    }
    if (kept === undefined) await this.#admitTo(answerModel, turn);
    const final = answerModel;
    const execute = this.#api.execute;
    const run: Run = (onText, attempt) => {
      const both = (r: Replica): void => {
        onAttempt(r);
        attempt(r);
      };
      if (kept !== undefined) return Promise.resolve(replay(kept, onText, both));
      if (execute !== undefined) return execute(final, this.#cancel.signal, both, this.#routing(final));
      return dispatcher.run(final, this.#generation, onText, this.#cancel.signal, both, this.#routing(final));
    };
    return { model: final, run: strictly(this.#generation, run) };
  }

  /** Session affinity (the body's session key, or a header for clients that cannot set it), and the explain listener on `m`'s replicas. */
  #routing(m: ServedModel): Routing {
    const session = this.#x.headers["x-flotilla-session"];
    const affinityKey = typeof session === "string" && session.length > 0 ? session : this.#api.sessionKey;
    const out = this.#explained;
    return {
      ...(affinityKey === undefined ? {} : { affinityKey }),
      ...(out === undefined ? {} : { explain: (d: Decision) => out.push(explainDecision(d, m.replicas.map((r) => r.id))) }),
    };
  }

  /** The API's own headers, and x-flotilla-explain when asked for: the decisions made before the answer began. */
  #answerHeaders(): Record<string, string> {
    return this.#explained === undefined ? { ...this.#api.headers } : { ...this.#api.headers, "x-flotilla-explain": JSON.stringify(this.#explained) };
  }

  /** Past every replica's slots, requests wait their fair turn here; one turn per leg. */
  async #admitTo(m: ServedModel, turn: Turn): Promise<void> {
    this.#release?.();
    this.#release = undefined;
    const generation = this.#generation;
    this.#release = await this.#s.gate.enter(
      m,
      {
        tenant: turn.principal?.tenantId ?? "",
        priority: turn.priority,
        ...(turn.principal?.weight === undefined ? {} : { weight: turn.principal.weight }),
        cost: () => (this.#s.dispatcher.promptTokens(m, generation) ?? estimateTokens(generation)) + (generation.sampling.maxTokens ?? DEFAULT_OUTPUT_ESTIMATE),
        deadlineMs: turn.deadlineMs,
      },
      this.#cancel.signal,
    );
  }

  /** The answer, streamed as it comes or sent whole. */
  async #respond(decided: { model: ServedModel; run: Run }, watch: RequestWatch, ticket: Ticket): Promise<void> {
    const head: AnswerHead = { requestId: this.#x.id, created: Math.floor(this.#s.clock.epochMs() / 1000), model: decided.model.name };
    const extension = (d: Dispatched): ServedBy => ({ ...ticket.price(d.usage, d.replica.id, this.#s.clock.now() - this.#started, this.#earlier), ...servedBy(d), ...this.#cascadeInfo });
    const reply = this.#x.reply;
    if (this.#api.stream && reply !== undefined) {
      this.#result = await stream(reply, this.#api.writer.stream(head), extension, (err) => (this.#failure = err), (onText, attempt) =>
        decided.run(watch.sink(this.#counted(onText)), attempt), () => this.#answerHeaders(),
      );
      return;
    }
    const whole = this.#api.writer.whole(head);
    const result = await decided.run(
      watch.sink((t, _n, _e, chunkIds, call) => whole.text(t, chunkIds, call)),
      () => undefined,
    );
    this.#result = result;
    this.#answer = whole.body(result, extension(result));
    await this.#x.send({ "x-flotilla-replica": result.replica.id, ...this.#answerHeaders() }, this.#answer);
  }

  /** Counts what a stream delivers, so a request cut short is billed for it. */
  #counted(onText: TextSink): TextSink {
    return (text, tokens, estimated, ids, call) => {
      this.#streamedTokens += tokens;
      if (estimated === true) this.#streamedEstimated = true;
      onText(text, tokens, estimated, ids, call);
    };
  }

  /** Exactly one ledger row, whatever happened; the capacity turn and the deadline are given back. */
  async #settle(watch: RequestWatch, ticket: Ticket): Promise<void> {
    this.#release?.();
    this.#cancelDeadline();
    const ended = settlement(this.#result, this.#lastReplica, this.#s.clock.now() - this.#started, this.#cancel.signal.aborted, this.#timedOut, this.#failure);
    const line = this.#x.result?.(this.#answer, this.#failure, this.#lastReplica !== undefined);
    const settled: Settlement = {
      ...ended,
      streamedTokens: this.#streamedTokens,
      streamedEstimated: this.#streamedEstimated,
      ...(this.#earlier === undefined ? {} : { earlier: this.#earlier }),
      ...(line === undefined ? {} : { batchLine: line }),
    };
    // The ledger records what the watch measured of the answering generation too (the twin's calibration).
    await ticket.settle(watch.finish(settled));
  }
}

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
  writer: StreamWriter,
  extension: (d: Dispatched) => ServedBy,
  broke: (err: unknown) => void,
  run: (onText: TextSink, onAttempt: (replica: Replica) => void) => ReturnType<Dispatcher["run"]>,
  extraHeaders: () => Record<string, string>,
): Promise<Dispatched | undefined> {
  const raw = reply.raw;
  let open = false;
  let replicaId = "";
  const openStream = (first: ChunkIds | undefined): void => {
    open = true;
    reply.hijack();
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-request-id": String(reply.request.id),
      "x-flotilla-replica": replicaId,
      ...extraHeaders(),
    });
    const start = writer.open(first);
    if (start !== "") append(start);
  };
  // Text that arrives within one tick leaves in one write of one string: an
  // engine that yields several pieces at once costs one syscall and no
  // buffer per piece (a corked stream still hands the socket one buffer per
  // write), and no piece waits longer than the current tick.
  let batch = "";
  const flush = (): void => {
    const out = batch;
    batch = "";
    if (out !== "" && !raw.writableEnded && !raw.destroyed) raw.write(out);
  };
  const append = (chunk: string): void => {
    if (batch === "") process.nextTick(flush);
    batch += chunk;
  };
  try {
    const result = await run(
      (text, _tokens, _estimated, chunkIds, call) => {
        if (!open) openStream(chunkIds);
        append(writer.text(text, chunkIds, call));
      },
      (replica) => {
        replicaId = replica.id;
      },
    );
    if (!open) openStream(undefined);
    const tail = batch + writer.close(result, () => extension(result));
    batch = "";
    raw.end(tail);
    return result;
  } catch (err) {
    if (!open) throw err; // the error handler answers with a status
    broke(err);
    flush();
    endWithError(raw, writer, toHttpError(err));
    return undefined;
  }
}

/**
 * The run, checked: an answer that finished but breaks what it was held to
 * is the engine's failure (502), not an answer. That is text outside the
 * JSON schema of a `strict` response_format, or a tool call of a tool not
 * offered, or with arguments outside a `strict` tool's parameters. One cut
 * at max_tokens is left as it is: it says it was cut.
 */
function strictly(generation: GenerationRequest, run: Run): Run {
  const format = generation.format;
  const tools = callsTools(generation) ? generation.tools : undefined;
  const strictFormat = format?.type === "json_schema" && format.strict;
  if (!strictFormat && tools === undefined) return run;
  return async (onText, attempt) => {
    let text = "";
    const calls: { name: string; args: string }[] = [];
    const result = await run((t, n, e, ids, call) => {
      if (call === undefined) text += t;
      else if (call.name !== undefined) calls[call.index] = { name: call.name, args: t };
      else if (calls[call.index] !== undefined) calls[call.index]!.args += t;
      onText(t, n, e, ids, call);
    }, attempt);
    const by = result.replica.id;
    const outside = result.finishReason === "stop" ? formatViolation(format, text) : undefined;
    if (outside !== undefined) throw new FlotillaError("engine_error", `replica ${by} answered outside response_format.json_schema "${format?.type === "json_schema" ? format.name : ""}": ${outside}; its engine did not enforce the schema`);
    const badCall = result.finishReason === "tool_calls" && tools !== undefined ? calls.map((c) => toolCallViolation(tools, c.name, c.args)).find((w) => w !== undefined) : undefined;
    if (badCall !== undefined) throw new FlotillaError("engine_error", `replica ${by} answered with a tool call that breaks the request's tools: ${badCall}; its engine did not enforce them`);
    return result;
  };
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

/** Once a stream has begun the status is spent; the error travels as the API's error event. */
function endWithError(raw: ServerResponse, writer: StreamWriter, http: HttpError): void {
  if (raw.destroyed || raw.writableEnded) return;
  raw.end(writer.broke(http));
}

function servedBy(d: Dispatched): ServedBy {
  return { replica: d.replica.id, attempts: d.attempts, continuations: d.continuations };
}
