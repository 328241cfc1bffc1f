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

/**
 * Power of two choices: two distinct candidates drawn uniformly, the better
 * one taken (a tie goes to either with equal odds). Balances load nearly as
 * well as argmax while herding far less on stale scores (Mitzenmacher 2001).
 * Draws: i = ⌊u₁·n⌋, j = ⌊u₂·(n−1)⌋, shifted past i.
 */
export const powerOfTwo: Picker = (scores, n, random) => {
  if (n <= 1) return 0;
  const i = Math.min(n - 1, Math.floor(random() * n));
  let j = Math.min(n - 2, Math.floor(random() * (n - 1)));
  if (j >= i) j++;
  const a = scores[i]!;
  const b = scores[j]!;
  if (a > b) return i;
  if (b > a) return j;
  return random() < 0.5 ? i : j;
};

/**
 * Softmax sampling: candidate i with probability ∝ exp((sᵢ − max s) / T). T → 0
 * is argmax; large T is uniform. Spreads a burst of equal requests over
 * near-equal replicas instead of piling them on the single best. One draw,
 * no allocation (the weights are computed twice rather than stored).
 */
export function softmax(temperature: number): Picker {
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`softmax temperature must be a finite number >= 0, got ${temperature}`);
  if (temperature === 0) return argmax;
  return (scores, n, random) => {
    if (n <= 1) return 0;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (scores[i]! > max) max = scores[i]!;
    if (max === -Infinity) return Math.min(n - 1, Math.floor(random() * n));
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp((scores[i]! - max) / temperature);
    let u = random() * sum;
    for (let i = 0; i < n; i++) {
      u -= Math.exp((scores[i]! - max) / temperature);
      if (u < 0) return i;
    }
    // Rounding left a sliver: the last candidate with any weight.
    for (let i = n - 1; i >= 0; i--) if (scores[i]! > -Infinity) return i;
    return n - 1;
  };
}

/**
 * Round robin: the k-th call picks candidate k mod n. Stateful, so each call
 * returns a new picker with its own counter; with a stable candidate list
 * (every replica, in order) it cycles through them.
 */
export function roundRobinPicker(): Picker {
  let next = 0;
  return (_scores, n) => {
    if (n <= 0) return 0;
    const i = next % n;
    next = (next + 1) % 1_000_000_007;
    return i;
  };
}
