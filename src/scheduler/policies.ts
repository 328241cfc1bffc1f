import { contextFitsFilter, hasCapacityFilter, readyFilter } from "./filters.js";
import { argmax } from "./pickers.js";
import type { Policy } from "./pipeline.js";
import { leastLoadedScorer } from "./scorers.js";

const standardFilters = [readyFilter, contextFitsFilter, hasCapacityFilter] as const;

export const leastLoaded: Policy = {
  name: "least-loaded",
  filters: standardFilters,
  scorers: [{ scorer: leastLoadedScorer, weight: 1 }],
  pick: argmax,
};

export const policies: Readonly<Record<string, Policy>> = { [leastLoaded.name]: leastLoaded };
