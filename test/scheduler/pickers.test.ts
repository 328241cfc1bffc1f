import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { argmax, powerOfTwo, roundRobinPicker, softmax } from "../../src/scheduler/index.js";

/** A random source that replays the given numbers. */
const dice = (...xs: number[]): (() => number) => {
  let i = 0;
  return () => {
    if (i >= xs.length) throw new Error("dice ran out");
    return xs[i++]!;
  };
};
const lcg = (seed: number): (() => number) => {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
};

describe("argmax", () => {
  it("takes the best score", () => {
    assert.equal(argmax([0.1, 0.7, 0.3], 3, () => 0.99), 1);
    assert.equal(argmax([-3, -1, -2], 3, () => 0.99), 1);
  });
});

describe("power of two choices", () => {
  it("draws i = ⌊u₁·n⌋ and j = ⌊u₂·(n−1)⌋ shifted past i, then takes the better", () => {
    const s = [0.1, 0.9, 0.5, 0.3];
    // i = ⌊0.5·4⌋ = 2; j = ⌊0.1·3⌋ = 0 → candidates 2 (0.5) and 0 (0.1): 2
    assert.equal(powerOfTwo(s, 4, dice(0.5, 0.1)), 2);
    // i = ⌊0.0·4⌋ = 0; j = ⌊0.0·3⌋ = 0 → shifted to 1 → 1 (0.9) beats 0 (0.1)
    assert.equal(powerOfTwo(s, 4, dice(0, 0)), 1);
    // i = 3 (0.3); j = ⌊0.99·3⌋ = 2 → 2 (0.5)
    assert.equal(powerOfTwo(s, 4, dice(0.99, 0.99)), 2);
  });
  it("breaks a tie with a third draw", () => {
    assert.equal(powerOfTwo([1, 1], 2, dice(0, 0, 0.2)), 0);
    assert.equal(powerOfTwo([1, 1], 2, dice(0, 0, 0.7)), 1);
  });
  it("returns 0 for a single candidate without drawing", () => {
    assert.equal(powerOfTwo([5], 1, dice()), 0);
  });
  it("never picks the worst of three or more, and picks the best about 2/n + ... of the time", () => {
    const random = lcg(7);
    const counts = [0, 0, 0];
    for (let k = 0; k < 30_000; k++) counts[powerOfTwo([0.1, 0.5, 0.9], 3, random)]!++;
    assert.equal(counts[0], 0);
    // the best wins whenever it is drawn: 2 of the 3 pairs
    assert.ok(Math.abs(counts[2]! / 30_000 - 2 / 3) < 0.02, String(counts));
  });
});

describe("softmax", () => {
  it("samples i with probability ∝ exp((sᵢ − max) / T)", () => {
    const s = [0, Math.log(3)]; // with T = 1: weights 1 and 3 → P = 1/4, 3/4
    const p = softmax(1);
    assert.equal(p(s, 2, () => 0.24), 0);
    assert.equal(p(s, 2, () => 0.26), 1);
    const random = lcg(11);
    let ones = 0;
    for (let k = 0; k < 40_000; k++) ones += p(s, 2, random);
    assert.ok(Math.abs(ones / 40_000 - 0.75) < 0.01, String(ones));
  });
  it("is argmax at T = 0 and nearly uniform at large T", () => {
    assert.equal(softmax(0), argmax);
    const random = lcg(3);
    const counts = [0, 0, 0];
    const p = softmax(1e6);
    for (let k = 0; k < 30_000; k++) counts[p([0, 0.5, 1], 3, random)]!++;
    for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, String(counts));
  });
  it("rejects a negative or infinite temperature", () => {
    assert.throws(() => softmax(-1), /temperature/);
    assert.throws(() => softmax(Infinity), /temperature/);
  });
  it("handles -Infinity scores and a single candidate", () => {
    assert.equal(softmax(0.1)([-Infinity, 2], 2, () => 0.999), 1);
    assert.equal(softmax(0.1)([7], 1, dice()), 0);
  });
});

describe("round robin", () => {
  it("cycles k mod n, each picker with its own counter", () => {
    const a = roundRobinPicker();
    const b = roundRobinPicker();
    assert.deepEqual([0, 1, 2, 3].map(() => a([0, 0, 0], 3, Math.random)), [0, 1, 2, 0]);
    assert.equal(b([0, 0, 0], 3, Math.random), 0);
  });
});
