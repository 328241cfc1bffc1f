import type { Filter } from "./pipeline.js";

export const readyFilter: Filter = {
  name: "ready",
  rejects: "no_ready_replica",
  keep: (c) => c.ready,
};

/** The prompt, plus the tokens asked for, must fit the replica's window. */
export const contextFitsFilter: Filter = {
  name: "context-fits",
  rejects: "context_length_exceeded",
  keep: (c, r) => {
    if (c.contextSize === undefined || r.promptTokens === undefined) return true;
    return r.promptTokens + (r.maxTokens ?? 1) <= c.contextSize;
  },
};

/** A replica whose slots and queue are full would only refuse the request. */
export const hasCapacityFilter: Filter = {
  name: "has-capacity",
  rejects: "overloaded",
  keep: (c) => c.active + c.queued < c.slots + c.maxQueue,
};

/**
 * The whole request (prompt plus max_tokens) must fit the replica's KV cache
 * at all; a replica with less KV than that could never finish it. Acts only
 * when the caller fills Candidate.kvCapacityTokens; not in the standard set.
 */
export const kvFitsFilter: Filter = {
  name: "kv-fits",
  rejects: "context_length_exceeded",
  keep: (c, r) => {
    if (c.kvCapacityTokens === undefined || r.promptTokens === undefined) return true;
    return r.promptTokens + (r.maxTokens ?? 1) <= c.kvCapacityTokens;
  },
};

/** The filters every named policy applies, in order: ready, context fits, has capacity. */
export const standardFilters: readonly Filter[] = [readyFilter, contextFitsFilter, hasCapacityFilter];
