/**
 * What other gateways placed, folded into this one's prefix index.
 *
 * Behind a load balancer a conversation's turns land on different gateways,
 * and each one's prefix index knows only the turns it routed itself
 * (prefix-index.ts). Gateways that tell each other where they sent each
 * prompt close that gap. A placement costs three numbers on the wire: the
 * replica, the prompt's depth in blocks and the hash of its last block.
 * Block hashes are chained, so the last one names the whole chain, but the
 * receiver cannot rebuild the chain from it. It keeps the placement as a
 * hint under that hash until a request whose prompt holds that block
 * arrives: that request carries every hash of the chain, and the receiver
 * records them for the replica then, as if it had routed the prompt itself.
 * A hint that no request ever extends costs one map entry until it ages out.
 *
 * The same class serves the live gateway (gateway/peer-sync.ts, over
 * Postgres LISTEN/NOTIFY) and the twin (sim/router-instances.ts), so the
 * twin's gateways share exactly what live ones do.
 */
import type { PrefixIndex } from "./prefix-index.js";

/** One point of a routing decision, as a gateway tells the others: `replica` got a prompt whose first `depth` blocks chain to `tail`. */
export interface Placement {
  readonly replica: number;
  readonly depth: number;
  readonly tail: number;
}

/**
 * The points a prompt of `blocks` routed to `replica` is told as: its
 * chain at depths 1, 2, 4, 8, … and at its last two blocks. A later prompt
 * that shares any run of L leading blocks with it meets a point at depth at
 * least L / 2, or the whole run where it extends the prompt (the next turn
 * of a conversation, which may end its predecessor's last, partial block
 * differently: hence the last two). log2(depth) + 2 points, not the chain.
 */
export function placementOf(replica: number, blocks: ArrayLike<number>): Placement[] {
  const depth = blocks.length;
  const points: Placement[] = [];
  for (let d = 1; d < depth - 1; d *= 2) points.push({ replica, depth: d, tail: blocks[d - 1]! });
  for (let d = Math.max(1, depth - 1); d <= depth; d++) points.push({ replica, depth: d, tail: blocks[d - 1]! });
  return points;
}

export class PeerHints {
  /** Tail hash → placement, oldest first (a Map keeps insertion order), at most `#capacity`. */
  readonly #hints = new Map<number, Placement>();
  readonly #capacity: number;

  /** `capacity`: hints kept before the oldest go (default 65,536: 7 MB of heap when full, measured with 53-bit tails). */
  constructor(capacity = 65_536) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`peer hints capacity must be a positive integer, got ${capacity}`);
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#hints.size;
  }

  /** A peer's placement arrived. A newer one for the same chain replaces the older (the chain moved). */
  add(p: Placement): void {
    if (!(p.depth >= 1) || !Number.isInteger(p.depth)) return;
    this.#hints.delete(p.tail);
    this.#hints.set(p.tail, p);
    if (this.#hints.size > this.#capacity) this.#hints.delete(this.#hints.keys().next().value!);
  }

  /**
   * Before routing a prompt of `blocks`: every hint on its chain, deepest
   * first, is recorded in `index` for its replica and dropped. `slotOf`
   * maps a placement's replica to the index's number for it; undefined (a
   * replica this gateway does not know, or no longer has) drops the hint.
   * Returns how many hints were applied.
   */
  apply(blocks: ArrayLike<number>, index: PrefixIndex, slotOf: (replica: number) => number | undefined = (r) => r): number {
    if (this.#hints.size === 0) return 0;
    let applied = 0;
    for (let d = blocks.length; d >= 1; d--) {
      const hint = this.#hints.get(blocks[d - 1]!);
      if (hint === undefined || hint.depth !== d) continue;
      this.#hints.delete(hint.tail);
      const slot = slotOf(hint.replica);
      if (slot === undefined) continue;
      index.record(slot, Array.prototype.slice.call(blocks, 0, d) as number[]);
      applied++;
    }
    return applied;
  }
}
