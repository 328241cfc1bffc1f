/**
 * The fleet-wide, approximate index of which replica has served which prefix
 * blocks (ARCHITECTURE.md, "Prefix awareness").
 *
 * It does not ask engines what they cache; it remembers what the router sent
 * where. Each replica has an LRU of block hashes sized to its KV capacity in
 * blocks, so the index forgets roughly when the engine would. A global table
 * maps each block to the replicas holding it, so `match` finds the replicas
 * with the longest leading run of a chain by looking at the holders of a few
 * deep blocks, never at all replicas.
 *
 * Layout (no objects per entry, nothing allocated per call once warm):
 * - an entry ("slot") is one (replica, block) pair, stored in parallel
 *   Int32Arrays: replica, block id, depth in the chain it was recorded with,
 *   its replica's LRU links and its block's holder-list links;
 * - blocks get small integer ids through an open-addressing table from the
 *   53-bit hash; a block id is freed when its last holder evicts it;
 * - a second table maps (block id, replica) to the slot, so "does R hold B"
 *   is one probe.
 *
 * Eviction keeps leading runs whole: `record` touches a chain from its last
 * block to its first, so in every replica's LRU a block is always more
 * recent than the blocks that extend it. The LRU tail is therefore a leaf
 * (no block after it is held), and a replica that holds block d of a chain,
 * recorded at depth d, holds blocks 0..d-1 too. `match` uses that to count a
 * run without walking it; where the depth disagrees (a chain recorded from
 * the middle, a hash collision) it walks from block 0, so the answer stays
 * exact: a replica holding blocks 2 and 3 but not 1 matches 0 blocks.
 */

const EMPTY = -1;
const TWO_32 = 4294967296;
/** Replica ids are below 2^20, so (block id, replica) packs into one safe integer. */
export const MAX_REPLICAS = 1 << 20;
const UNBOUNDED = 0x7fffffff;

/**
 * Open-addressing hash table from a non-negative safe integer to an int32:
 * linear probing, backward-shift deletion, key and value side by side in one
 * Float64Array so a probe touches one cache line.
 */
class KeyTable {
  #cells: Float64Array;
  #mask: number;
  #size = 0;

  constructor(capacity = 1024) {
    let c = 16;
    while (c < capacity) c *= 2;
    this.#cells = new Float64Array(2 * c).fill(EMPTY);
    this.#mask = c - 1;
  }

  get size(): number {
    return this.#size;
  }

  get capacity(): number {
    return this.#mask + 1;
  }

  #home(key: number): number {
    let h = (key >>> 0) ^ Math.imul((key / TWO_32) >>> 0, 0x9e3779b1);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.#mask;
  }

  /** The value stored under `key`, or -1. */
  get(key: number): number {
    const cells = this.#cells;
    const mask = this.#mask;
    let i = this.#home(key);
    for (;;) {
      const k = cells[2 * i]!;
      if (k === key) return cells[2 * i + 1]!;
      if (k === EMPTY) return -1;
      i = (i + 1) & mask;
    }
  }

  set(key: number, value: number): void {
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow();
    const cells = this.#cells;
    const mask = this.#mask;
    let i = this.#home(key);
    for (;;) {
      const k = cells[2 * i]!;
      if (k === key) {
        cells[2 * i + 1] = value;
        return;
      }
      if (k === EMPTY) {
        cells[2 * i] = key;
        cells[2 * i + 1] = value;
        this.#size++;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  delete(key: number): boolean {
    const cells = this.#cells;
    const mask = this.#mask;
    let i = this.#home(key);
    for (;;) {
      const k = cells[2 * i]!;
      if (k === EMPTY) return false;
      if (k === key) break;
      i = (i + 1) & mask;
    }
    this.#size--;
    // Backward shift: pull later members of the probe run into the hole unless they sit at or after their home.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const k = cells[2 * j]!;
      if (k === EMPTY) break;
      const home = this.#home(k);
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      cells[2 * i] = k;
      cells[2 * i + 1] = cells[2 * j + 1]!;
      i = j;
    }
    cells[2 * i] = EMPTY;
    return true;
  }

  #grow(): void {
    const old = this.#cells;
    const c = 2 * (this.#mask + 1);
    this.#cells = new Float64Array(2 * c).fill(EMPTY);
    this.#mask = c - 1;
    this.#size = 0;
    for (let i = 0; i < old.length; i += 2) {
      const k = old[i]!;
      if (k !== EMPTY) this.set(k, old[i + 1]!);
    }
  }
}

function growInt32(a: Int32Array<ArrayBuffer>, min: number, fill?: number): Int32Array<ArrayBuffer> {
  let c = Math.max(16, a.length);
  while (c < min) c *= 2;
  if (c === a.length) return a;
  const b = new Int32Array(c);
  b.set(a);
  if (fill !== undefined) b.fill(fill, a.length);
  return b;
}

export interface PrefixIndexOptions {
  /**
   * Blocks a replica holds until `setCapacity` says otherwise (default 8192).
   * Set each replica's to its KV capacity in tokens / block tokens.
   */
  readonly defaultCapacityBlocks?: number;
}

export class PrefixIndex {
  readonly #defaultCap: number;

  // per replica
  #cap = new Int32Array(0);
  #lruHead = new Int32Array(0);
  #lruTail = new Int32Array(0);
  #held = new Int32Array(0);
  #seen = new Uint32Array(0);
  #epoch = 0;
  #replicas = 0;

  // per block id
  #blockHash = new Float64Array(0);
  #holders = new Int32Array(0);
  #holderHead = new Int32Array(0);
  /** The block before it in the chain it was last recorded in (a hint: checked against the query's hashes). */
  #parent = new Int32Array(0);
  #blockFree = EMPTY;
  #blockIds = 0;
  readonly #blocks = new KeyTable(1024);

  // per slot
  #sReplica = new Int32Array(0);
  #sBlock = new Int32Array(0);
  #sDepth = new Int32Array(0);
  #sPrev = new Int32Array(0);
  #sNext = new Int32Array(0);
  #sHPrev = new Int32Array(0);
  #sHNext = new Int32Array(0);
  #slotFree = EMPTY;
  #slotsUsed = 0;
  #slotIds = 0;
  readonly #pairs = new KeyTable(1024);

  // the chain last resolved
  #qBlocks = new Int32Array(64);
  #qLen = 0;

  constructor(opts: PrefixIndexOptions = {}) {
    const cap = opts.defaultCapacityBlocks ?? 8192;
    this.#defaultCap = PrefixIndex.#checkCapacity(cap);
  }

  static #checkCapacity(blocks: number): number {
    if (blocks === Infinity) return UNBOUNDED;
    if (!Number.isInteger(blocks) || blocks < 0) throw new RangeError(`capacity must be a non-negative integer number of blocks or Infinity, got ${blocks}`);
    return Math.min(blocks, UNBOUNDED);
  }

  static #checkReplica(replica: number): void {
    if (!Number.isInteger(replica) || replica < 0 || replica >= MAX_REPLICAS) throw new RangeError(`replica must be an integer in [0, ${MAX_REPLICAS}), got ${replica}`);
  }

  #ensureReplica(replica: number): void {
    if (replica < this.#replicas) return;
    const n = replica + 1;
    if (n > this.#cap.length) {
      const old = this.#cap.length;
      this.#cap = growInt32(this.#cap, n);
      this.#cap.fill(this.#defaultCap, old);
      this.#lruHead = growInt32(this.#lruHead, n, EMPTY);
      this.#lruTail = growInt32(this.#lruTail, n, EMPTY);
      this.#held = growInt32(this.#held, n, 0);
      const seen = new Uint32Array(this.#cap.length);
      seen.set(this.#seen);
      this.#seen = seen;
    }
    this.#replicas = n;
  }

  /** Replica ids seen so far, plus one. */
  get replicaCount(): number {
    return this.#replicas;
  }

  /** Distinct blocks held by at least one replica. */
  get blockCount(): number {
    return this.#blocks.size;
  }

  /** (replica, block) entries held, over all replicas. */
  get entryCount(): number {
    return this.#slotsUsed;
  }

  /** Approximate bytes of the typed arrays and tables behind the index. */
  get memoryBytes(): number {
    return (
      this.#slotIds * 7 * 4 +
      this.#blockIds * (8 + 4 + 4 + 4) +
      this.#cap.length * 5 * 4 +
      (this.#blocks.capacity + this.#pairs.capacity) * 16
    );
  }

  /** Sets how many blocks `replica` keeps (its KV capacity / block tokens), evicting its oldest if over. */
  setCapacity(replica: number, blocks: number): void {
    PrefixIndex.#checkReplica(replica);
    this.#ensureReplica(replica);
    this.#cap[replica] = PrefixIndex.#checkCapacity(blocks);
    while (this.#held[replica]! > this.#cap[replica]!) this.#evict(this.#lruTail[replica]!);
  }

  capacityOf(replica: number): number {
    if (replica >= this.#replicas) return this.#defaultCap === UNBOUNDED ? Infinity : this.#defaultCap;
    const c = this.#cap[replica]!;
    return c === UNBOUNDED ? Infinity : c;
  }

  /** Blocks `replica` holds now. */
  sizeOf(replica: number): number {
    return replica < this.#replicas ? this.#held[replica]! : 0;
  }

  /** Whether `replica` holds block `hash`. */
  holds(replica: number, hash: number): boolean {
    if (replica >= this.#replicas) return false;
    const b = this.#blocks.get(hash);
    return b >= 0 && this.#pairs.get(b * MAX_REPLICAS + replica) >= 0;
  }

  /** `replica`'s blocks, most recently used first (for tests and debugging). */
  blocksOf(replica: number): number[] {
    const out: number[] = [];
    if (replica >= this.#replicas) return out;
    for (let s = this.#lruHead[replica]!; s !== EMPTY; s = this.#sNext[s]!) out.push(this.#blockHash[this.#sBlock[s]!]!);
    return out;
  }

  /**
   * Notes that `replica` was sent a prompt with this block chain: it now holds
   * the chain's blocks (as many leading ones as its capacity allows), the
   * first block most recently used. Call after each routing decision. A chain
   * must start at the prompt's first block. Hashes must be integers in
   * [0, 2^53) (blockHashes, textBlockHashes and trace ids are).
   */
  record(replica: number, blocks: ArrayLike<number>): void {
    PrefixIndex.#checkReplica(replica);
    this.#ensureReplica(replica);
    const n = Math.min(blocks.length, this.#cap[replica]!);
    let child = EMPTY;
    for (let d = n - 1; d >= 0; d--) {
      const hash = blocks[d]!;
      if (!(hash >= 0 && Number.isSafeInteger(hash))) throw new RangeError(`block hash must be an integer in [0, 2^53), got ${hash} at ${d}`);
      // The chain just resolved (route, then record) names its blocks already.
      let b = d < this.#qLen ? this.#qBlocks[d]! : EMPTY;
      if (b === EMPTY || this.#blockHash[b] !== hash) b = this.#blocks.get(hash);
      if (b < 0) this.#insert(replica, (b = this.#newBlock(hash)), d, b * MAX_REPLICAS + replica);
      else this.#touch(replica, b, d);
      if (child !== EMPTY && this.#blockHash[child] === blocks[d + 1]) this.#parent[child] = b;
      child = b;
    }
    if (child !== EMPTY) this.#parent[child] = EMPTY;
  }

  /** Forgets everything `replica` holds (it restarted, failed, or left the fleet). */
  removeReplica(replica: number): void {
    if (replica >= this.#replicas || replica < 0) return;
    while (this.#lruTail[replica]! !== EMPTY) this.#evict(this.#lruTail[replica]!);
  }

  /** Forgets everything. */
  clear(): void {
    for (let r = 0; r < this.#replicas; r++) this.removeReplica(r);
  }

  #touch(replica: number, b: number, depth: number): void {
    const key = b * MAX_REPLICAS + replica;
    const s = this.#pairs.get(key);
    if (s >= 0) {
      this.#sDepth[s] = depth;
      this.#lruUnlink(s);
      this.#lruPushFront(replica, s);
      this.#holderUnlink(s);
      this.#holderPushFront(b, s);
      return;
    }
    this.#insert(replica, b, depth, key);
  }

  /** Adds (replica, b), known to be absent, as the replica's most recent block. */
  #insert(replica: number, b: number, depth: number, key: number): void {
    if (this.#held[replica]! >= this.#cap[replica]!) this.#evict(this.#lruTail[replica]!);
    const s = this.#newSlot();
    this.#sReplica[s] = replica;
    this.#sBlock[s] = b;
    this.#sDepth[s] = depth;
    this.#lruPushFront(replica, s);
    this.#holderPushFront(b, s);
    this.#holders[b]!++;
    this.#held[replica]!++;
    this.#pairs.set(key, s);
    this.#slotsUsed++;
  }

  #evict(s: number): void {
    const replica = this.#sReplica[s]!;
    const b = this.#sBlock[s]!;
    this.#lruUnlink(s);
    this.#holderUnlink(s);
    this.#pairs.delete(b * MAX_REPLICAS + replica);
    this.#held[replica]!--;
    this.#slotsUsed--;
    this.#sNext[s] = this.#slotFree;
    this.#slotFree = s;
    if (--this.#holders[b]! === 0) {
      this.#blocks.delete(this.#blockHash[b]!);
      this.#blockHash[b] = EMPTY;
      this.#holderHead[b] = this.#blockFree;
      this.#blockFree = b;
    }
  }

  #newBlock(hash: number): number {
    let b = this.#blockFree;
    if (b !== EMPTY) {
      this.#blockFree = this.#holderHead[b]!;
    } else {
      b = this.#blockIds++;
      if (b >= this.#holders.length) {
        const c = growInt32(this.#holders, b + 1).length;
        const h = new Float64Array(c);
        h.set(this.#blockHash);
        this.#blockHash = h;
        this.#holders = growInt32(this.#holders, c);
        this.#holderHead = growInt32(this.#holderHead, c);
        this.#parent = growInt32(this.#parent, c);
      }
    }
    this.#blockHash[b] = hash;
    this.#holders[b] = 0;
    this.#holderHead[b] = EMPTY;
    this.#parent[b] = EMPTY;
    this.#blocks.set(hash, b);
    return b;
  }

  #newSlot(): number {
    let s = this.#slotFree;
    if (s !== EMPTY) {
      this.#slotFree = this.#sNext[s]!;
      return s;
    }
    s = this.#slotIds++;
    if (s >= this.#sReplica.length) {
      const c = growInt32(this.#sReplica, s + 1).length;
      this.#sReplica = growInt32(this.#sReplica, c);
      this.#sBlock = growInt32(this.#sBlock, c);
      this.#sDepth = growInt32(this.#sDepth, c);
      this.#sPrev = growInt32(this.#sPrev, c);
      this.#sNext = growInt32(this.#sNext, c);
      this.#sHPrev = growInt32(this.#sHPrev, c);
      this.#sHNext = growInt32(this.#sHNext, c);
    }
    return s;
  }

  #lruUnlink(s: number): void {
    const r = this.#sReplica[s]!;
    const p = this.#sPrev[s]!;
    const n = this.#sNext[s]!;
    if (p === EMPTY) this.#lruHead[r] = n;
    else this.#sNext[p] = n;
    if (n === EMPTY) this.#lruTail[r] = p;
    else this.#sPrev[n] = p;
  }

  #lruPushFront(r: number, s: number): void {
    const h = this.#lruHead[r]!;
    this.#sPrev[s] = EMPTY;
    this.#sNext[s] = h;
    if (h === EMPTY) this.#lruTail[r] = s;
    else this.#sPrev[h] = s;
    this.#lruHead[r] = s;
  }

  #holderUnlink(s: number): void {
    const b = this.#sBlock[s]!;
    const p = this.#sHPrev[s]!;
    const n = this.#sHNext[s]!;
    if (p === EMPTY) this.#holderHead[b] = n;
    else this.#sHNext[p] = n;
    if (n !== EMPTY) this.#sHPrev[n] = p;
  }

  #holderPushFront(b: number, s: number): void {
    const h = this.#holderHead[b]!;
    this.#sHPrev[s] = EMPTY;
    this.#sHNext[s] = h;
    if (h !== EMPTY) this.#sHPrev[h] = s;
    this.#holderHead[b] = s;
  }

  /**
   * Looks up `blocks` for the `*Resolved` queries that follow, and returns how
   * many leading blocks are held by some replica: no replica's run is longer.
   * Binary search for the last block anyone holds (a few table probes), then
   * the blocks before it through each block's parent link, checked against
   * the chain's own hashes (a table probe only where a link is stale). Any
   * record, eviction or capacity change invalidates the resolution.
   */
  resolve(blocks: ArrayLike<number>): number {
    const n = blocks.length;
    if (n > this.#qBlocks.length) this.#qBlocks = growInt32(this.#qBlocks, n);
    const q = this.#qBlocks;
    const table = this.#blocks;
    // Largest p with block p-1 held somewhere and block p not (exact where holding is prefix-closed; checked below).
    let lo = 0;
    let hi = n;
    let last = EMPTY;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const b = table.get(blocks[mid]!);
      if (b >= 0) {
        lo = mid + 1;
        last = b;
      } else hi = mid;
    }
    if (lo === 0) {
      this.#qLen = 0;
      return 0;
    }
    q[lo - 1] = last;
    const parent = this.#parent;
    const hashOf = this.#blockHash;
    let len = lo;
    for (let i = lo - 1; i > 0; i--) {
      const h = blocks[i - 1]!;
      const b = q[i]!;
      let p = b >= 0 ? parent[b]! : EMPTY;
      if (p === EMPTY || hashOf[p] !== h) p = table.get(h);
      q[i - 1] = p;
      if (p < 0) len = i - 1;
    }
    this.#qLen = len;
    return len;
  }

  /**
   * Leading blocks of the resolved chain that `replica` holds, counted up to
   * `max` (when the caller knows the answer cannot exceed it): one probe per
   * block held, plus one unless `max` is reached.
   */
  leadingResolved(replica: number, max = this.#qLen): number {
    const len = Math.min(max, this.#qLen);
    if (len <= 0 || replica < 0 || replica >= this.#replicas) return 0;
    return this.#walk(replica, len);
  }

  /** Counts the leading blocks of the resolved chain `replica` holds, checking each, up to `max`. */
  #walk(replica: number, max: number): number {
    const q = this.#qBlocks;
    // A block every replica holds (a fleet-wide system prompt) needs no probe.
    let i = max > 0 && this.#holders[q[0]!] === this.#replicas ? 1 : 0;
    while (i < max && this.#pairs.get(q[i]! * MAX_REPLICAS + replica) >= 0) i++;
    return i;
  }

  /**
   * The replicas holding the longest leading runs of the resolved chain, best
   * first (ties: most recently recorded first), at most `limit` of them, into
   * `replicas` and `counts` (blocks matched, all > 0). Returns how many.
   * Visits the holders of the deepest blocks first and stops as soon as no
   * replica left could beat the ones found, so its cost follows `limit`, not
   * the fleet size.
   */
  matchResolved(replicas: Int32Array, counts: Int32Array, limit: number = Math.min(replicas.length, counts.length)): number {
    const cap = Math.min(limit, replicas.length, counts.length);
    if (cap <= 0 || this.#qLen === 0) return 0;
    if (++this.#epoch === 0xffffffff) {
      this.#seen.fill(0);
      this.#epoch = 1;
    }
    const epoch = this.#epoch;
    const seen = this.#seen;
    const q = this.#qBlocks;
    let found = 0;
    for (let d = this.#qLen - 1; d >= 0; d--) {
      if (found === cap && counts[cap - 1]! >= d + 1) break;
      for (let s = this.#holderHead[q[d]!]!; s !== EMPTY; s = this.#sHNext[s]!) {
        const r = this.#sReplica[s]!;
        if (seen[r] === epoch) continue;
        seen[r] = epoch;
        const c = this.#sDepth[s] === d ? d + 1 : this.#walk(r, d + 1);
        if (c === 0) continue;
        let pos: number;
        if (found < cap) pos = found++;
        else if (c > counts[cap - 1]!) pos = cap - 1;
        else continue;
        while (pos > 0 && counts[pos - 1]! < c) {
          counts[pos] = counts[pos - 1]!;
          replicas[pos] = replicas[pos - 1]!;
          pos--;
        }
        counts[pos] = c;
        replicas[pos] = r;
        if (found === cap && counts[cap - 1]! >= d + 1) break;
      }
    }
    return found;
  }

  /** resolve + matchResolved. */
  match(blocks: ArrayLike<number>, replicas: Int32Array, counts: Int32Array, limit?: number): number {
    this.resolve(blocks);
    return this.matchResolved(replicas, counts, limit);
  }

  /** resolve + leadingResolved: leading blocks of `blocks` that `replica` holds. */
  leadingBlocks(replica: number, blocks: ArrayLike<number>): number {
    this.resolve(blocks);
    return this.leadingResolved(replica);
  }
}
