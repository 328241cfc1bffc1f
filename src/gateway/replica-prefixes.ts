import type { Replica } from "../fleet/fleet.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";

/**
 * One model's prefix index across membership changes. The index numbers
 * replicas densely (it is built for the simulator's thousands); here each
 * replica keeps one number for as long as it is in the fleet, whatever
 * snapshot a request reads, and the number of a replica that left is wiped
 * before another takes it. So affinity survives replicas coming and going.
 */
export class ReplicaPrefixes {
  readonly index = new PrefixIndex();
  readonly #slots = new Map<Replica, number>();
  readonly #free: number[] = [];

  /** The replica's number in the index, given on first use. */
  slot(replica: Replica): number {
    let n = this.#slots.get(replica);
    if (n === undefined) {
      n = this.#free.pop() ?? this.#slots.size;
      this.#slots.set(replica, n);
    }
    return n;
  }

  /** The replica left: what it held is forgotten and its number is free. */
  release(replica: Replica): void {
    const n = this.#slots.get(replica);
    if (n === undefined) return;
    this.index.removeReplica(n);
    this.#slots.delete(replica);
    this.#free.push(n);
  }
}
