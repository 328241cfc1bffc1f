/**
 * A coordination-free owner for every prefix: rendezvous hashing of the
 * prompt's first blocks over the replicas, with bounded load (Mirrokni,
 * Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018).
 *
 * A gateway's prefix index knows only the requests it routed itself, so
 * behind a load balancer that spreads one conversation's turns over several
 * gateways each index sees a fraction of it and cache-aware routing decays
 * as gateways are added (reported of SGLang's router). The owner needs no
 * shared state: every gateway computes the same replica for the same
 * conversation start from the request alone, as long as they agree on the
 * replicas (`Candidate.replicaKey`: a hash of the engine's URL, not of a
 * gateway's own numbering). A replica loaded past `loadFactor` times the
 * candidates' mean load is skipped for the next in rendezvous order, so a
 * hot prefix spills over instead of queueing, and does so the same way on
 * every gateway that sees the same loads.
 *
 * The key is the chained hash of the first `blocks` blocks (or of all of
 * them, for a shorter prompt): a conversation's later turns extend its
 * first, so they share it, while a template every conversation starts with
 * is shorter than it (Mooncake: every request shares block 0).
 */
import { rendezvousWeight } from "./hash.js";
import type { Candidate, Policy, RouteRequest, Scorer } from "./pipeline.js";
import { loadOf } from "./scorers.js";

export interface PrefixOwnerOptions {
  /** Leading blocks that name a conversation (default 2). */
  readonly blocks?: number;
  /** A replica above this multiple of the mean work per slot (plus one request's worth) is not an owner (default 1.1). */
  readonly loadFactor?: number;
}

/** The owner of `key` among the candidates at idx[0..m) (its `index`), or -1 when none is under the bound. */
export function ownerOf(key: number, candidates: readonly Candidate[], idx: ArrayLike<number>, m: number, loadFactor: number): number {
  let mean = 0;
  for (let j = 0; j < m; j++) mean += loadOf(candidates[idx[j]!]!);
  mean /= Math.max(1, m);
  let best = -1;
  let bestWeight = -1;
  for (let j = 0; j < m; j++) {
    const c = candidates[idx[j]!]!;
    // One request's worth of room over the bound, so an idle fleet does not exclude the owner of its first request.
    if (loadOf(c) > loadFactor * mean + 1 / Math.max(1, c.slots)) continue;
    const w = rendezvousWeight(key, c.replicaKey ?? c.index);
    if (w > bestWeight) {
      bestWeight = w;
      best = c.index;
    }
  }
  return best;
}

/** The conversation key of a request: its block hash at depth min(blocks, length); undefined without blocks. */
export function ownerKey(r: RouteRequest, blocks: number): number | undefined {
  const n = r.blocks?.length ?? 0;
  return n === 0 ? undefined : r.blocks![Math.min(blocks, n) - 1]!;
}

/** The conversation depth of the policy's prefix-owner scorer; undefined when it has none. */
export function ownerBlocksOf(policy: Policy): number | undefined {
  for (const { scorer } of policy.scorers) {
    const blocks = OWNER_BLOCKS.get(scorer);
    if (blocks !== undefined) return blocks;
  }
  return undefined;
}

/** Each prefix-owner scorer's depth: a caller that samples candidates adds the owners to them. */
const OWNER_BLOCKS = new WeakMap<Scorer, number>();

/** 1 for the owner of the request's conversation start, 0 for every other candidate (all 0 without blocks). */
export function prefixOwnerScorer(opts: PrefixOwnerOptions = {}): Scorer {
  const blocks = opts.blocks ?? 2;
  const loadFactor = opts.loadFactor ?? 1.1;
  if (!Number.isInteger(blocks) || blocks < 1) throw new RangeError(`prefix-owner blocks must be a positive integer, got ${blocks}`);
  if (!(loadFactor >= 1) || !Number.isFinite(loadFactor)) throw new RangeError(`prefix-owner loadFactor must be a finite number >= 1, got ${loadFactor}`);
  // Set by prepare() for the decision under way: route() is synchronous, and calls prepare before any score.
  let owner = -1;
  const scorer: Scorer = {
    name: "prefix-owner",
    readsPrefix: true,
    prepare: (candidates, idx, m, r) => {
      const key = ownerKey(r, blocks);
      owner = key === undefined ? -1 : ownerOf(key, candidates, idx, m, loadFactor);
    },
    score: (c) => (c.index === owner ? 1 : 0),
  };
  OWNER_BLOCKS.set(scorer, blocks);
  return scorer;
}
