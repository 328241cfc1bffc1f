import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DEFAULT_SAMPLE_SIZE, sampleCandidates } from "../../src/scheduler/sample.js";
import { seededRandom } from "../../src/sim/random.js";

describe("sampleCandidates", () => {
  it("takes every replica, in order, when the fleet is no larger than k", () => {
    const out = new Int32Array(16);
    assert.equal(sampleCandidates(5, 16, () => 0.5, out), 5);
    assert.deepEqual([...out.subarray(0, 5)], [0, 1, 2, 3, 4]);
    assert.equal(sampleCandidates(0, 16, () => 0.5, out), 0);
    assert.equal(DEFAULT_SAMPLE_SIZE, 16);
  });

  it("draws k distinct indices in range (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 64 }), fc.integer(), (n, k, seed) => {
        const out = new Array<number>(k).fill(-1);
        const m = sampleCandidates(n, k, seededRandom(seed), out);
        assert.equal(m, Math.min(n, k));
        const got = out.slice(0, m);
        assert.equal(new Set(got).size, m);
        for (const i of got) assert.ok(Number.isInteger(i) && i >= 0 && i < n);
      }),
    );
  });

  it("gives every replica the same chance", () => {
    const n = 50;
    const k = 8;
    const counts = new Array<number>(n).fill(0);
    const out = new Int32Array(k);
    const random = seededRandom(3);
    const rounds = 20_000;
    for (let r = 0; r < rounds; r++) {
      sampleCandidates(n, k, random, out);
      for (const i of out) counts[i]!++;
    }
    const expected = (rounds * k) / n; // 3200
    for (const c of counts) assert.ok(Math.abs(c - expected) < expected * 0.1, `count ${c} vs ${expected}`);
  });

  it("rejects bad sizes and a too-small output", () => {
    assert.throws(() => sampleCandidates(-1, 4, Math.random, new Int32Array(4)), /replica count/);
    assert.throws(() => sampleCandidates(10, 0, Math.random, new Int32Array(4)), /sample size/);
    assert.throws(() => sampleCandidates(10, 8, Math.random, new Int32Array(4)), /output holds 4/);
  });
});
