/**
 * Candidate sampling for large fleets ("power of d choices"). Building a
 * Candidate for every one of 10,000 replicas on every request costs more than
 * the decision itself; routing among k replicas drawn at random keeps the
 * decision cost flat in fleet size, and with k of 8-16 balances load almost
 * as well as a full scan (Mitzenmacher, "The Power of Two Choices in
 * Randomized Load Balancing", 2001). Fleets of at most k replicas are scanned
 * whole, so small fleets route exactly as before.
 */

/** Candidates drawn per decision when a caller has no reason to choose otherwise. */
export const DEFAULT_SAMPLE_SIZE = 16;

/**
 * Writes min(n, k) distinct replica indices in [0, n) into `out` and returns
 * how many it wrote. With n <= k they are 0..n-1 in order; otherwise a
 * uniformly random k-subset (Floyd's algorithm: k draws, no allocation, no
 * rejection loop). `random` returns [0, 1).
 */
export function sampleCandidates(n: number, k: number, random: () => number, out: { [i: number]: number; readonly length: number }): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`replica count must be a non-negative integer, got ${n}`);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`sample size must be a positive integer, got ${k}`);
  const m = Math.min(n, k);
  if (out.length < m) throw new RangeError(`output holds ${out.length} indices; ${m} are needed`);
  if (n <= k) {
    for (let i = 0; i < n; i++) out[i] = i;
    return n;
  }
  // Floyd: for j from n-k to n-1, draw t in [0, j]; take t unless already taken, else take j.
  let count = 0;
  for (let j = n - k; j < n; j++) {
    const t = Math.floor(random() * (j + 1));
    let taken = false;
    for (let i = 0; i < count; i++) {
      if (out[i] === t) {
        taken = true;
        break;
      }
    }
    out[count++] = taken ? j : t;
  }
  return count;
}
