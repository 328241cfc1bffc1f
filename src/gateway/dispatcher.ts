import { NO_LONGER_NEEDED } from "../core/abort.js";
import { wallClock, type Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { callsTools, type EmbeddingRequest, type EmbeddingResult, type GenerationRequest, type GenerationResult } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import { candidatesOf, promptTokensOf, type Fleet, type Replica, type ServedModel } from "../fleet/fleet.js";
import { newRouteTrace, route, type Candidate, type Policy, type RejectReason, type RouteOutcome, type RouteRequest } from "../scheduler/pipeline.js";
import { promptBlockHashes } from "../scheduler/prefix.js";
import { hashString } from "../scheduler/hash.js";
import { policyReadsPrefix } from "../scheduler/scorers.js";
import { DEFAULT_HEDGE, FirstTokenLatency, hedgeCandidates, hedgeDelayMs, type HedgePolicy } from "../scheduler/hedge.js";
import { DEFAULT_RETRY, attemptBudget, backoffMs, bestRecord, isRetryable, retryCandidates, unresumable, type RetryChoice, type RetryPolicy } from "../scheduler/retry.js";
import { markReady, type Readiness } from "../scheduler/readiness.js";
import { readyIndices, type DecisionListener } from "../scheduler/decision.js";
import { Answer, resumed, type Attempt } from "./answer.js";
import type { PeerSync } from "./peer-sync.js";
import { ReplicaPrefixes } from "./replica-prefixes.js";
import type { RouteHints } from "../metering/pricing.js";

/** What a caller tells the router of one request beyond the request itself. */
export interface Routing {
  /** Session key: equal keys go to the same replica where they can. */
  readonly affinityKey?: string;
  /** Hears this request's routing decisions, with their scores (x-flotilla-explain). */
  readonly explain?: DecisionListener;
}

export interface Dispatched extends GenerationResult {
  /** The replica that finished the answer. */
  readonly replica: Replica;
  /** Attempts made, hedges and the last one included. */
  readonly attempts: number;
  /** Times another replica resumed an answer mid-stream. */
  readonly continuations: number;
}

/** An embeddings request run on the fleet: its vectors, and who made them. */
export interface Embedded extends EmbeddingResult {
  readonly replica: Replica;
  readonly attempts: number;
}

const NO_BLOCKS: readonly number[] = [];
const NO_FAILURES: ReadonlySet<Replica> = new Set();
/** Hedges one round may add to its first attempt: a hedge that lands on a silent replica too gets one more chance. */
const MAX_HEDGES = 2;
/** Blocks are characters, the TTFT scorer counts tokens: ~4 characters per token in English text. */
const CHARS_PER_TOKEN = 4;

/**
 * Runs one request on the fleet: the router's decision, the engine call, a
 * hedge when the first token is late, a retry on another replica when one
 * fails before its first token, and a resume when one fails mid-answer.
 */
export class Dispatcher {
  readonly #fleet: Fleet;
  readonly #policy: Policy;
  readonly #retry: RetryPolicy;
  readonly #random: () => number;
  readonly #readiness: Readiness;
  readonly #onDecision: DecisionListener | undefined;
  readonly #scoreEveryDecision: boolean;
  readonly #decisionSample: number;
  #decisions = 0;
  readonly #clock: Clock;

  readonly #slowFirstTokenMs: number;
  readonly #blockChars: number;
  /** Hashing every prompt costs O(prompt) per request: only when the policy reads prefixes. */
  readonly #hashPrompts: boolean;
  /** Per model name: outlive any one snapshot of its replicas. */
  readonly #indexes = new Map<string, ReplicaPrefixes>();
  readonly #firstTokens = new Map<string, FirstTokenLatency>();
  readonly #hedge: HedgePolicy;
  /** Each replica's speed, price and energy from the hardware model; fixed, so looked up once. */
  readonly #hints = new Map<Replica, ReplicaHints>();
  readonly #hintsOf: (replica: Replica) => RouteHints | undefined;
  readonly #ttftSloMs: number | undefined;
  /**
   * Replicas chosen whose engine has not been handed the request yet. A
   * burst of requests the admission gate lets in at once is decided before
   * any reaches its engine; counted as queued here, each decision sees the
   * ones before it (as in the simulator, where dispatch is immediate)
   * instead of every request of the burst herding onto one replica.
   */
  readonly #picked = new Map<Replica, number>();
  /** Attempts running, by replica: a replica that leaves the fleet hands them on (evict). */
  readonly #running = new Map<Replica, Set<Attempt>>();
  /** The other gateways on the same store, told what this one routes and telling it theirs. */
  readonly #peers: PeerSync | undefined;

  constructor(
    fleet: Fleet,
    policy: Policy,
    opts: {
      /** The retry rules (scheduler/retry.ts); the defaults where left out. */
      retry?: Partial<RetryPolicy>;
      /** The candidate rule (scheduler/readiness.ts); injectable so a test can show the twin and the fleet diverge without it. */
      readiness?: Readiness;
      /** Hears every routing decision of every request, with its plugin times (its RouteTrace). */
      onDecision?: DecisionListener;
      /** onDecision hears every candidate's scores too (debug logging); otherwise only a request that asks (explain) gets them. */
      scoreEveryDecision?: boolean;
      /** onDecision hears one decision in this many (default 1: all; the per-plugin latency histogram is a sample). Explained requests and debug logging always. */
      decisionSample?: number;
      random?: () => number;
      clock?: Clock;
      slowFirstTokenMs?: number;
      blockChars?: number;
      /** Per replica, what the TTFT, cost and energy scorers read; without it they stay neutral. */
      routeHints?: (replica: Replica) => RouteHints | undefined;
      /** The TTFT objective the `slo` and `ttft` scorers hold replicas to (their own default otherwise). */
      ttftSloMs?: number;
      /** First-token hedging; by default on, never waiting past slowFirstTokenMs (or 2 s). */
      hedge?: Partial<HedgePolicy>;
      /** Other gateways in front of the same engines (gateway/peer-sync.ts). */
      peers?: PeerSync;
    } = {},
  ) {
    const maxMs = Math.min(DEFAULT_HEDGE.maxMs, opts.slowFirstTokenMs ?? Infinity);
    this.#hedge = { ...DEFAULT_HEDGE, maxMs, ...opts.hedge };
    this.#hintsOf = opts.routeHints ?? (() => undefined);
    this.#ttftSloMs = opts.ttftSloMs;
    this.#blockChars = opts.blockChars ?? 256;
    this.#hashPrompts = policyReadsPrefix(policy);
    this.#slowFirstTokenMs = opts.slowFirstTokenMs ?? Infinity;
    this.#readiness = opts.readiness ?? markReady;
    this.#onDecision = opts.onDecision;
    this.#scoreEveryDecision = opts.scoreEveryDecision === true;
    this.#decisionSample = this.#scoreEveryDecision ? 1 : Math.max(1, Math.floor(opts.decisionSample ?? 1));
    this.#clock = opts.clock ?? wallClock;
    this.#fleet = fleet;
    this.#policy = policy;
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#random = opts.random ?? Math.random;
    this.#peers = opts.peers;
    this.#peers?.countOwn(() => this.#ownByKey());
    // Every replica counts the peers' requests from the start, not from its first decision here.
    if (this.#peers !== undefined) for (const m of fleet.models()) for (const r of m.replicas) this.#hintsFor(r);
    fleet.onChange((change) => {
      if (change.kind === "removed") this.#forget(change.replica);
      else if (this.#peers !== undefined) this.#hintsFor(change.replica);
    });
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

  /**
   * Live fleets are small (tens of replicas): every replica is a candidate,
   * with what the index says it holds. Read from the model's latest
   * snapshot (replicas come and go while a request waits or retries); the
   * candidates' indices are into the snapshot returned with them.
   */
  #candidates(name: ServedModel, failed: ReadonlySet<Replica>, blocks: readonly number[], resume: boolean): RetryChoice & { readonly model: ServedModel } {
    const model = this.#fleet.model(name.name) ?? name;
    const prefixes = this.#prefixIndex(model.name);
    const matched = blocks.length > 0 && prefixes.index.resolve(blocks) > 0;
    const all = candidatesOf(model, resume, this.#readiness).map((c) => {
      const replica = model.replicas[c.index]!;
      return {
        ...c,
        queued: c.queued + (this.#picked.get(replica) ?? 0),
        ...this.#hintsFor(replica),
        prefixBlocks: matched ? prefixes.index.leadingResolved(prefixes.slot(replica)) : 0,
      };
    });
    return { ...retryCandidates(all, indicesIn(model, failed)), model };
  }

  /**
   * What the router knows of a replica that does not change: its hardware's
   * speed, price and energy, and its key for rendezvous hashing (session
   * affinity, prefix owners), a hash of its engine's URL, so that every
   * gateway in front of the same engines agrees on it, whatever order or
   * ids its own fleet gives them.
   */
  #hintsFor(replica: Replica): ReplicaHints {
    let hints = this.#hints.get(replica);
    if (hints === undefined) {
      const where = replica.config?.engine === "openai" ? replica.config.url : replica.id;
      const replicaKey = hashString(where);
      hints = { ...this.#hintsOf(replica), replicaKey };
      this.#hints.set(replica, hints);
      const peers = this.#peers;
      if (peers !== undefined) replica.engine.countPeers?.(() => peers.inFlight(replicaKey));
    }
    return hints;
  }

  #prefixIndex(model: string): ReplicaPrefixes {
    let index = this.#indexes.get(model);
    if (index === undefined) {
      index = new ReplicaPrefixes();
      this.#indexes.set(model, index);
    }
    return index;
  }

  /** This gateway's requests by replica key, as the peers hear them: running, and chosen but not yet handed over. */
  #ownByKey(): Map<number, number> {
    const counts = new Map<number, number>();
    const add = (replica: Replica, n: number): void => {
      const key = this.#hintsFor(replica).replicaKey;
      counts.set(key, (counts.get(key) ?? 0) + n);
    };
    for (const [replica, running] of this.#running) add(replica, running.size);
    for (const [replica, picked] of this.#picked) add(replica, picked);
    return counts;
  }

  /** What the peers placed on this prompt's chain, into the model's index: as if this gateway had routed it. */
  #hearPeers(model: ServedModel, blocks: readonly number[]): void {
    const hints = this.#peers?.hints(model.name);
    if (hints === undefined || hints.size === 0 || blocks.length === 0) return;
    const prefixes = this.#prefixIndex(model.name);
    const snapshot = this.#fleet.model(model.name) ?? model;
    hints.apply(blocks, prefixes.index, (key) => {
      const replica = snapshot.replicas.find((r) => this.#hintsFor(r).replicaKey === key);
      return replica === undefined ? undefined : prefixes.slot(replica);
    });
  }

  #track(attempt: Attempt): void {
    let set = this.#running.get(attempt.replica);
    if (set === undefined) this.#running.set(attempt.replica, (set = new Set()));
    set.add(attempt);
    void attempt.done.then(() => {
      set.delete(attempt);
      if (set.size === 0 && this.#running.get(attempt.replica) === set) this.#running.delete(attempt.replica);
    });
  }

  /** Requests running on `replica` now (attempts of this gateway's). */
  runningOn(replica: Replica): number {
    return this.#running.get(replica)?.size ?? 0;
  }

  /**
   * Stops every attempt on `replica` as its failure: each request goes on
   * on another replica, resuming after the text it has already sent. For a
   * replica leaving the fleet whose requests did not finish in time.
   */
  evict(replica: Replica): void {
    for (const a of this.#running.get(replica) ?? []) a.evict();
  }

  /** A replica left the fleet: what the router kept about it goes. */
  #forget(replica: Replica): void {
    this.#indexes.get(replica.model)?.release(replica);
    this.#hints.delete(replica);
    this.#picked.delete(replica);
  }

  /**
   * Runs `request` to completion on some replica. A replica that fails before
   * its first token is simply replaced; one that fails mid-answer is replaced
   * by another that resumes after the text already streamed, so the caller
   * sees one unbroken answer. `onAttempt` hears of each replica that takes
   * the answer on: one that fails before speaking, or the winner of a hedge.
   */
  async run(
    model: ServedModel,
    request: GenerationRequest,
    onText: TextSink,
    signal: AbortSignal,
    onAttempt?: (replica: Replica) => void,
    routing: Routing = {},
  ): Promise<Dispatched> {
    /** Replicas that failed this request (not indices: the fleet may change between attempts). */
    const failed = new Set<Replica>();
    let lastError: unknown;
    const answer = new Answer(request.sampling.maxTokens, onText, this.#clock, this.#slowFirstTokenMs);
    let continuations = 0;
    let attempts = 0;
    let lastReplica: Replica | undefined;
    const budget = attemptBudget(this.#retry, model.replicas.length);
    while (attempts < budget) {
      if (lastReplica !== undefined && answer.full()) {
        // The replica died after its last token: the answer is whole.
        return { ...answer.cut(countPromptTokens(model, request), request), replica: lastReplica, attempts, continuations };
      }
      const current = answer.begun ? resumed(request, answer) : request;
      const tried = { failed, attempt: attempts + 1, lastError, resume: answer.begun, param: request.prompt.kind === "chat" ? "messages" : "prompt" };
      const { model: now, replica } = await this.#pick(model, current, tried, signal, routing);
      const round = await this.#round(now, current, replica, answer, signal, failed, budget - attempts, onAttempt);
      attempts += round.started;
      lastReplica = round.attempt.replica;
      const { result, error } = round.attempt;
      // The gateway stopped an engine that went past max_tokens: the answer is whole at the limit.
      if (answer.capped && !signal.aborted) return { ...answer.cut(countPromptTokens(model, current), current), replica: lastReplica, attempts, continuations };
      if (result !== undefined) return { ...answer.finished(round.attempt, result, current), replica: lastReplica, attempts, continuations };
      const code = error instanceof FlotillaError ? error.code : "engine_error";
      if (signal.aborted || !isRetryable(code, answer.begun)) throw error;
      const held = answer.begun ? unresumable({ format: request.format !== undefined, tools: callsTools(request) }) : undefined;
      if (held !== undefined) {
        throw new FlotillaError("engine_error", `replica ${lastReplica.id} failed mid-answer, and an answer ${held} cannot be resumed where it stopped; send the request again`, { cause: error });
      }
      if (answer.begun) continuations++;
      lastError = error;
    }
    throw lastError;
  }

  /**
   * Embeds on some replica of `model`, by the same decision and retry
   * rules as a generation. The router reads the longest input (each is
   * embedded on its own, so that is what must fit a context window), and
   * a replica that fails is replaced; there is nothing to resume.
   */
  async embed(model: ServedModel, request: EmbeddingRequest, signal: AbortSignal, onAttempt?: (replica: Replica) => void, routing: Routing = {}): Promise<Embedded> {
    if (!model.replicas.some((r) => r.engine.embed !== undefined)) {
      throw new FlotillaError("invalid_request", `model "${model.name}" is served by engines that do not embed`, { param: "model" });
    }
    const longest = request.inputs.reduce((a, b) => (inputLength(b) > inputLength(a) ? b : a));
    const view: GenerationRequest = { id: request.id, prompt: longest, sampling: { maxTokens: 0 } };
    const failed = new Set<Replica>();
    const budget = attemptBudget(this.#retry, model.replicas.length);
    let lastError: unknown;
    for (let attempt = 1; attempt <= budget; attempt++) {
      const { replica } = await this.#pick(model, view, { failed, attempt, lastError, resume: false, param: "input" }, signal, routing);
      this.#handedOver(replica);
      const embed = replica.engine.embed?.bind(replica.engine);
      if (embed === undefined) {
        // A model served by engines of several kinds: this one generates only, and is no worse for it.
        failed.add(replica);
        lastError = new FlotillaError("engine_error", `replica ${replica.id} does not embed`);
        continue;
      }
      onAttempt?.(replica);
      replica.health.dispatched();
      try {
        const out = await embed(request, signal);
        replica.health.succeeded();
        return { ...out, replica, attempts: attempt };
      } catch (err) {
        const code = err instanceof FlotillaError ? err.code : "engine_error";
        if (signal.aborted || !isRetryable(code, false)) {
          replica.health.released();
          throw err;
        }
        if (code === "overloaded") replica.health.released();
        else replica.health.failed();
        failed.add(replica);
        lastError = err;
      }
    }
    throw lastError;
  }

  /**
   * One round of attempts at (the rest of) the answer: `first`, and, each
   * time the latest attempt has not spoken within the hedge delay, the same
   * request on another replica with a free slot (up to MAX_HEDGES). The
   * first to speak keeps the answer and the others are stopped. Returns
   * once the attempt that spoke has ended, or
   * every attempt has failed without speaking; every replica's breaker
   * hears how its attempt went.
   */
  async #round(
    model: ServedModel,
    current: GenerationRequest,
    first: Replica,
    answer: Answer,
    signal: AbortSignal,
    failed: Set<Replica>,
    budgetLeft: number,
    onAttempt: ((replica: Replica) => void) | undefined,
  ): Promise<{ attempt: Attempt; started: number }> {
    let spoke: () => void = () => undefined;
    const spoken = new Promise<void>((resolve) => (spoke = resolve));
    const attempts: Attempt[] = [];
    answer.round((owner) => {
      this.#firstToken(model).record(this.#clock.now() - owner.startedAt);
      owner.replica.health.spoke();
      for (const a of attempts) {
        if (a === owner) continue;
        a.lost = true;
        a.controller.abort(NO_LONGER_NEEDED);
      }
      if (owner !== attempts[0]) onAttempt?.(owner.replica);
      spoke();
    });
    const start = (replica: Replica): Attempt => {
      replica.health.dispatched();
      const attempt = answer.begin(replica);
      attempts.push(attempt);
      attempt.run((sink, s) => replica.engine.generate(current, sink, s), signal);
      this.#track(attempt);
      return attempt;
    };
    // From here to the engine call all is synchronous, so no decision comes between: the pick's count ends now,
    // before anything that could throw.
    this.#handedOver(first);
    onAttempt?.(first);
    let latest = start(first);
    // Each attempt still silent past the delay brings in another, up to MAX_HEDGES, while the request has attempts left.
    while (attempts.length <= MAX_HEDGES && attempts.length < budgetLeft) {
      const silent = Promise.race([spoken, Promise.all(attempts.map((a) => a.done))]);
      if (!(await this.#late(model, latest, silent, signal))) break;
      const hedge = this.#hedgeTarget(model, current, new Set([...failed, ...attempts.map((a) => a.replica)]), answer.begun);
      if (hedge === undefined) break;
      latest = start(hedge);
    }
    for (;;) {
      const owner = answer.owner;
      if (owner !== undefined) {
        await owner.done;
        break;
      }
      const running = attempts.filter((a) => !a.settled);
      if (running.length === 0) break;
      await Promise.race([spoken, ...running.map((a) => a.done)]);
    }
    await Promise.all(attempts.map((a) => a.done));
    for (const a of attempts) this.#judge(a, answer, signal, failed);
    return { attempt: answer.owner ?? attempts.at(-1)!, started: attempts.length };
  }

  /**
   * Whether `attempt` is still silent when its hedge delay runs out. The
   * delay is looked at again every `minMs`: answers that arrive meanwhile
   * (a cold start's first ones) can shorten it.
   */
  async #late(model: ServedModel, attempt: Attempt, spokeOrEnded: Promise<unknown>, signal: AbortSignal): Promise<boolean> {
    if (!this.#hedge.enabled) return false;
    for (;;) {
      const left = attempt.startedAt + hedgeDelayMs(this.#hedge, this.#firstToken(model).p90()) - this.#clock.now();
      if (left <= 0) return !signal.aborted;
      if (await settlesWithin(spokeOrEnded, Math.min(left, this.#hedge.minMs), this.#clock, signal)) return false;
      if (signal.aborted) return false;
    }
  }

  /** What one attempt says of its replica, for the breaker and for the rest of this request. */
  #judge(a: Attempt, answer: Answer, signal: AbortSignal, failed: Set<Replica>): void {
    const health = a.replica.health;
    if (a.result !== undefined || (a === answer.owner && answer.capped && !signal.aborted)) {
      // A replica that answers, but far slower than it should, is an outlier too.
      if (a.slow) health.failed();
      else health.succeeded();
      return;
    }
    if (a.lost) {
      // Beaten to the first token by a hedge it had a head start on: slow, and not asked again by this request.
      if (a.startedAt < (answer.owner?.startedAt ?? Infinity)) {
        health.failed();
        failed.add(a.replica);
      } else health.released();
      return;
    }
    const code = a.error instanceof FlotillaError ? a.error.code : "engine_error";
    if (signal.aborted || (code !== "engine_unavailable" && code !== "engine_error")) {
      health.released();
      return;
    }
    health.failed();
    failed.add(a.replica);
  }

  /** A replica for a hedge: one this request has not tried, with a free slot, the best record first; none when every slot is busy. */
  #hedgeTarget(model: ServedModel, current: GenerationRequest, tried: ReadonlySet<Replica>, resume: boolean): Replica | undefined {
    const choice = this.#candidates(model, NO_FAILURES, NO_BLOCKS, resume);
    const candidates = bestRecord(hedgeCandidates(choice.candidates, indicesIn(choice.model, tried)));
    const outcome = route(this.#policy, { promptTokens: countPromptTokens(model, current), maxTokens: current.sampling.maxTokens }, candidates, this.#random);
    return outcome.ok ? choice.model.replicas[outcome.index] : undefined;
  }

  #firstToken(model: ServedModel): FirstTokenLatency {
    let latency = this.#firstTokens.get(model.name);
    if (latency === undefined) {
      latency = new FirstTokenLatency();
      this.#firstTokens.set(model.name, latency);
    }
    return latency;
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
    /**
     * `resume`: the rest of an answer the caller has begun to receive, which a draining replica may take;
     * `param`: the request field a prompt too long for every replica is.
     */
    tried: { readonly failed: ReadonlySet<Replica>; readonly attempt: number; readonly lastError: unknown; readonly resume: boolean; readonly param: string },
    signal: AbortSignal,
    routing: Routing,
  ): Promise<{ model: ServedModel; replica: Replica }> {
    const { failed, attempt, lastError, resume, param } = tried;
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
    this.#hearPeers(model, blocks);
    let choice = this.#candidates(model, failed, blocks, resume);
    // Going back to a replica that failed this request: give it a moment first.
    if (choice.revisiting) {
      await this.#clock.sleep(backoffMs(this.#retry, attempt), signal);
      choice = this.#candidates(model, failed, blocks, resume);
    }
    let outcome = this.#route(routeRequest, choice.candidates, resume, routing.explain);
    const waitUntil = this.#clock.now() + this.#retry.readyWaitMs;
    while (!outcome.ok && outcome.reason === "no_ready_replica" && this.#clock.now() < waitUntil && !signal.aborted) {
      await this.#clock.sleep(this.#retry.readyPollMs, signal);
      choice = this.#candidates(model, failed, blocks, resume);
      outcome = this.#route(routeRequest, choice.candidates, resume, routing.explain);
    }
    if (!outcome.ok) throw lastError ?? rejection(outcome.reason, choice.model, routeRequest, choice.candidates, param);
    const replica = choice.model.replicas[outcome.index]!;
    if (blocks.length > 0) {
      const prefixes = this.#prefixIndex(model.name);
      prefixes.index.record(prefixes.slot(replica), blocks);
      this.#peers?.placed(model.name, this.#hintsFor(replica).replicaKey, blocks);
    }
    this.#picked.set(replica, (this.#picked.get(replica) ?? 0) + 1);
    return { model: choice.model, replica };
  }

  /** The engine of a replica #pick chose has the request now: its own load counts it. */
  #handedOver(replica: Replica): void {
    const n = (this.#picked.get(replica) ?? 1) - 1;
    if (n === 0) this.#picked.delete(replica);
    else this.#picked.set(replica, n);
  }

  /** route(), told to whoever listens: every decision to onDecision, a request's own to its `explain`. */
  #route(request: RouteRequest, candidates: readonly Candidate[], resume: boolean, explain: DecisionListener | undefined): RouteOutcome {
    const heard = this.#onDecision !== undefined && this.#decisions++ % this.#decisionSample === 0;
    if (!heard && explain === undefined) return route(this.#policy, request, candidates, this.#random);
    const trace = newRouteTrace(explain !== undefined || this.#scoreEveryDecision);
    const outcome = route(this.#policy, request, candidates, this.#random, trace);
    const decision = {
      atMs: this.#clock.now(),
      promptTokens: request.promptTokens,
      maxTokens: request.maxTokens,
      resume,
      ready: readyIndices(candidates),
      outcome: outcome.ok ? outcome.index : outcome.reason,
      trace,
    };
    if (heard) this.#onDecision?.(decision);
    explain?.(decision);
    return outcome;
  }
}

/** Whether `work` settles within `ms` of `clock`'s time (false when the time runs out first, or the request is cancelled). */
function settlesWithin(work: Promise<unknown>, ms: number, clock: Clock, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const end = (settled: boolean): void => {
      cancelTimer();
      signal.removeEventListener("abort", onAbort);
      resolve(settled);
    };
    const onAbort = (): void => end(false);
    const cancelTimer = clock.after(ms, onAbort);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      () => end(true),
      () => end(true),
    );
  });
}

type ReplicaHints = Partial<RouteHints> & { readonly replicaKey: number };

/** Where `replicas` stand in `model`'s snapshot (those no longer in it are left out). */
function indicesIn(model: ServedModel, replicas: Iterable<Replica>): Set<number> {
  const out = new Set<number>();
  for (const r of replicas) {
    const i = model.replicas.indexOf(r);
    if (i >= 0) out.add(i);
  }
  return out;
}

/** An input's size for choosing the longest: ids, or characters of text. */
function inputLength(input: EmbeddingRequest["inputs"][number]): number {
  return input.kind === "tokens" ? input.ids.length : input.text.length;
}

/** The request's prompt (and continuation) in the model's tokens, where a replica has a tokenizer. */
function countPromptTokens(model: ServedModel, request: GenerationRequest): number | undefined {
  return promptTokensOf(model, request.prompt, request.continuation);
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
