import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BlockLru, PrefixCache } from "../../src/sim/lru.js";

describe("BlockLru", () => {
  it("evicts the least recently used block when over capacity", () => {
    const lru = new BlockLru(3);
    lru.insert(1);
    lru.insert(2);
    lru.insert(3);
    assert.equal(lru.touch(1), true); // 2 is now the oldest
    assert.equal(lru.insert(4), 1);
    assert.deepEqual([...lru.keys()], [3, 1, 4]);
    assert.equal(lru.has(2), false);
  });

  it("re-inserting a present block refreshes it without growing", () => {
    const lru = new BlockLru(2);
    lru.insert(1);
    lru.insert(2);
    assert.equal(lru.insert(1), 0);
    assert.equal(lru.size, 2);
    assert.equal(lru.evictOldest(), 2);
    assert.equal(lru.evictOldest(), 1);
    assert.equal(lru.evictOldest(), undefined);
  });

  it("with no capacity given never evicts; touch of an absent block says so", () => {
    const lru = new BlockLru();
    for (let i = 0; i < 10_000; i++) lru.insert(i);
    assert.equal(lru.size, 10_000);
    assert.equal(lru.touch(-1), false);
    assert.throws(() => new BlockLru(-1), /capacity/);
  });
});

describe("PrefixCache", () => {
  it("pins shared blocks by reference count and caches them when the last user leaves", () => {
    const c = new PrefixCache();
    const a = [10, 11, 12];
    const b = [10, 11, 20];
    assert.equal(c.missing(a, 0, 3), 3);
    c.acquire(a, 0, 3);
    assert.equal(c.leadingHits(b, 0, 3), 2);
    assert.equal(c.unpinned(b, 0, 3), 1);
    c.acquire(b, 0, 3);
    assert.equal(c.pinnedBlocks, 4);
    c.release(a, 0, 3);
    // 10 and 11 are still pinned by b; 12 is now cached and evictable.
    assert.equal(c.pinnedBlocks, 3);
    assert.equal(c.evictableBlocks, 1);
    assert.equal(c.evictOne(), true);
    assert.equal(c.has(12), false);
    assert.equal(c.evictOne(), false, "pinned blocks are never evicted");
    c.release(b, 0, 3);
    assert.equal(c.residentBlocks, 3);
    assert.equal(c.leadingHits(a, 0, 3), 2, "hits count along the chain until the first miss");
  });
});
