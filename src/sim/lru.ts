/**
 * Least-recently-used sets of block hashes, and the prefix cache of one
 * replica built from them.
 *
 * The LRU is a doubly linked list threaded through typed arrays, with a Map
 * from hash to slot: touching, inserting and evicting allocate nothing. (A
 * Map alone, iterated in insertion order, is an LRU too, but finding its
 * oldest key makes an iterator per eviction, and every key deleted from the
 * front stays a hole the next iterator walks over until the table is
 * rebuilt: with the host tier's thousands of blocks that cost more than the
 * rest of a simulation.)
 */
export class BlockLru {
  readonly capacity: number;
  readonly #slot = new Map<number, number>();
  #key: Float64Array;
  /** Towards the oldest / the youngest; -1 ends the list. */
  #older: Int32Array;
  #younger: Int32Array;
  #oldest = -1;
  #youngest = -1;
  /** Slots freed by deletion, chained through `#younger`; then never-used slots from `#fresh`. */
  #freeList = -1;
  #fresh = 0;

  /** `capacity` in blocks; Infinity for a cache that never evicts. */
  constructor(capacity = Infinity) {
    if (!(capacity >= 0)) throw new RangeError(`LRU capacity must be >= 0, got ${capacity}`);
    this.capacity = capacity;
    const initial = Math.max(1, Math.min(capacity, 1024));
    this.#key = new Float64Array(initial);
    this.#older = new Int32Array(initial);
    this.#younger = new Int32Array(initial);
  }

  get size(): number {
    return this.#slot.size;
  }

  has(hash: number): boolean {
    return this.#slot.has(hash);
  }

  /** Marks `hash` most recently used if present; returns whether it was. */
  touch(hash: number): boolean {
    const s = this.#slot.get(hash);
    if (s === undefined) return false;
    if (s !== this.#youngest) {
      this.#unlink(s);
      this.#linkYoungest(s);
    }
    return true;
  }

  /**
   * Inserts (or refreshes) `hash` as the most recently used block, evicting the
   * oldest while over capacity. Returns how many blocks were evicted.
   */
  insert(hash: number): number {
    return this.touch(hash) ? 0 : this.insertAbsent(hash);
  }

  /** `insert` for a hash the caller knows is absent (one Map lookup fewer on the hot paths). */
  insertAbsent(hash: number): number {
    let evicted = 0;
    while (this.#slot.size >= this.capacity && this.#oldest >= 0) {
      this.evictOldest();
      evicted++;
    }
    if (this.capacity < 1) return evicted + 1; // holds nothing: what comes in leaves at once
    const s = this.#allocate();
    this.#key[s] = hash;
    this.#slot.set(hash, s);
    this.#linkYoungest(s);
    return evicted;
  }

  delete(hash: number): boolean {
    const s = this.#slot.get(hash);
    if (s === undefined) return false;
    this.#remove(hash, s);
    return true;
  }

  /** Removes and returns the least recently used hash, or undefined when empty. */
  evictOldest(): number | undefined {
    const s = this.#oldest;
    if (s < 0) return undefined;
    const hash = this.#key[s]!;
    this.#remove(hash, s);
    return hash;
  }

  /** Oldest first. */
  *keys(): IterableIterator<number> {
    for (let s = this.#oldest; s >= 0; s = this.#younger[s]!) yield this.#key[s]!;
  }

  clear(): void {
    this.#slot.clear();
    this.#oldest = -1;
    this.#youngest = -1;
    this.#freeList = -1;
    this.#fresh = 0;
  }

  #remove(hash: number, s: number): void {
    this.#slot.delete(hash);
    this.#unlink(s);
    this.#younger[s] = this.#freeList;
    this.#freeList = s;
  }

  #allocate(): number {
    const s = this.#freeList;
    if (s >= 0) {
      this.#freeList = this.#younger[s]!;
      return s;
    }
    if (this.#fresh === this.#key.length) this.#grow();
    return this.#fresh++;
  }

  #grow(): void {
    const n = this.#key.length * 2;
    const key = new Float64Array(n);
    key.set(this.#key);
    const older = new Int32Array(n);
    older.set(this.#older);
    const younger = new Int32Array(n);
    younger.set(this.#younger);
    this.#key = key;
    this.#older = older;
    this.#younger = younger;
  }

  #unlink(s: number): void {
    const o = this.#older[s]!;
    const y = this.#younger[s]!;
    if (o >= 0) this.#younger[o] = y;
    else this.#oldest = y;
    if (y >= 0) this.#older[y] = o;
    else this.#youngest = o;
  }

  #linkYoungest(s: number): void {
    this.#older[s] = this.#youngest;
    this.#younger[s] = -1;
    if (this.#youngest >= 0) this.#younger[this.#youngest] = s;
    else this.#oldest = s;
    this.#youngest = s;
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
        this.#free.insertAbsent(h); // a pinned block is never in the free list
      }
    }
  }

  /** Evicts the least recently used cached block; false when none is evictable. */
  evictOne(): boolean {
    return this.#free.evictOldest() !== undefined;
  }

  /** Evicts the least recently used cached block and returns its hash (for a lower tier to keep); undefined when none is evictable. */
  evictOldest(): number | undefined {
    return this.#free.evictOldest();
  }

  clear(): void {
    this.#pinned.clear();
    this.#free.clear();
  }
}
