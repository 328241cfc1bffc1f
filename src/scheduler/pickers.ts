import type { Picker } from "./pipeline.js";

/** The best score; ties broken at random so equal replicas share work. */
export const argmax: Picker = (scores, n, random) => {
  let best = -Infinity;
  let chosen = 0;
  let ties = 0;
  for (let i = 0; i < n; i++) {
    const s = scores[i]!;
    if (s > best) {
      best = s;
      chosen = i;
      ties = 1;
    } else if (s === best) {
      // Reservoir sampling over the tied maxima: each ends up chosen with equal odds.
      ties++;
      if (random() * ties < 1) chosen = i;
    }
  }
  return chosen;
};
