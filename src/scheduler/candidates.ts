/**
 * Candidate generation at scale. Scoring all of 10,000 replicas per request
 * costs more than the decision is worth; scoring a random sample of k (power
 * of d choices, sample.ts) balances load but would miss the one replica that
 * holds a long prefix. So the candidates are the union of
 *   - the replicas holding the longest leading runs of the request's blocks
 *     (PrefixIndex.matchResolved, capped at `prefixLimit`, best first),
 *   - the request's top rendezvous replicas when it has an affinity key
 *     (`affinityReplicas` of them, so the owner's runner-up is there when the
 *     owner is down),
 *   - a uniform sample of `sample` replicas,
 * each with its matched leading blocks. Fleets of at most `sample` replicas
 * are taken whole. The prefix part costs what `match` costs (it follows
 * `prefixLimit`, not the fleet); the affinity part is O(n) hash evaluations,
 * paid only by requests that carry a key.
 */
import { rendezvousTop } from "./hash.js";
import type { PrefixIndex } from "./prefix-index.js";
import { DEFAULT_SAMPLE_SIZE, sampleCandidates } from "./sample.js";

export interface CandidateSelectorOptions {
  /** Random candidates per decision (default DEFAULT_SAMPLE_SIZE, 16). */
  readonly sample?: number;
  /** Prefix holders added per decision, best matches first (default 8). */
  readonly prefixLimit?: number;
  /** Top rendezvous replicas added for a request with an affinity key (default 2). */
  readonly affinityReplicas?: number;
}

export class CandidateSelector {
  readonly sample: number;
  readonly prefixLimit: number;
  readonly affinityReplicas: number;
  /** Replica indices of the last selection, [0, count). */
  readonly indices: Int32Array;
  /** Leading blocks each of them holds (0 without an index or blocks). */
  readonly prefixBlocks: Int32Array;
  #stamp = new Uint32Array(0);
  #epoch = 0;
  readonly #tmpR: Int32Array;
  readonly #tmpC: Int32Array;
  readonly #tmpW: Float64Array;

  constructor(opts: CandidateSelectorOptions = {}) {
    this.sample = opts.sample ?? DEFAULT_SAMPLE_SIZE;
    this.prefixLimit = opts.prefixLimit ?? 8;
    this.affinityReplicas = opts.affinityReplicas ?? 2;
    for (const [k, v] of [["sample", this.sample], ["prefixLimit", this.prefixLimit], ["affinityReplicas", this.affinityReplicas]] as const) {
      if (!Number.isInteger(v) || v < 0 || (k === "sample" && v < 1)) throw new RangeError(`${k} must be a ${k === "sample" ? "positive" : "non-negative"} integer, got ${v}`);
    }
    const most = this.sample + this.prefixLimit + this.affinityReplicas;
    this.indices = new Int32Array(most);
    this.prefixBlocks = new Int32Array(most);
    const tmp = Math.max(this.sample, this.prefixLimit, this.affinityReplicas);
    this.#tmpR = new Int32Array(tmp);
    this.#tmpC = new Int32Array(tmp);
    this.#tmpW = new Float64Array(tmp);
  }

  /** Most candidates one selection returns. */
  get capacity(): number {
    return this.indices.length;
  }

  /**
   * Selects candidates among replicas 0..n-1 into `indices` / `prefixBlocks`
   * and returns how many. `blocks` and `index` (the model's PrefixIndex) add
   * prefix holders; `affinityHash` (hashString of the request's affinity key)
   * adds its rendezvous owners. `random` returns [0, 1).
   */
  select(n: number, random: () => number, blocks?: ArrayLike<number>, index?: PrefixIndex, affinityHash?: number): number {
    if (n > this.#stamp.length) this.#stamp = new Uint32Array(Math.max(n, 2 * this.#stamp.length));
    if (++this.#epoch === 0xffffffff) {
      this.#stamp.fill(0);
      this.#epoch = 1;
    }
    const resolved = blocks !== undefined && index !== undefined && blocks.length > 0 ? index.resolve(blocks) > 0 : false;
    const stamp = this.#stamp;
    const epoch = this.#epoch;
    const idx = this.indices;
    const pre = this.prefixBlocks;
    let m = 0;
    // Prefix holders first, best first. `most` bounds what any other replica can hold:
    // nothing when the match found every holder, at most the weakest match otherwise.
    let most = 0;
    if (resolved) {
      const limit = n <= this.sample ? this.#tmpR.length : this.prefixLimit;
      const k = limit > 0 ? index!.matchResolved(this.#tmpR, this.#tmpC, limit) : 0;
      most = limit === 0 ? Infinity : k < limit ? 0 : this.#tmpC[k - 1]!;
      if (n > this.sample) {
        for (let j = 0; j < k; j++) {
          const r = this.#tmpR[j]!;
          if (r >= n || stamp[r] === epoch) continue;
          stamp[r] = epoch;
          idx[m] = r;
          pre[m++] = this.#tmpC[j]!;
        }
      } else {
        // Small fleet: every replica is a candidate, in index order; the match only fills in counts.
        for (let j = 0; j < k; j++) {
          const r = this.#tmpR[j]!;
          if (r < n) stamp[r] = epoch;
        }
        for (let r = 0; r < n; r++) {
          idx[m] = r;
          if (stamp[r] === epoch) {
            let c = 0;
            for (let j = 0; j < k; j++) if (this.#tmpR[j] === r) c = this.#tmpC[j]!;
            pre[m++] = c;
          } else pre[m++] = most === 0 ? 0 : index!.leadingResolved(r, most);
        }
        return m;
      }
    } else if (n <= this.sample) {
      for (let r = 0; r < n; r++) {
        idx[m] = r;
        pre[m++] = 0;
      }
      return m;
    }
    if (affinityHash !== undefined && this.affinityReplicas > 0) {
      const k = rendezvousTop(affinityHash, n, this.affinityReplicas, this.#tmpR, this.#tmpW);
      for (let j = 0; j < k; j++) {
        const r = this.#tmpR[j]!;
        if (stamp[r] === epoch) continue;
        stamp[r] = epoch;
        idx[m] = r;
        pre[m++] = most === 0 ? 0 : index!.leadingResolved(r, most);
      }
    }
    const k = sampleCandidates(n, this.sample, random, this.#tmpR);
    for (let j = 0; j < k; j++) {
      const r = this.#tmpR[j]!;
      if (stamp[r] === epoch) continue;
      stamp[r] = epoch;
      idx[m] = r;
      pre[m++] = most === 0 ? 0 : index!.leadingResolved(r, most);
    }
    return m;
  }
}
