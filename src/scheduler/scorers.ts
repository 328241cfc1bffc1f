import type { Scorer } from "./pipeline.js";

/** 1 for an idle replica, falling towards 0 as work per slot grows. */
export const leastLoadedScorer: Scorer = {
  name: "least-loaded",
  score: (c) => 1 / (1 + (c.active + c.queued) / Math.max(1, c.slots)),
};
