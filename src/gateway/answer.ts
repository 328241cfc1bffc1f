import { follow, NO_LONGER_NEEDED } from "../core/abort.js";
import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { likelyPromptTokens, promptTokenBound, type GenerationRequest, type GenerationResult } from "../core/request.js";
import type { ChunkIds, TextSink, ToolCallPiece } from "../engines/engine.js";
import type { Replica } from "../fleet/fleet.js";

/**
 * One replica's go at (the rest of) an answer. Several may run at once (a
 * hedge); only the first to speak writes to the answer, and the others are
 * stopped. Its controller stops its engine alone.
 */
export class Attempt {
  readonly controller = new AbortController();
  readonly startedAt: number;
  /** The answer's tokens before this attempt, and whether they were estimated. */
  readonly tokensBefore: number;
  readonly estimatedBefore: boolean;
  spoke = false;
  /** Its first token came later than a first token may (eject_slow_first_token_ms). */
  slow = false;
  /** Stopped because another attempt spoke first. */
  lost = false;
  /** Stopped because its replica left the fleet: the answer goes on elsewhere. */
  evicted = false;
  bytes = 0;
  result: GenerationResult | undefined;
  error: unknown;
  settled = false;
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly replica: Replica,
    answer: Answer,
    readonly sink: TextSink,
  ) {
    this.startedAt = answer.clock.now();
    this.tokensBefore = answer.tokens;
    this.estimatedBefore = answer.estimated;
  }

  /** Runs `generate`, recording how it ended; never rejects. */
  run(generate: (sink: TextSink, signal: AbortSignal) => Promise<GenerationResult>, signal: AbortSignal): void {
    const unfollow = follow(this.controller, signal);
    this.done = generate(this.sink, this.controller.signal).then(
      (result) => {
        unfollow();
        this.result = result;
        this.settled = true;
      },
      (err: unknown) => {
        unfollow();
        this.error = this.evicted ? new FlotillaError("engine_unavailable", `replica ${this.replica.id} left the fleet`, { cause: err }) : err;
        this.settled = true;
      },
    );
  }

  /** Its replica left the fleet: stop it, as a failure of the replica, so the request resumes on another. */
  evict(): void {
    this.evicted = true;
    this.controller.abort(NO_LONGER_NEEDED);
  }
}

/**
 * The answer as the caller has received it, across every replica that wrote
 * part of it, held to max_tokens: a chunk that would take the answer past
 * the limit is not passed on, and the attempt's engine is stopped. Counts
 * from engines that could only estimate them (a lower bound: see
 * ChunkTokens) make the usage an estimate.
 */
export class Answer {
  text = "";
  tokens = 0;
  estimated = false;
  capped = false;
  /** What the model read before the answer, and the answer's ids, while every piece has come with them. */
  promptIds: readonly number[] | undefined;
  ids: number[] | undefined = [];
  /** Tool-call arguments reached the caller: output, though not text to resume after. */
  #calls = false;
  /** The attempt of the current round that spoke first, and who hears of it. */
  owner: Attempt | undefined;
  #onClaim: (attempt: Attempt) => void = () => undefined;

  constructor(
    readonly maxTokens: number | undefined,
    readonly onText: TextSink,
    readonly clock: Clock,
    readonly slowFirstTokenMs: number,
  ) {}

  /** A new round of attempts at the rest of the answer; `onClaim` hears which one speaks first. */
  round(onClaim: (attempt: Attempt) => void): void {
    this.owner = undefined;
    this.#onClaim = onClaim;
  }

  /** An attempt of the current round on `replica`. */
  begin(replica: Replica): Attempt {
    const attempt: Attempt = new Attempt(replica, this, (text, tokens, estimated, ids, call) => this.#take(attempt, text, tokens, estimated, ids, call));
    return attempt;
  }

  /** Whether the caller has received any of the answer: text, or a tool call. */
  get begun(): boolean {
    return this.text.length > 0 || this.#calls;
  }

  full(): boolean {
    return this.maxTokens !== undefined && this.tokens >= this.maxTokens;
  }

  #take(attempt: Attempt, text: string, tokens: number, estimated: boolean | undefined, ids: ChunkIds | undefined, call: ToolCallPiece | undefined): void {
    if (this.owner !== attempt) {
      if (this.owner !== undefined || attempt.lost) return;
      this.owner = attempt;
      attempt.spoke = true;
      attempt.slow = this.clock.now() - attempt.startedAt > this.slowFirstTokenMs;
      this.#onClaim(attempt);
    }
    if (this.capped) return;
    if (this.maxTokens !== undefined && this.tokens + tokens > this.maxTokens) {
      this.capped = true;
      attempt.controller.abort(NO_LONGER_NEEDED);
      return;
    }
    this.#recordIds(ids);
    if (call === undefined) this.text += text;
    else this.#calls = true;
    this.tokens += tokens;
    attempt.bytes += Buffer.byteLength(text, "utf8");
    if (estimated === true) this.estimated = true;
    this.onText(text, tokens, estimated, ids, call);
  }

  /** The first attempt's first piece brings the prompt's ids; a piece without ids ends id tracking for the answer. */
  #recordIds(ids: ChunkIds | undefined): void {
    if (this.text.length === 0 && ids?.prompt !== undefined) this.promptIds = ids.prompt;
    if (ids === undefined || this.promptIds === undefined) this.ids = undefined;
    else this.ids?.push(...ids.ids);
  }

  /**
   * A finished attempt's result, with what its engine reported clamped to
   * what is possible: prompt tokens to the prompt's bound, output tokens to
   * max_tokens and to one per byte written (plus an end token). The replayed
   * text was input to the replica that finished, so it is in its prompt
   * count; output is every token the caller received.
   */
  finished(attempt: Attempt, result: GenerationResult, current: GenerationRequest): GenerationResult {
    const promptTokens = Math.min(result.usage.promptTokens, promptTokenBound(current.prompt, current.continuation));
    const own = Math.min(result.usage.completionTokens, attempt.bytes + 1);
    const completionTokens = Math.min(attempt.tokensBefore + own, this.maxTokens ?? Infinity);
    return {
      // After a continuation, only the resuming replica's tokens: the one that failed never scored its part.
      ...(result.logprobs === undefined ? {} : { logprobs: result.logprobs }),
      finishReason: result.finishReason,
      ...(result.stopSequence === undefined ? {} : { stopSequence: result.stopSequence }),
      usage: { promptTokens, completionTokens, cachedTokens: Math.min(result.usage.cachedTokens, promptTokens) },
      ...(attempt.estimatedBefore || result.usageEstimated === true ? { usageEstimated: true } : {}),
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

/** The request a replacement replica runs: the same prompt, resuming after what was written, from its ids where every piece had them. */
export function resumed(request: GenerationRequest, answer: Answer): GenerationRequest {
  const { maxTokens } = request.sampling;
  const { promptIds, ids } = answer;
  return {
    ...request,
    continuation: (request.continuation ?? "") + answer.text,
    ...(promptIds === undefined || ids === undefined ? {} : { continuationIds: { prompt: promptIds, answer: [...ids] } }),
    sampling: maxTokens === undefined ? request.sampling : { ...request.sampling, maxTokens: maxTokens - answer.tokens },
  };
}
