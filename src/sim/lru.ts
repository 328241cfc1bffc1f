/**
 * Least-recently-used sets of block hashes, and the prefix cache of one
 * replica built from them.
 *
 * A JavaScript Map iterates in insertion order, so deleting and re-inserting
 * a key moves it to the young end, and the first key is the oldest: an LRU
 * with no bookkeeping of its own.
 */
export class BlockLru {
  readonly #map = new Map<number, true>();
  readonly capacity: number;

  /** `capacity` in blocks; Infinity for a cache that never evicts. */
  constructor(capacity = Infinity) {
    if (!(capacity >= 0)) throw new RangeError(`LRU capacity must be >= 0, got ${capacity}`);
    this.capacity = capacity;
  }

  get size(): number {
    return this.#map.size;
  }

  has(hash: number): boolean {
    return this.#map.has(hash);
  }

  /** Marks `hash` most recently used if present; returns whether it was. */
  touch(hash: number): boolean {
    if (!this.#map.delete(hash)) return false;
    this.#map.set(hash, true);
    return true;
  }

  /**
   * Inserts (or refreshes) `hash` as the most recently used block, evicting the
   * oldest while over capacity. Returns how many blocks were evicted.
   */
  insert(hash: number): number {
    this.#map.delete(hash);
    this.#map.set(hash, true);
    let evicted = 0;
    while (this.#map.size > this.capacity) {
      this.evictOldest();
      evicted++;
    }
    return evicted;
  }

  delete(hash: number): boolean {
    return this.#map.delete(hash);
  }

  /** Removes and returns the least recently used hash, or undefined when empty. */
  evictOldest(): number | undefined {
    const first = this.#map.keys().next();
    if (first.done === true) return undefined;
    this.#map.delete(first.value);
    return first.value;
  }

  /** Oldest first. */
  keys(): IterableIterator<number> {
    return this.#map.keys();
  }

  clear(): void {
    this.#map.clear();
  }
}

/**
 * Blocks of KV a replica holds, by prefix hash: those in use by running
 * sequences (pinned, reference-counted: several sequences share a prefix) and
 * those left behind by finished ones (an LRU, evicted when memory is needed).
 * This is vLLM's automatic prefix caching reduced to its accounting.
 */
export class PrefixCache {
  readonly #pinned = new Map<number, number>();
  readonly #free = new BlockLru();

  /** Blocks resident in KV: pinned plus cached. */
  get residentBlocks(): number {
    return this.#pinned.size + this.#free.size;
  }
  get pinnedBlocks(): number {
    return this.#pinned.size;
  }
  /** Blocks that can be evicted to make room. */
  get evictableBlocks(): number {
    return this.#free.size;
  }

  has(hash: number): boolean {
    return this.#pinned.has(hash) || this.#free.has(hash);
  }

  /** How many blocks of `blocks[start, end)` are resident, counting from the start until the first miss. */
  leadingHits(blocks: ArrayLike<number>, start: number, end: number): number {
    let i = start;
    while (i < end && this.has(blocks[i]!)) i++;
    return i - start;
  }

  /** How many blocks of `blocks[start, end)` are not resident (each would need a new block of memory). */
  missing(blocks: ArrayLike<number>, start: number, end: number): number {
    let n = 0;
    for (let i = start; i < end; i++) if (!this.has(blocks[i]!)) n++;
    return n;
  }

  /** How many blocks of the range no running sequence pins (each would take memory out of the evictable pool, or new memory). */
  unpinned(blocks: ArrayLike<number>, start: number, end: number): number {
    let n = 0;
    for (let i = start; i < end; i++) if (!this.#pinned.has(blocks[i]!)) n++;
    return n;
  }

  /** Pins every block of the range (a running sequence now uses it). */
  acquire(blocks: ArrayLike<number>, start: number, end: number): void {
    const pinned = this.#pinned;
    for (let i = start; i < end; i++) {
      const h = blocks[i]!;
      const refs = pinned.get(h);
      if (refs !== undefined) pinned.set(h, refs + 1);
      else {
        this.#free.delete(h);
        pinned.set(h, 1);
      }
    }
  }

  /** Unpins the range; blocks no sequence uses any more become cached, youngest last. */
  release(blocks: ArrayLike<number>, start: number, end: number): void {
    const pinned = this.#pinned;
    for (let i = start; i < end; i++) {
      const h = blocks[i]!;
      const refs = pinned.get(h);
      if (refs === undefined) continue;
      if (refs > 1) pinned.set(h, refs - 1);
      else {
        pinned.delete(h);
        this.#free.insert(h);
      }
    }
  }

  /** Evicts the least recently used cached block; false when none is evictable. */
  evictOne(): boolean {
    return this.#free.evictOldest() !== undefined;
  }

  clear(): void {
    this.#pinned.clear();
    this.#free.clear();
  }
}
