import { wallClock, type Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import type { GenerationRequest, GenerationResult } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import { candidatesOf, type Fleet, type Replica, type ServedModel } from "../fleet/fleet.js";
import { route, type Candidate, type Policy, type RejectReason, type RouteRequest } from "../scheduler/pipeline.js";
import { promptBlockHashes } from "../scheduler/prefix.js";
import { policyReadsPrefix } from "../scheduler/scorers.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";
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

/** Failures another replica may not share; anything else is the request's own fault. */
const retryable = new Set(["engine_unavailable", "engine_error", "overloaded"]);

/**
 * Runs one request on the fleet: the router's decision, the engine call, and
 * a retry on another replica when one fails before its first token.
 */
export class Dispatcher {
  readonly #fleet: Fleet;
  readonly #policy: Policy;
  readonly #maxAttempts: number;
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
    this.#maxAttempts = opts.maxAttempts ?? 3;
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
  #candidates(model: ServedModel, failed: ReadonlySet<number>, blocks: readonly number[]): Candidate[] {
    const index = this.#prefixIndex(model);
    const matched = blocks.length > 0 && index.resolve(blocks) > 0;
    return candidatesOf(model).map((c) => ({
      ...c,
      ...this.#hintsFor(model.replicas[c.index]!),
      ready: c.ready && !failed.has(c.index),
      prefixBlocks: matched ? index.leadingResolved(c.index) : 0,
    }));
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
    let written = ""; // streamed to the caller so far, by every attempt
    let writtenTokens = 0;
    let continuations = 0;
    let lastReplica: Replica | undefined;
    let attemptStarted = 0;
    let attemptSpoke = false;
    let slow = false;
    const sink: TextSink = (text, tokens) => {
      if (!attemptSpoke) {
        attemptSpoke = true;
        slow = this.#clock.now() - attemptStarted > this.#slowFirstTokenMs;
      }
      written += text;
      writtenTokens += tokens;
      onText(text, tokens);
    };
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const tokensBefore = writtenTokens;
      const { maxTokens } = request.sampling;
      if (lastReplica !== undefined && maxTokens !== undefined && writtenTokens >= maxTokens) {
        // The replica died after its last token: the answer is whole.
        const promptTokens = countPromptTokens(model, request) ?? 0;
        return { finishReason: "length", usage: { promptTokens, completionTokens: writtenTokens, cachedTokens: 0 }, replica: lastReplica, attempts: attempt - 1, continuations };
      }
      const current = written.length === 0 ? request : resumed(request, written, writtenTokens);
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
      let candidates = this.#candidates(model, failed, blocks);
      let outcome = route(this.#policy, routeRequest, candidates, this.#random);
      // With nothing ready (an outage, a restart in progress), wait a moment
      // for a replica to come back rather than fail at once; bounded, and
      // the request's own deadline or disconnect still cancels the wait.
      const waitUntil = this.#clock.now() + this.#readyWaitMs;
      while (!outcome.ok && outcome.reason === "no_ready_replica" && this.#clock.now() < waitUntil && !signal.aborted) {
        await sleep(25);
        candidates = this.#candidates(model, failed, blocks);
        outcome = route(this.#policy, routeRequest, candidates, this.#random);
      }
      if (!outcome.ok) throw lastError ?? rejection(outcome.reason, model, routeRequest, candidates, request.prompt.kind === "chat" ? "messages" : "prompt");
      const replica = model.replicas[outcome.index]!;
      if (blocks.length > 0) this.#prefixIndex(model).record(outcome.index, blocks);
      lastReplica = replica;
      replica.health.dispatched();
      onAttempt?.(replica);
      attemptStarted = this.#clock.now();
      attemptSpoke = false;
      slow = false;
      try {
        const result = await replica.engine.generate(current, sink, signal);
        // A replica that answers, but far slower than it should, is an outlier too.
        if (slow) replica.health.failed();
        else replica.health.succeeded();
        return {
          // After a continuation, only the resuming replica's tokens: the one that failed never scored its part.
          ...(result.logprobs === undefined ? {} : { logprobs: result.logprobs }),
          finishReason: result.finishReason,
          // The replayed text was input to the replica that finished, so it
          // is in its prompt count; output is every token actually generated.
          usage: { ...result.usage, completionTokens: tokensBefore + result.usage.completionTokens },
          replica,
          attempts: attempt,
          continuations,
        };
      } catch (err) {
        const code = err instanceof FlotillaError ? err.code : "engine_error";
        if (code === "engine_unavailable" || code === "engine_error") replica.health.failed();
        else replica.health.released();
        const resumable = written.length > 0 ? code === "engine_unavailable" || code === "engine_error" : retryable.has(code);
        if (signal.aborted || !resumable) throw err;
        if (written.length > 0) continuations++;
        failed.add(outcome.index);
        lastError = err;
      }
    }
    throw lastError;
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
