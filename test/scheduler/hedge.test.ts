import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_HEDGE, FirstTokenLatency, hedgeCandidates, hedgeDelayMs } from "../../src/scheduler/hedge.js";
import type { Candidate } from "../../src/scheduler/pipeline.js";

const replica = (index: number, active: number, slots = 2, ready = true): Candidate => ({ index, ready, active, queued: 0, slots, maxQueue: 8, contextSize: undefined });

describe("first-token hedging rules", () => {
  it("the delay: a multiple of the recent p90, within its floor and ceiling; the ceiling until enough answers are seen (table)", () => {
    const cases: [string, number | undefined, number][] = [
      ["no history yet: the ceiling", undefined, 2_000],
      ["a fast fleet is not hedged for jitter: the floor", 10, 100],
      ["3x the p90", 200, 600],
      ["never past the ceiling", 5_000, 2_000],
    ];
    for (const [name, p90, delay] of cases) assert.equal(hedgeDelayMs(DEFAULT_HEDGE, p90), delay, name);
    assert.equal(hedgeDelayMs({ ...DEFAULT_HEDGE, enabled: false }, 10), Infinity, "off: never");
  });

  it("the p90 of the recent window, once it holds 4 answers", () => {
    const latency = new FirstTokenLatency();
    for (let i = 1; i <= 3; i++) latency.record(i * 10);
    assert.equal(latency.p90(), undefined, "3 answers are not enough");
    latency.record(40);
    assert.equal(latency.p90(), 40, "with few answers, the slowest");
    for (let i = 1; i <= 20; i++) latency.record(i);
    assert.equal(latency.p90(), 20, "24 answers: the 22nd fastest");
    // The window keeps the last 64: old slow answers age out.
    for (let i = 0; i < 64; i++) latency.record(1_000);
    for (let i = 0; i < 64; i++) latency.record(20);
    assert.equal(latency.p90(), 20);
  });

  it("a hedge goes only to a ready replica not yet tried, with a slot free now (table)", () => {
    const candidates = [replica(0, 0), replica(1, 2), replica(2, 1), replica(3, 0, 2, false)];
    const ready = (cs: Candidate[]): number[] => cs.filter((c) => c.ready).map((c) => c.index);
    assert.deepEqual(ready(hedgeCandidates(candidates, new Set([0]))), [2], "0 was tried, 1 is full, 3 is not ready");
    assert.deepEqual(ready(hedgeCandidates(candidates, new Set([0, 2]))), [], "nothing spare: no hedge");
  });
});
