/**
 * Small non-cryptographic hashes for routing: 32-bit integer mixing (the
 * MurmurHash3 finalizer), string hashing, and rendezvous (highest random
 * weight) hashing for session affinity. Deterministic across processes and
 * platforms: only 32-bit integer arithmetic (Math.imul, shifts).
 */

/** MurmurHash3's 32-bit finalizer: every input bit flips each output bit with probability ~1/2. Returns a uint32. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uint32 hash of a string's UTF-16 code units (Murmur3-style body, fmix32 finish). */
export function hashString(s: string, seed = 0): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) {
    let k = Math.imul(s.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return fmix32(h ^ s.length);
}

/**
 * Rendezvous weight of (key, replica) in [0, 1). Every key ranks every replica
 * by this weight and goes to the highest-ranked one that can serve, so losing
 * a replica moves only the keys it held, each to its own runner-up
 * (Thaler and Ravishankar, "Using name-based mappings to increase hit
 * rates", 1998).
 */
export function rendezvousWeight(keyHash: number, replicaKey: number): number {
  return fmix32(Math.imul(keyHash ^ 0x5bd1e995, 0x9e3779b1) ^ fmix32((replicaKey | 0) + 0x7f4a7c15)) / 4294967296;
}

/**
 * The rendezvous owner of `keyHash` among replicas 0..n-1 (replica keys are
 * the indices) for which `eligible` holds, or -1 if none does. O(n): for
 * fleets that fit a full scan, or done once per session and cached.
 */
export function rendezvousOwner(keyHash: number, n: number, eligible?: (replica: number) => boolean): number {
  let best = -1;
  let bestW = -1;
  for (let r = 0; r < n; r++) {
    if (eligible !== undefined && !eligible(r)) continue;
    const w = rendezvousWeight(keyHash, r);
    if (w > bestW) {
      bestW = w;
      best = r;
    }
  }
  return best;
}

/**
 * The `k` highest-ranked replicas of `keyHash` among 0..n-1, best first, into
 * `out`; returns how many were written (min(n, k, out.length)). O(n + n·k) worst
 * case, O(n) typically; allocation-free.
 */
export function rendezvousTop(keyHash: number, n: number, k: number, out: Int32Array, weights: Float64Array): number {
  const m = Math.min(n, k, out.length, weights.length);
  let count = 0;
  for (let r = 0; r < n; r++) {
    const w = rendezvousWeight(keyHash, r);
    if (count === m && (m === 0 || w <= weights[m - 1]!)) continue;
    // insertion into the sorted top list
    let j = count < m ? count++ : m - 1;
    while (j > 0 && weights[j - 1]! < w) {
      weights[j] = weights[j - 1]!;
      out[j] = out[j - 1]!;
      j--;
    }
    weights[j] = w;
    out[j] = r;
  }
  return count;
}
