/**
 * The routing pipeline: filters drop replicas that cannot serve a request,
 * scorers rate the rest, a picker chooses. Every piece is a plain synchronous
 * function over a snapshot, so the live gateway and the simulator run the
 * same decision code (ARCHITECTURE.md, "Decisions are synchronous and pure").
 */

/** What the router knows of one replica at decision time. */
export interface Candidate {
  /** Position of the replica in the model's replica list. */
  readonly index: number;
  readonly ready: boolean;
  readonly active: number;
  readonly queued: number;
  readonly slots: number;
  readonly maxQueue: number;
  /** Context window in tokens; undefined when the replica does not say. */
  readonly contextSize: number | undefined;

  // Optional inputs of the newer scorers (docs/routing.md lists who reads what).
  // A caller that cannot fill one leaves it out; the scorer reading it is then
  // neutral: it gives every such candidate the same value.

  /** Stable identity for session affinity (e.g. hashString(replica name)); default `index`. */
  readonly replicaKey?: number;
  /** Leading blocks of `RouteRequest.blocks` this replica holds (PrefixIndex / CandidateSelector). */
  readonly prefixBlocks?: number;
  /** KV-cache tokens in use, and the replica's KV capacity in tokens. */
  readonly kvUsedTokens?: number;
  readonly kvCapacityTokens?: number;
  /** Share of the KV cache in use, 0..1, as an engine reports it (its /metrics) where tokens are not known. */
  readonly kvUsage?: number;
  /** Prefill time per uncached prompt token on this replica, in ms (hardware model or measured). */
  readonly prefillMsPerToken?: number;
  /** Prompt tokens admitted or waiting but not yet prefilled; the queue the request waits behind. */
  readonly pendingPrefillTokens?: number;
  /** The caller's own estimate of the wait before this request's prefill starts; overrides the estimate. */
  readonly queueWaitMs?: number;
  /** The caller's own predicted time to first token; overrides every other TTFT input. */
  readonly predictedTtftMs?: number;
  /** Requests in a row the replica has failed (its breaker's count), and whether it has answered since its last failure: its record, which retries prefer. */
  readonly failures?: number;
  readonly proven?: boolean;
  /** Serving cost of this replica in USD per million tokens, and energy in joules per token. */
  readonly usdPerMTok?: number;
  readonly joulesPerToken?: number;
}

/** What the router knows of the request. */
export interface RouteRequest {
  /** Prompt length in the model's tokens, when a local tokenizer could count it. */
  readonly promptTokens: number | undefined;
  readonly maxTokens: number | undefined;
  /**
   * The prompt's prefix-chained block hashes (prefix.ts: blockHashes,
   * textBlockHashes; a trace's hash_ids). For chat, of the whole rendered
   * conversation, so every message counts.
   */
  readonly blocks?: ArrayLike<number>;
  /** Tokens per block of `blocks`, to turn matched blocks into cached tokens. */
  readonly blockTokens?: number;
  /** Session key (conversation id, user id): affinity routes equal keys to the same replica. */
  readonly affinityKey?: string;
  /** Time-to-first-token objective for this request in ms (tenant or request class). */
  readonly ttftSloMs?: number;
}

/** Why no replica could take a request; the gateway turns each into a status. */
export type RejectReason = "no_ready_replica" | "context_length_exceeded" | "overloaded";

export interface Filter {
  readonly name: string;
  /** The reason given when this filter removes the last candidates. */
  readonly rejects: RejectReason;
  keep(c: Candidate, r: RouteRequest): boolean;
}

export interface Scorer {
  readonly name: string;
  /** Higher is better, within [0, 1] so weights compare: route() clamps what falls outside (NaN counts as 0). */
  score(c: Candidate, r: RouteRequest): number;
  /** It reads the request's prefix blocks (directly, or to discount cached tokens): the caller must hash the prompt. */
  readonly readsPrefix?: boolean;
  /**
   * Looks at every surviving candidate once before any is scored: for a
   * score relative to the others (the owner among those not overloaded).
   * `idx[0..m)` are the survivors' positions in `candidates`.
   */
  prepare?(candidates: readonly Candidate[], idx: ArrayLike<number>, m: number, request: RouteRequest): void;
}

/** A score held to [0, 1]; NaN (a scorer dividing by zero) counts as 0, never poisoning the sum. */
function unit(score: number): number {
  return score > 1 ? 1 : score > 0 ? score : 0;
}

export interface WeightedScorer {
  readonly scorer: Scorer;
  readonly weight: number;
}

/** Picks one of `n` scored candidates; `random` returns [0, 1). */
export type Picker = (scores: ArrayLike<number>, n: number, random: () => number) => number;

export interface Policy {
  readonly name: string;
  readonly filters: readonly Filter[];
  readonly scorers: readonly WeightedScorer[];
  readonly pick: Picker;
}

export type RouteOutcome =
  | { readonly ok: true; readonly index: number }
  | { readonly ok: false; readonly reason: RejectReason };

/**
 * What one decision did, filled by route() when the caller passes one:
 * explain (which scorer gave what to whom) and per-plugin latency. Costs a
 * clock read per plugin and an array per candidate; left out, route() does
 * neither.
 */
export interface RouteTrace {
  /** Each plugin in the order it ran ("filter:ready", "scorer:least-loaded", "pick") and its wall time, µs. */
  readonly plugins: { readonly name: string; readonly us: number }[];
  /**
   * Each candidate that passed the filters: its index, its score from each
   * scorer in [0, 1] (policy order), the weighted total. Only when asked
   * for: the per-plugin times alone allocate nothing per candidate.
   */
  readonly scored?: { readonly index: number; readonly scores: number[]; total: number }[];
}

/** A trace to pass to route(): plugin times, and every score too when `scores`. */
export function newRouteTrace(scores = true): RouteTrace {
  return scores ? { plugins: [], scored: [] } : { plugins: [] };
}

// Scratch for route(): survivor positions and scores, grown as needed and
// reused, so a decision allocates nothing but its outcome. A nested call (a
// scorer that routes) gets fresh arrays instead.
let scratchIdx = new Int32Array(64);
let scratchScores = new Float64Array(64);
let scoreViews: Float64Array[] = [];
let routing = false;

/**
 * Routes one request. Filters run in order over the survivors of the previous
 * one, so the reason reported is that of the filter that emptied the list:
 * "none ready" outranks "too long", which outranks "all busy".
 */
export function route(
  policy: Policy,
  request: RouteRequest,
  candidates: readonly Candidate[],
  random: () => number = Math.random,
  trace?: RouteTrace,
): RouteOutcome {
  const n = candidates.length;
  if (n === 0) return { ok: false, reason: "no_ready_replica" };
  const nested = routing;
  if (!nested && n > scratchIdx.length) {
    let c = scratchIdx.length;
    while (c < n) c *= 2;
    scratchIdx = new Int32Array(c);
    scratchScores = new Float64Array(c);
    scoreViews = [];
  }
  const idx = nested ? new Int32Array(n) : scratchIdx;
  routing = true;
  try {
    for (let i = 0; i < n; i++) idx[i] = i;
    let m = n;
    for (const filter of policy.filters) {
      const t0 = trace === undefined ? 0 : performance.now();
      let kept = 0;
      for (let j = 0; j < m; j++) {
        const i = idx[j]!;
        if (filter.keep(candidates[i]!, request)) idx[kept++] = i;
      }
      if (trace !== undefined) trace.plugins.push({ name: `filter:${filter.name}`, us: 1000 * (performance.now() - t0) });
      if (kept === 0) return { ok: false, reason: filter.rejects };
      m = kept;
    }
    let scores: Float64Array;
    if (nested) scores = new Float64Array(m);
    else {
      let view = scoreViews[m];
      if (view === undefined) scoreViews[m] = view = scratchScores.subarray(0, m);
      scores = view;
    }
    if (trace === undefined) score(policy.scorers, candidates, idx, m, request, scores);
    else scoreTraced(policy.scorers, candidates, idx, m, request, scores, trace);
    const t0 = trace === undefined ? 0 : performance.now();
    const pick = policy.pick(scores, m, random);
    if (trace !== undefined) trace.plugins.push({ name: "pick", us: 1000 * (performance.now() - t0) });
    const chosen = Number.isInteger(pick) && pick >= 0 && pick < m ? candidates[idx[pick]!] : undefined;
    if (chosen === undefined) throw new RangeError(`picker of policy ${policy.name} returned an index out of range`);
    return { ok: true, index: chosen.index };
  } finally {
    routing = nested;
  }
}

/** scores[j] = the weighted sum of every scorer's unit score for candidate idx[j]. */
function score(scorers: readonly WeightedScorer[], candidates: readonly Candidate[], idx: Int32Array, m: number, request: RouteRequest, scores: Float64Array): void {
  for (const ws of scorers) ws.scorer.prepare?.(candidates, idx, m, request);
  for (let j = 0; j < m; j++) {
    const c = candidates[idx[j]!]!;
    let total = 0;
    for (let s = 0; s < scorers.length; s++) {
      const ws = scorers[s]!;
      total += ws.weight * unit(ws.scorer.score(c, request));
    }
    scores[j] = total;
  }
}

/** The same sums, one scorer at a time so each is timed; every score kept when the trace keeps them. */
function scoreTraced(scorers: readonly WeightedScorer[], candidates: readonly Candidate[], idx: Int32Array, m: number, request: RouteRequest, scores: Float64Array, trace: RouteTrace): void {
  const scored = trace.scored;
  const first = scored?.length ?? 0;
  for (let j = 0; j < m; j++) {
    scores[j] = 0;
    scored?.push({ index: candidates[idx[j]!]!.index, scores: [], total: 0 });
  }
  for (const ws of scorers) {
    const t0 = performance.now();
    ws.scorer.prepare?.(candidates, idx, m, request);
    for (let j = 0; j < m; j++) {
      const u = unit(ws.scorer.score(candidates[idx[j]!]!, request));
      scored?.[first + j]!.scores.push(u);
      scores[j]! += ws.weight * u;
    }
    trace.plugins.push({ name: `scorer:${ws.scorer.name}`, us: 1000 * (performance.now() - t0) });
  }
  if (scored !== undefined) for (let j = 0; j < m; j++) scored[first + j]!.total = scores[j]!;
}
