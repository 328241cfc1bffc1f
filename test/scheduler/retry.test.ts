import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Candidate } from "../../src/scheduler/pipeline.js";
import { DEFAULT_RETRY, attemptBudget, backoffMs, bestRecord, isRetryable, retryCandidates, unresumable } from "../../src/scheduler/retry.js";

const replica = (index: number, ready = true): Candidate => ({ index, ready, active: 0, queued: 0, slots: 1, maxQueue: 1, contextSize: undefined });
const readyOnes = (cs: readonly Candidate[]): number[] => cs.filter((c) => c.ready).map((c) => c.index);

describe("retry rules", () => {
  it("which candidates a retry routes over, by what failed and what is ready (table)", () => {
    const cases: { name: string; candidates: Candidate[]; failed: number[]; ready: number[]; revisiting: boolean }[] = [
      { name: "first attempt: everything ready is offered", candidates: [replica(0), replica(1)], failed: [], ready: [0, 1], revisiting: false },
      { name: "a replica that failed is held back while another is ready", candidates: [replica(0), replica(1), replica(2)], failed: [0], ready: [1, 2], revisiting: false },
      { name: "a fresh replica that is not ready does not hold the failed ones back", candidates: [replica(0), replica(1, false)], failed: [0], ready: [0], revisiting: true },
      { name: "all failed once: those ready again are offered, after a backoff", candidates: [replica(0), replica(1, false)], failed: [0, 1], ready: [0], revisiting: true },
      { name: "all failed and none ready: nothing to offer", candidates: [replica(0, false), replica(1, false)], failed: [0, 1], ready: [], revisiting: true },
    ];
    for (const c of cases) {
      const choice = retryCandidates(c.candidates, new Set(c.failed));
      assert.deepEqual(readyOnes(choice.candidates), c.ready, c.name);
      assert.equal(choice.revisiting, c.revisiting, c.name);
    }
  });

  it("what is retried: before output, failures another replica may not share; after it, only a broken replica", () => {
    const table: [string, boolean, boolean][] = [
      ["engine_unavailable", false, true],
      ["engine_error", false, true],
      ["overloaded", false, true],
      ["overloaded", true, false],
      ["engine_unavailable", true, true],
      ["engine_error", true, true],
      ["invalid_request", false, false],
      ["context_length_exceeded", false, false],
      ["cancelled", false, false],
      ["deadline_exceeded", true, false],
    ];
    for (const [code, afterOutput, expected] of table) assert.equal(isRetryable(code, afterOutput), expected, `${code} ${afterOutput ? "after" : "before"} output`);
  });

  it("an answer begun is resumed elsewhere unless an engine holds it from its first token: a format, or tool calls (table)", () => {
    const table: [{ format: boolean; tools: boolean }, string | undefined][] = [
      [{ format: false, tools: false }, undefined],
      [{ format: true, tools: false }, "held to response_format"],
      [{ format: false, tools: true }, "that may call tools"],
      [{ format: true, tools: true }, "held to response_format"],
    ];
    for (const [answer, expected] of table) assert.equal(unresumable(answer), expected, JSON.stringify(answer));
  });

  it("a retry goes to the best record: answered since its last failure, then no failures, then the rest (table)", () => {
    const with_ = (index: number, failures: number, proven: boolean, ready = true): Candidate => ({ ...replica(index, ready), failures, proven });
    const cases: { name: string; candidates: Candidate[]; failed: number[]; ready: number[] }[] = [
      { name: "one good among unknowns and failing ones: only the good one", candidates: [with_(0, 1, false), with_(1, 0, true), with_(2, 0, false), with_(3, 2, false)], failed: [0], ready: [1] },
      { name: "no proven one: those with no failures counted", candidates: [with_(0, 1, false), with_(1, 0, false), with_(2, 2, false)], failed: [0], ready: [1] },
      { name: "all failing: all of them, rather than none", candidates: [with_(0, 1, false), with_(1, 1, false), with_(2, 2, false)], failed: [0], ready: [1, 2] },
      { name: "a proven replica that is not ready does not hold the others back", candidates: [with_(0, 1, false), with_(1, 0, true, false), with_(2, 0, false)], failed: [0], ready: [2] },
      { name: "a first attempt is routed over everything ready", candidates: [with_(0, 1, false), with_(1, 0, true)], failed: [], ready: [0, 1] },
    ];
    for (const c of cases) assert.deepEqual(readyOnes(retryCandidates(c.candidates, new Set(c.failed)).candidates), c.ready, c.name);
    assert.deepEqual(readyOnes(bestRecord([replica(0), replica(1)])), [0, 1], "candidates without a record are all equal");
  });

  it("the attempt budget: 3, or one per replica where there are more, up to 6 (table)", () => {
    const table: [number, number][] = [[1, 3], [2, 3], [3, 3], [5, 5], [6, 6], [40, 6]];
    for (const [replicas, budget] of table) assert.equal(attemptBudget(DEFAULT_RETRY, replicas), budget, `${replicas} replicas`);
    assert.equal(attemptBudget({ ...DEFAULT_RETRY, maxAttempts: 8 }, 2), 8, "a larger configured budget stands");
  });

  it("backs off exponentially up to a ceiling", () => {
    assert.deepEqual([2, 3, 4, 5, 10].map((a) => backoffMs(DEFAULT_RETRY, a)), [50, 100, 200, 400, 1_000]);
  });
});
