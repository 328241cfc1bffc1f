import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { PrefixIndex } from "../../src/scheduler/prefix-index.js";

const out = (n = 16): { r: Int32Array; c: Int32Array } => ({ r: new Int32Array(n), c: new Int32Array(n) });

function matches(index: PrefixIndex, chain: number[], limit = 16): [number, number][] {
  const o = out(limit);
  const k = index.match(chain, o.r, o.c, limit);
  return Array.from({ length: k }, (_, i) => [o.r[i]!, o.c[i]!]);
}

describe("PrefixIndex: per-replica LRU", () => {
  it("keeps at most its capacity, evicting the least recently used", () => {
    const ix = new PrefixIndex({ defaultCapacityBlocks: 3 });
    ix.record(0, [1]);
    ix.record(0, [2]);
    ix.record(0, [3]);
    assert.deepEqual(ix.blocksOf(0), [3, 2, 1]);
    ix.record(0, [1]); // touch: 1 becomes the most recent
    assert.deepEqual(ix.blocksOf(0), [1, 3, 2]);
    ix.record(0, [4]); // evicts 2, the least recent
    assert.deepEqual(ix.blocksOf(0), [4, 1, 3]);
    assert.equal(ix.sizeOf(0), 3);
    assert.equal(ix.holds(0, 2), false);
    assert.equal(ix.blockCount, 3, "block 2 left the global table with its last holder");
  });

  it("records a chain last block first, so the head is the most recent and tails are evicted first", () => {
    const ix = new PrefixIndex({ defaultCapacityBlocks: 4 });
    ix.record(0, [10, 11, 12]);
    assert.deepEqual(ix.blocksOf(0), [10, 11, 12]);
    ix.record(0, [20, 21]); // evicts 12: the tail of the older chain, never its head
    assert.deepEqual(ix.blocksOf(0), [20, 21, 10, 11]);
    assert.deepEqual(matches(ix, [10, 11, 12]), [[0, 2]]);
    ix.record(0, [30]); // then 11
    assert.deepEqual(matches(ix, [10, 11, 12]), [[0, 1]]);
  });

  it("keeps the leading blocks of a chain longer than its capacity", () => {
    const ix = new PrefixIndex({ defaultCapacityBlocks: 2 });
    ix.record(5, [1, 2, 3, 4]);
    assert.deepEqual(ix.blocksOf(5), [1, 2]);
    assert.deepEqual(matches(ix, [1, 2, 3, 4]), [[5, 2]]);
  });

  it("setCapacity per replica, shrinking evicts at once; zero holds nothing", () => {
    const ix = new PrefixIndex({ defaultCapacityBlocks: 8 });
    ix.record(0, [1, 2, 3, 4]);
    ix.setCapacity(0, 2);
    assert.deepEqual(ix.blocksOf(0), [1, 2]);
    ix.setCapacity(1, 0);
    ix.record(1, [1, 2]);
    assert.equal(ix.sizeOf(1), 0);
    assert.equal(ix.capacityOf(1), 0);
    ix.setCapacity(2, Infinity);
    assert.equal(ix.capacityOf(2), Infinity);
    assert.throws(() => ix.setCapacity(0, -1), /capacity/);
    assert.throws(() => ix.record(-1, [1]), /replica/);
    assert.throws(() => ix.record(0, [1.5]), /block hash/);
  });

  it("removeReplica forgets its blocks and frees those no one else holds", () => {
    const ix = new PrefixIndex();
    ix.record(0, [1, 2]);
    ix.record(1, [1, 3]);
    ix.removeReplica(0);
    assert.equal(ix.sizeOf(0), 0);
    assert.equal(ix.blockCount, 2);
    assert.deepEqual(matches(ix, [1, 2]), [[1, 1]]);
    ix.clear();
    assert.equal(ix.entryCount, 0);
    assert.equal(ix.blockCount, 0);
  });
});

describe("PrefixIndex: leading-match semantics", () => {
  it("counts leading blocks only: a replica holding blocks 2 and 3 but not 1 matches 0", () => {
    const ix = new PrefixIndex();
    ix.record(0, [102, 103]); // a chain recorded from its middle
    ix.record(1, [101, 102, 103]);
    ix.record(2, [101]);
    assert.deepEqual(matches(ix, [101, 102, 103]), [[1, 3], [2, 1]]);
    assert.equal(ix.leadingBlocks(0, [101, 102, 103]), 0);
    assert.equal(ix.leadingBlocks(1, [101, 102, 103]), 3);
    assert.equal(ix.leadingBlocks(1, [101, 102, 999]), 2);
    assert.equal(ix.leadingBlocks(7, [101]), 0, "a replica never seen");
    assert.deepEqual(matches(ix, [102, 103]), [[0, 2], [1, 2]].sort((a, b) => b[1]! - a[1]! || (a[0] === 1 ? -1 : 1)));
  });

  it("sorts best first and honours the limit", () => {
    const ix = new PrefixIndex();
    ix.record(3, [1, 2]);
    ix.record(4, [1, 2, 3, 4]);
    ix.record(5, [1]);
    ix.record(6, [1, 2, 3]);
    assert.deepEqual(matches(ix, [1, 2, 3, 4, 5]), [[4, 4], [6, 3], [3, 2], [5, 1]]);
    assert.deepEqual(matches(ix, [1, 2, 3, 4, 5], 2), [[4, 4], [6, 3]]);
    assert.deepEqual(matches(ix, [9, 1, 2]), [], "no one holds the first block");
    assert.deepEqual(matches(ix, []), []);
  });

  it("breaks ties by recency: the replica that most recently served the prefix first", () => {
    const ix = new PrefixIndex();
    ix.record(1, [1, 2]);
    ix.record(2, [1, 2]);
    ix.record(3, [1, 2]);
    assert.deepEqual(matches(ix, [1, 2], 2), [[3, 2], [2, 2]]);
    ix.record(1, [1, 2]);
    assert.deepEqual(matches(ix, [1, 2], 1), [[1, 2]]);
  });

  it("stays exact when a block in the middle of a run was evicted", () => {
    const ix = new PrefixIndex({ defaultCapacityBlocks: 3 });
    ix.record(0, [1, 2, 3]);
    ix.record(0, [3]); // 3 is now the most recent, then 1, 2: 2 is the LRU tail... but 3 extends 2
    ix.record(0, [9]); // evicts 2
    assert.deepEqual(ix.blocksOf(0), [9, 3, 1]);
    assert.equal(ix.leadingBlocks(0, [1, 2, 3]), 1);
    assert.deepEqual(matches(ix, [1, 2, 3]), [[0, 1]]);
  });

  // A reference: per replica an array, most recent first; match by walking each chain from block 0.
  class Reference {
    readonly lru = new Map<number, number[]>();
    constructor(readonly cap: number) {}
    record(r: number, chain: readonly number[]): void {
      const l = this.lru.get(r) ?? [];
      for (let d = Math.min(chain.length, this.cap) - 1; d >= 0; d--) {
        const i = l.indexOf(chain[d]!);
        if (i >= 0) l.splice(i, 1);
        l.unshift(chain[d]!);
        if (l.length > this.cap) l.pop();
      }
      this.lru.set(r, l);
    }
    leading(r: number, chain: readonly number[]): number {
      const l = this.lru.get(r) ?? [];
      let i = 0;
      while (i < chain.length && l.includes(chain[i]!)) i++;
      return i;
    }
  }

  it("agrees with a reference model on random prefix-sharing traffic", () => {
    // Chains from a small trie of "conversations": the hash of block d is the id of the prefix ending there.
    const arb = fc.record({
      cap: fc.integer({ min: 1, max: 12 }),
      ops: fc.array(
        fc.record({
          replica: fc.integer({ min: 0, max: 7 }),
          path: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 10 }),
          from: fc.integer({ min: 0, max: 3 }), // > 0: record a suffix of the chain (the walk path)
          query: fc.boolean(),
        }),
        { minLength: 1, maxLength: 120 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ cap, ops }) => {
        const ids = new Map<string, number>();
        const chainOf = (path: number[]): number[] =>
          path.map((_, d) => {
            const key = path.slice(0, d + 1).join(".");
            let id = ids.get(key);
            if (id === undefined) ids.set(key, (id = ids.size * 7919 + 13));
            return id;
          });
        const ix = new PrefixIndex({ defaultCapacityBlocks: cap });
        const ref = new Reference(cap);
        for (const op of ops) {
          const chain = chainOf(op.path);
          if (op.query) {
            const got = matches(ix, chain, 4);
            const want = [...Array(8).keys()].map((r) => [r, ref.leading(r, chain)] as [number, number]).filter(([, c]) => c > 0);
            want.sort((a, b) => b[1] - a[1]);
            assert.deepEqual(got.map(([, c]) => c), want.slice(0, 4).map(([, c]) => c), `counts for ${chain}`);
            for (const [r, c] of got) assert.equal(c, ref.leading(r, chain), `replica ${r}`);
            for (let r = 0; r < 8; r++) assert.equal(ix.leadingBlocks(r, chain), ref.leading(r, chain));
          } else {
            const part = chain.slice(Math.min(op.from, chain.length - 1));
            ix.record(op.replica, part);
            ref.record(op.replica, part);
            for (let r = 0; r < 8; r++) assert.deepEqual(ix.blocksOf(r), ref.lru.get(r) ?? []);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("stays consistent under heavy churn (table growth, deletions, id reuse)", () => {
    let seed = 17;
    const random = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const ix = new PrefixIndex({ defaultCapacityBlocks: 40 });
    const ref = new Reference(40);
    // conversations: chain = shared root, then per-conversation ids, growing turn by turn
    const convs: number[][] = [];
    let next = 1_000_000;
    for (let k = 0; k < 6000; k++) {
      let chain: number[];
      if (convs.length > 0 && random() < 0.5) {
        const c = convs[Math.floor(random() * convs.length)]!;
        chain = [...c, next++, next++];
        convs.push(chain);
      } else {
        chain = [5, next++, next++, next++];
        convs.push(chain);
      }
      const r = Math.floor(random() * 120);
      ix.record(r, chain);
      ref.record(r, chain);
      if (k % 50 === 0) {
        const q = convs[Math.floor(random() * convs.length)]!;
        for (let rr = 0; rr < 120; rr += 7) assert.equal(ix.leadingBlocks(rr, q), ref.leading(rr, q));
        const got = matches(ix, q, 3);
        for (const [rr, c] of got) assert.equal(c, ref.leading(rr, q));
        const best = Math.max(0, ...[...Array(120).keys()].map((rr) => ref.leading(rr, q)));
        assert.equal(got[0]?.[1] ?? 0, best);
      }
    }
    let total = 0;
    for (let r = 0; r < 120; r++) {
      assert.deepEqual(ix.blocksOf(r), ref.lru.get(r) ?? []);
      total += ix.sizeOf(r);
    }
    assert.equal(ix.entryCount, total);
  });

  it("finds the long match among thousands of holders of a hot first block without visiting them all", () => {
    const ix = new PrefixIndex();
    for (let r = 0; r < 5000; r++) ix.record(r, [1, 1000 + r]); // everyone holds the system prompt
    ix.record(4321, [1, 2, 3, 4]);
    assert.deepEqual(matches(ix, [1, 2, 3, 4, 5], 3).slice(0, 1), [[4321, 4]]);
    assert.equal(matches(ix, [1, 2, 3, 4, 5], 3).length, 3);
  });
});
