import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CandidateSelector, PrefixIndex, hashString, rendezvousTop } from "../../src/scheduler/index.js";

const lcg = (seed: number): (() => number) => {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
};

const selected = (sel: CandidateSelector, m: number): Map<number, number> => {
  const out = new Map<number, number>();
  for (let j = 0; j < m; j++) out.set(sel.indices[j]!, sel.prefixBlocks[j]!);
  return out;
};

describe("CandidateSelector", () => {
  it("takes a small fleet whole, in order, with each replica's matched blocks", () => {
    const ix = new PrefixIndex();
    ix.record(2, [1, 2, 3]);
    ix.record(0, [1]);
    const sel = new CandidateSelector({ sample: 8 });
    const m = sel.select(4, lcg(1), [1, 2, 3, 4], ix);
    assert.deepEqual(Array.from(sel.indices.subarray(0, m)), [0, 1, 2, 3]);
    assert.deepEqual(Array.from(sel.prefixBlocks.subarray(0, m)), [1, 0, 3, 0]);
    assert.equal(sel.select(3, lcg(1)), 3, "no blocks: still every replica");
    assert.deepEqual(Array.from(sel.prefixBlocks.subarray(0, 3)), [0, 0, 0]);
  });

  it("at scale never misses the replica holding the prefix, and stays bounded", () => {
    const n = 10_000;
    const ix = new PrefixIndex();
    const random = lcg(5);
    for (let r = 0; r < n; r++) ix.record(r, [7, 100_000 + r]); // a system prompt everyone holds
    ix.record(6789, [7, 8, 9, 10]);
    ix.record(1234, [7, 8]);
    const sel = new CandidateSelector({ sample: 16, prefixLimit: 4 });
    for (let t = 0; t < 50; t++) {
      const m = sel.select(n, random, [7, 8, 9, 10, 11], ix);
      assert.ok(m <= 16 + 4 + 2);
      assert.equal(sel.indices[0], 6789);
      assert.equal(sel.prefixBlocks[0], 4);
      assert.equal(sel.indices[1], 1234);
      assert.equal(sel.prefixBlocks[1], 2);
      const got = selected(sel, m);
      assert.equal(got.size, m, "no replica twice");
      for (const [r, c] of got) {
        assert.ok(r >= 0 && r < n);
        assert.equal(c, ix.leadingBlocks(r, [7, 8, 9, 10, 11]), `replica ${r}`);
      }
    }
  });

  it("counts sampled replicas exactly and skips holders outside the fleet", () => {
    const ix = new PrefixIndex();
    for (let r = 0; r < 100; r++) if (r % 3 === 0) ix.record(r, [1, 2]);
    ix.record(150, [1, 2, 3]); // beyond n: ignored
    const sel = new CandidateSelector({ sample: 10, prefixLimit: 2 });
    const random = lcg(9);
    for (let t = 0; t < 30; t++) {
      const m = sel.select(100, random, [1, 2, 3], ix);
      for (const [r, c] of selected(sel, m)) {
        assert.ok(r < 100);
        assert.equal(c, r % 3 === 0 ? 2 : 0);
      }
    }
  });

  it("adds the affinity key's top rendezvous replicas", () => {
    const sel = new CandidateSelector({ sample: 4, affinityReplicas: 2 });
    const key = hashString("session-1");
    const top = new Int32Array(2);
    rendezvousTop(key, 1000, 2, top, new Float64Array(2));
    const m = sel.select(1000, lcg(3), undefined, undefined, key);
    const got = selected(sel, m);
    assert.ok(got.has(top[0]!) && got.has(top[1]!));
    assert.equal(m, got.size);
  });

  it("validates its sizes", () => {
    assert.throws(() => new CandidateSelector({ sample: 0 }), /sample/);
    assert.throws(() => new CandidateSelector({ prefixLimit: -1 }), /prefixLimit/);
  });
});
