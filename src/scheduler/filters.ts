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
