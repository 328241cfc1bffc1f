import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { fmix32, hashString, rendezvousOwner, rendezvousTop, rendezvousWeight } from "../../src/scheduler/index.js";

describe("hashes", () => {
  it("hashString is a deterministic uint32 that spreads similar keys", () => {
    assert.equal(hashString("abc"), hashString("abc"));
    assert.notEqual(hashString("abc"), hashString("abd"));
    assert.notEqual(hashString(""), hashString("", 1));
    const h = hashString("user-1");
    assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    assert.equal(fmix32(0), 0);
    assert.notEqual(fmix32(1), 1);
  });
});

describe("rendezvous affinity", () => {
  it("spreads keys evenly over replicas", () => {
    const n = 8;
    const counts = new Array<number>(n).fill(0);
    for (let k = 0; k < 16_000; k++) counts[rendezvousOwner(hashString(`session-${k}`), n)]!++;
    for (const c of counts) assert.ok(Math.abs(c - 2000) < 200, String(counts));
  });

  it("removing one replica moves only the keys it held", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.nat(), (n, gone0) => {
        const gone = gone0 % n;
        for (let k = 0; k < 300; k++) {
          const key = hashString(`k${k}`);
          const before = rendezvousOwner(key, n);
          const after = rendezvousOwner(key, n, (r) => r !== gone);
          if (before !== gone) assert.equal(after, before, `key ${k} moved from ${before} though ${gone} left`);
          else assert.notEqual(after, gone);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("adding a replica takes keys only for itself", () => {
    for (let k = 0; k < 2000; k++) {
      const key = hashString(`k${k}`);
      const before = rendezvousOwner(key, 10);
      const after = rendezvousOwner(key, 11);
      assert.ok(after === before || after === 10);
    }
  });

  it("rendezvousTop lists the owner, then its runner-up, ...", () => {
    const out = new Int32Array(3);
    const w = new Float64Array(3);
    for (let k = 0; k < 200; k++) {
      const key = hashString(`x${k}`);
      assert.equal(rendezvousTop(key, 50, 3, out, w), 3);
      const owner = rendezvousOwner(key, 50);
      assert.equal(out[0], owner);
      assert.equal(out[1], rendezvousOwner(key, 50, (r) => r !== owner));
      assert.ok(w[0]! >= w[1]! && w[1]! >= w[2]!);
      assert.equal(w[0], rendezvousWeight(key, owner));
    }
    assert.equal(rendezvousTop(1, 2, 3, out, w), 2);
    assert.equal(rendezvousOwner(1, 0), -1);
  });
});
