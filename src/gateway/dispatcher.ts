import { wallClock, type Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { likelyPromptTokens, promptTokenBound, type GenerationRequest, type GenerationResult } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import { candidatesOf, type Fleet, type Replica, type ServedModel } from "../fleet/fleet.js";
import { route, type Candidate, type Policy, type RejectReason, type RouteRequest } from "../scheduler/pipeline.js";
import { promptBlockHashes } from "../scheduler/prefix.js";
import { policyReadsPrefix } from "../scheduler/scorers.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";
import { DEFAULT_RETRY, backoffMs, isRetryable, retryCandidates, type RetryChoice, type RetryPolicy } from "../scheduler/retry.js";
import type { RouteHints } from "../metering/pricing.js";
import { sleep } from "./sleep.js";

export interface Dispatched extends GenerationResult {
  /** The replica that finished the answer. */
  readonly replica: Replica;
  /** Replicas tried, the last one included. */
  readonly attempts: number;
  /** Times another replica resumed an answer mid-stream. */
  readonly continuations: number;
}

const NO_BLOCKS: readonly number[] = [];
/** Blocks are characters, the TTFT scorer counts tokens: ~4 characters per token in English text. */
const CHARS_PER_TOKEN = 4;

/**
 * Runs one request on the fleet: the router's decision, the engine call, and
 * a retry on another replica when one fails before its first token.
 */
export class Dispatcher {
  readonly #fleet: Fleet;
  readonly #policy: Policy;
  readonly #retry: RetryPolicy;
  readonly #random: () => number;

  readonly #readyWaitMs: number;

  readonly #clock: Clock;

  readonly #slowFirstTokenMs: number;
  readonly #blockChars: number;
  /** Hashing every prompt costs O(prompt) per request: only when the policy reads prefixes. */
  readonly #hashPrompts: boolean;
  readonly #indexes = new Map<ServedModel, PrefixIndex>();
  /** Each replica's speed, price and energy from the hardware model; fixed, so looked up once. */
  readonly #hints = new Map<Replica, RouteHints | undefined>();
  readonly #hintsOf: (replica: Replica) => RouteHints | undefined;
  readonly #ttftSloMs: number | undefined;

  constructor(
    fleet: Fleet,
    policy: Policy,
    opts: {
      maxAttempts?: number;
      random?: () => number;
      readyWaitMs?: number;
      clock?: Clock;
      slowFirstTokenMs?: number;
      blockChars?: number;
      /** Per replica, what the TTFT, cost and energy scorers read; without it they stay neutral. */
      routeHints?: (replica: Replica) => RouteHints | undefined;
      /** The TTFT objective the `slo` and `ttft` scorers hold replicas to (their own default otherwise). */
      ttftSloMs?: number;
    } = {},
  ) {
    this.#hintsOf = opts.routeHints ?? (() => undefined);
    this.#ttftSloMs = opts.ttftSloMs;
    this.#blockChars = opts.blockChars ?? 256;
    this.#hashPrompts = policyReadsPrefix(policy);
    this.#slowFirstTokenMs = opts.slowFirstTokenMs ?? Infinity;
    this.#readyWaitMs = opts.readyWaitMs ?? 1_000;
    this.#clock = opts.clock ?? wallClock;
    this.#fleet = fleet;
    this.#policy = policy;
    this.#retry = { ...DEFAULT_RETRY, ...(opts.maxAttempts === undefined ? {} : { maxAttempts: opts.maxAttempts }) };
    this.#random = opts.random ?? Math.random;
  }

  get policy(): Policy {
    return this.#policy;
  }

  model(name: string): ServedModel {
    const model = this.#fleet.model(name);
    if (model === undefined) {
      const known = [...this.#fleet.models()].map((m) => m.name).join(", ");
      throw new FlotillaError("model_not_found", `model "${name}" is not served here; GET /v1/models lists the models (${known})`, { param: "model" });
    }
    return model;
  }

  /** The prompt's length in tokens with the model's own tokenizer, where a ready replica has one. */
  promptTokens(model: ServedModel, request: GenerationRequest): number | undefined {
    return countPromptTokens(model, request);
  }

  /** Live fleets are small (tens of replicas): every replica is a candidate, with what the index says it holds. */
  #candidates(model: ServedModel, failed: ReadonlySet<number>, blocks: readonly number[], resume: boolean): RetryChoice {
    const index = this.#prefixIndex(model);
    const matched = blocks.length > 0 && index.resolve(blocks) > 0;
    const all = candidatesOf(model, resume).map((c) => ({
      ...c,
      ...this.#hintsFor(model.replicas[c.index]!),
      prefixBlocks: matched ? index.leadingResolved(c.index) : 0,
    }));
    return retryCandidates(all, failed);
  }

  #hintsFor(replica: Replica): RouteHints | undefined {
    if (!this.#hints.has(replica)) this.#hints.set(replica, this.#hintsOf(replica));
    return this.#hints.get(replica);
  }

  #prefixIndex(model: ServedModel): PrefixIndex {
    let index = this.#indexes.get(model);
    if (index === undefined) {
      index = new PrefixIndex();
      this.#indexes.set(model, index);
    }
    return index;
  }

  /**
   * Runs `request` to completion on some replica. A replica that fails before
   * its first token is simply replaced; one that fails mid-answer is replaced
   * by another that resumes after the text already streamed, so the caller
   * sees one unbroken answer. `onAttempt` hears of each replica tried.
   */
  async run(
    model: ServedModel,
    request: GenerationRequest,
    onText: TextSink,
    signal: AbortSignal,
    onAttempt?: (replica: Replica) => void,
    routing: { readonly affinityKey?: string } = {},
  ): Promise<Dispatched> {
    const failed = new Set<number>();
    let lastError: unknown;
    const answer = new Answer(request.sampling.maxTokens, onText, this.#clock, this.#slowFirstTokenMs);
    let continuations = 0;
    let lastReplica: Replica | undefined;
    for (let attempt = 1; attempt <= this.#retry.maxAttempts; attempt++) {
      if (lastReplica !== undefined && answer.full()) {
        // The replica died after its last token: the answer is whole.
        return { ...answer.cut(countPromptTokens(model, request), request), replica: lastReplica, attempts: attempt - 1, continuations };
      }
      const current = answer.text.length === 0 ? request : resumed(request, answer.text, answer.tokens);
      const replica = await this.#pick(model, current, { failed, attempt, lastError, resume: answer.text.length > 0 }, signal, routing);
      lastReplica = replica;
      replica.health.dispatched();
      onAttempt?.(replica);
      const attemptAbort = answer.begin();
      try {
        const result = await replica.engine.generate(current, answer.sink, AbortSignal.any([signal, attemptAbort.signal]));
        // A replica that answers, but far slower than it should, is an outlier too.
        if (answer.slow) replica.health.failed();
        else replica.health.succeeded();
        if (answer.capped) return { ...answer.cut(countPromptTokens(model, current), current), replica, attempts: attempt, continuations };
        return { ...answer.finished(result, current), replica, attempts: attempt, continuations };
      } catch (err) {
        if (answer.capped && !signal.aborted) {
          // The gateway stopped an engine that went past max_tokens: the answer is whole at the limit.
          replica.health.succeeded();
          return { ...answer.cut(countPromptTokens(model, current), current), replica, attempts: attempt, continuations };
        }
        const code = err instanceof FlotillaError ? err.code : "engine_error";
        if (code === "engine_unavailable" || code === "engine_error") replica.health.failed();
        else replica.health.released();
        if (signal.aborted || !isRetryable(code, answer.text.length > 0)) throw err;
        if (answer.text.length > 0) continuations++;
        failed.add(model.replicas.indexOf(replica));
        lastError = err;
      }
    }
    throw lastError;
  }

  /**
   * The router's choice for this attempt. With nothing ready (an outage, a
   * restart in progress) it waits a moment for a replica to come back rather
   * than fail at once; bounded, and the request's own deadline or disconnect
   * still cancels the wait.
   */
  async #pick(
    model: ServedModel,
    current: GenerationRequest,
    /** `resume`: the rest of an answer the caller has begun to receive, which a draining replica may take. */
    tried: { readonly failed: ReadonlySet<number>; readonly attempt: number; readonly lastError: unknown; readonly resume: boolean },
    signal: AbortSignal,
    routing: { readonly affinityKey?: string },
  ): Promise<Replica> {
    const { failed, attempt, lastError, resume } = tried;
    // Remote engines offer no tokenizer, so blocks are fixed-size character
    // chunks of the whole rendered conversation: the same prefix, the same chain.
    const blocks = this.#hashPrompts ? promptBlockHashes(current.prompt, this.#blockChars, current.continuation) : NO_BLOCKS;
    const routeRequest: RouteRequest = {
      promptTokens: countPromptTokens(model, current),
      maxTokens: current.sampling.maxTokens,
      blocks,
      blockTokens: this.#blockChars / CHARS_PER_TOKEN,
      ...(this.#ttftSloMs === undefined ? {} : { ttftSloMs: this.#ttftSloMs }),
      ...(routing.affinityKey === undefined ? {} : { affinityKey: routing.affinityKey }),
    };
    let choice = this.#candidates(model, failed, blocks, resume);
    // Going back to a replica that failed this request: give it a moment first.
    if (choice.revisiting) {
      await sleep(backoffMs(this.#retry, attempt));
      choice = this.#candidates(model, failed, blocks, resume);
    }
    let candidates = choice.candidates;
    let outcome = route(this.#policy, routeRequest, candidates, this.#random);
    const waitUntil = this.#clock.now() + this.#readyWaitMs;
    while (!outcome.ok && outcome.reason === "no_ready_replica" && this.#clock.now() < waitUntil && !signal.aborted) {
      await sleep(25);
      candidates = this.#candidates(model, failed, blocks, resume).candidates;
      outcome = route(this.#policy, routeRequest, candidates, this.#random);
    }
    if (!outcome.ok) throw lastError ?? rejection(outcome.reason, model, routeRequest, candidates, current.prompt.kind === "chat" ? "messages" : "prompt");
    if (blocks.length > 0) this.#prefixIndex(model).record(outcome.index, blocks);
    return model.replicas[outcome.index]!;
  }
}

/**
 * The answer as the caller has received it, across every replica that wrote
 * part of it, held to max_tokens: a chunk that would take the answer past
 * the limit is not passed on, and the attempt's engine is stopped. Counts
 * from engines that could only estimate them (a lower bound: see
 * ChunkTokens) make the usage an estimate.
 */
class Answer {
  text = "";
  tokens = 0;
  estimated = false;
  capped = false;
  slow = false;
  #attempt = new AbortController();
  #attemptStarted = 0;
  #attemptSpoke = false;
  #attemptBytes = 0;
  #estimatedBefore = false;
  #tokensBefore = 0;

  constructor(
    readonly maxTokens: number | undefined,
    readonly onText: TextSink,
    readonly clock: Clock,
    readonly slowFirstTokenMs: number,
  ) {}

  /** Starts an attempt; its controller stops that attempt's engine alone. */
  begin(): AbortController {
    this.#attempt = new AbortController();
    this.#attemptStarted = this.clock.now();
    this.#attemptSpoke = false;
    this.#attemptBytes = 0;
    this.#estimatedBefore = this.estimated;
    this.#tokensBefore = this.tokens;
    this.slow = false;
    return this.#attempt;
  }

  full(): boolean {
    return this.maxTokens !== undefined && this.tokens >= this.maxTokens;
  }

  readonly sink: TextSink = (text, tokens, estimated) => {
    if (this.capped) return;
    if (this.maxTokens !== undefined && this.tokens + tokens > this.maxTokens) {
      this.capped = true;
      this.#attempt.abort();
      return;
    }
    if (!this.#attemptSpoke) {
      this.#attemptSpoke = true;
      this.slow = this.clock.now() - this.#attemptStarted > this.slowFirstTokenMs;
    }
    this.text += text;
    this.tokens += tokens;
    this.#attemptBytes += Buffer.byteLength(text, "utf8");
    if (estimated === true) this.estimated = true;
    this.onText(text, tokens, estimated);
  };

  /**
   * A finished attempt's result, with what its engine reported clamped to
   * what is possible: prompt tokens to the prompt's bound, output tokens to
   * max_tokens and to one per byte written (plus an end token). The replayed
   * text was input to the replica that finished, so it is in its prompt
   * count; output is every token the caller received.
   */
  finished(result: GenerationResult, current: GenerationRequest): GenerationResult {
    const promptTokens = Math.min(result.usage.promptTokens, promptTokenBound(current.prompt, current.continuation));
    const own = Math.min(result.usage.completionTokens, this.#attemptBytes + 1);
    const completionTokens = Math.min(this.#tokensBefore + own, this.maxTokens ?? Infinity);
    return {
      // After a continuation, only the resuming replica's tokens: the one that failed never scored its part.
      ...(result.logprobs === undefined ? {} : { logprobs: result.logprobs }),
      finishReason: result.finishReason,
      usage: { promptTokens, completionTokens, cachedTokens: Math.min(result.usage.cachedTokens, promptTokens) },
      ...(this.#estimatedBefore || result.usageEstimated === true ? { usageEstimated: true } : {}),
    };
  }

  /** The answer ended at max_tokens by the gateway (or the engine died at it): the engine reported no usage. */
  cut(promptTokens: number | undefined, current: GenerationRequest): GenerationResult {
    return {
      finishReason: "length",
      usage: {
        promptTokens: promptTokens ?? likelyPromptTokens(current.prompt, current.continuation),
        completionTokens: this.tokens,
        cachedTokens: 0,
      },
      ...(promptTokens === undefined || this.estimated ? { usageEstimated: true } : {}),
    };
  }
}

/** The request a replacement replica runs: the same prompt, resuming after what was written. */
function resumed(request: GenerationRequest, written: string, writtenTokens: number): GenerationRequest {
  const { maxTokens } = request.sampling;
  return {
    ...request,
    continuation: (request.continuation ?? "") + written,
    sampling: maxTokens === undefined ? request.sampling : { ...request.sampling, maxTokens: maxTokens - writtenTokens },
  };
}

/** Counted once with the first replica that has the tokenizer at hand. */
function countPromptTokens(model: ServedModel, request: GenerationRequest): number | undefined {
  for (const r of model.replicas) {
    if (!r.engine.isReady()) continue;
    const n = r.engine.countPromptTokens(request.prompt, request.continuation);
    if (n !== undefined) return n;
  }
  return undefined;
}

function rejection(reason: RejectReason, model: ServedModel, r: RouteRequest, candidates: readonly Candidate[], param: string): FlotillaError {
  switch (reason) {
    case "no_ready_replica":
      return new FlotillaError("no_ready_replica", `no replica of model "${model.name}" is ready; retry shortly`, { retryAfterS: 5 });
    case "overloaded":
      return new FlotillaError("overloaded", `every replica of model "${model.name}" is at its queue limit; retry shortly`, { retryAfterS: 1 });
    case "context_length_exceeded": {
      const window = Math.max(...candidates.map((c) => c.contextSize ?? 0));
      const asked = r.maxTokens === undefined ? "" : ` plus max_tokens ${r.maxTokens}`;
      return new FlotillaError(
        "context_length_exceeded",
        `this model's context window is ${window} tokens; the prompt is ${r.promptTokens} tokens${asked}. Shorten the prompt or lower max_tokens`,
        { param },
      );
    }
  }
}
