/**
 * What the planner knows before a replay (sim/plan-bound.ts), as tables:
 * the workload's totals (prefix blocks seen before are cached, the window
 * a request meeting the objective can finish in), the capacity bound, the
 * idle bound's refusal of a request longer than a replica's context, and
 * the estimate's rule (the fewest replicas whose load keeps the share's
 * slowdown budget).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveSimFleet } from "../../src/sim/fleet-file.js";
import { aloneOf, budgetsOf, countBound, countEstimate, idleShare, workloadOf, type Budgets, type Workload } from "../../src/sim/plan-bound.js";
import type { Trace } from "../../src/sim/traces.js";

/** Three requests: the second shares its first two 512-token blocks with the first, the third only the first block (then a new one). */
const trace: Trace = {
  name: "three",
  count: 3,
  arrivalMs: Float64Array.from([0, 1000, 4000]),
  inputTokens: Int32Array.from([1536, 2048, 1024]),
  outputTokens: Int32Array.from([10, 1, 100]),
  blockOffsets: Int32Array.from([0, 3, 7, 9]),
  blockIds: Int32Array.from([1, 2, 3, 1, 2, 4, 5, 1, 6]),
  blockTokens: 512,
};
const slo = { ttftMs: 2000, tpotMs: 50, share: 0.9 };

describe("the workload's totals", () => {
  const w = workloadOf(trace, slo);
  it("caches the leading run of blocks seen before, and no more than the prompt less one token", () => {
    assert.deepEqual([...w.cachedTokens], [0, 1024, 512]);
    assert.equal(w.freshPromptTokens, 1536 + 1024 + 512);
    assert.deepEqual([w.decodeTokens, w.outputTokens], [9 + 0 + 99, 111]);
  });
  it("counts the window to the last moment a request meeting the objective can finish", () => {
    // The third: arrives at 4 s, first token by 6 s, 99 more tokens at 50 ms.
    assert.equal(w.windowMs, 4000 + 2000 + 99 * 50);
    assert.equal(w.lastArrivalMs, 4000);
  });
});

describe("the capacity bound", () => {
  const w = { freshPromptTokens: 1_000_000, decodeTokens: 100_000, windowMs: 10_000 } as Workload;
  const cases = [
    { name: "prefill binds", cap: { prefillTokPerMs: 20, decodeTokPerMs: 10 }, want: { prefill: Math.ceil((0.9 * 1e6) / 2e5), decode: 1 } },
    { name: "decode binds", cap: { prefillTokPerMs: 1000, decodeTokPerMs: 1 }, want: { prefill: 1, decode: 9 } },
    { name: "no batch meets the TPOT objective", cap: { prefillTokPerMs: 1000, decodeTokPerMs: 0 }, want: { prefill: 1, decode: Infinity } },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(countBound(w, slo, c.cap), c.want));
});

describe("the estimate", () => {
  // Load 3 replicas' worth; budgets 1.5 (share: 90% of ten requests have at least it) then 1.2.
  const w = { requests: 10, meanPromptTokens: 1000, windowMs: 1000, decodeTokens: 0 } as Workload;
  const capacity = { prefillTokPerMs: 10 / 3, decodeTokPerMs: 1 };
  const budgets = (values: number[]): Budgets => ({ ttft: Float64Array.from(values), tpot: Float64Array.from(values.map(() => Infinity)), worstTtftMs: 0, worstTpotMs: 0, refused: 0, contextTokens: 0 });
  const cases = [
    { name: "every request may take 1.5x: load 3 over 1 - 1/1.5", b: [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], want: 9 },
    { name: "one in ten may miss: the second-tightest budget counts", b: [1.01, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], want: 9 },
    { name: "two tight ones: the share's budget is 1.2", b: [1.01, 1.2, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], want: 18 },
    { name: "a budget of 1 or less: no count meets it", b: [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1], want: Infinity },
  ];
  for (const c of cases) it(c.name, () => assert.equal(countEstimate(w, slo, capacity, budgets(c.b), "prefill"), c.want));
});

describe("the idle bound", () => {
  it("refuses a request longer than the replica's context: its budget is 0 on both sides", () => {
    const island = resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-70b", precision: "fp8", tp: 2 }] }).islands[0]!;
    const long: Trace = { ...trace, inputTokens: Int32Array.from([1536, island.contextSize, 1024]) };
    const w = workloadOf(long, slo);
    const alone = aloneOf(island, long, w);
    const b = budgetsOf(alone, alone, long, slo);
    assert.deepEqual([b.ttft[1], b.tpot[1]], [0, 0]);
    assert.ok(b.ttft[0]! > 1 && b.ttft[2]! > 1, "the others meet it alone");
    assert.equal(idleShare(b), 2 / 3);
    assert.deepEqual([b.refused, b.contextTokens], [1, island.contextSize]);
  });
});
