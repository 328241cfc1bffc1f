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
}

/** What the router knows of the request. */
export interface RouteRequest {
  /** Prompt length in the model's tokens, when a local tokenizer could count it. */
  readonly promptTokens: number | undefined;
  readonly maxTokens: number | undefined;
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
  /** Higher is better; scorers should stay within [0, 1] so weights compare. */
  score(c: Candidate, r: RouteRequest): number;
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
 * Routes one request. Filters run in order over the survivors of the previous
 * one, so the reason reported is that of the filter that emptied the list:
 * "none ready" outranks "too long", which outranks "all busy".
 */
export function route(
  policy: Policy,
  request: RouteRequest,
  candidates: readonly Candidate[],
  random: () => number = Math.random,
): RouteOutcome {
  let survivors: readonly Candidate[] = candidates;
  if (survivors.length === 0) return { ok: false, reason: "no_ready_replica" };
  for (const filter of policy.filters) {
    const kept = survivors.filter((c) => filter.keep(c, request));
    if (kept.length === 0) return { ok: false, reason: filter.rejects };
    survivors = kept;
  }
  const scores = new Float64Array(survivors.length);
  for (let i = 0; i < survivors.length; i++) {
    let total = 0;
    for (const { scorer, weight } of policy.scorers) total += weight * scorer.score(survivors[i]!, request);
    scores[i] = total;
  }
  const chosen = survivors[policy.pick(scores, survivors.length, random)];
  if (chosen === undefined) throw new RangeError(`picker of policy ${policy.name} returned an index out of range`);
  return { ok: true, index: chosen.index };
}
