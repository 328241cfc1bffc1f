import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { argmax, leastLoaded, leastLoadedScorer, route, type Candidate, type RouteRequest } from "../../src/scheduler/index.js";
import { policyByName } from "../../src/scheduler/policies.js";
import { policyReadsPrefix } from "../../src/scheduler/scorers.js";

const replica = (index: number, over: Partial<Candidate> = {}): Candidate => ({
  index,
  ready: true,
  active: 0,
  queued: 0,
  slots: 4,
  maxQueue: 4,
  contextSize: 4096,
  ...over,
});
const req: RouteRequest = { promptTokens: 100, maxTokens: 100 };

describe("route with the least-loaded policy", () => {
  it("picks the replica with the least work per slot", () => {
    const out = route(leastLoaded, req, [replica(0, { active: 3 }), replica(1, { active: 1 }), replica(2, { active: 2, queued: 1 })]);
    assert.deepEqual(out, { ok: true, index: 1 });
  });

  it("weighs load by slots: 2 of 8 busy beats 1 of 2", () => {
    const out = route(leastLoaded, req, [replica(0, { active: 1, slots: 2 }), replica(1, { active: 2, slots: 8 })]);
    assert.deepEqual(out, { ok: true, index: 1 });
  });

  it("never picks a replica that is not ready, even an idle one", () => {
    const out = route(leastLoaded, req, [replica(0, { ready: false }), replica(1, { active: 3 })]);
    assert.deepEqual(out, { ok: true, index: 1 });
  });

  it("skips replicas whose window is too small for prompt plus max_tokens", () => {
    const out = route(leastLoaded, { promptTokens: 3000, maxTokens: 2000 }, [replica(0, { contextSize: 4096 }), replica(1, { contextSize: 8192, active: 3 })]);
    assert.deepEqual(out, { ok: true, index: 1 });
  });

  it("says why nothing fits, most fundamental reason first", () => {
    assert.deepEqual(route(leastLoaded, req, []), { ok: false, reason: "no_ready_replica" });
    assert.deepEqual(route(leastLoaded, req, [replica(0, { ready: false })]), { ok: false, reason: "no_ready_replica" });
    assert.deepEqual(route(leastLoaded, { promptTokens: 5000, maxTokens: 1 }, [replica(0)]), { ok: false, reason: "context_length_exceeded" });
    assert.deepEqual(route(leastLoaded, req, [replica(0, { active: 4, queued: 4 })]), { ok: false, reason: "overloaded" });
    // Not ready and too long: the replica being down is the answer, not the prompt.
    assert.deepEqual(route(leastLoaded, { promptTokens: 5000, maxTokens: 1 }, [replica(0, { ready: false })]), { ok: false, reason: "no_ready_replica" });
  });

  it("lets an unknown prompt length through to the engine, which knows", () => {
    assert.deepEqual(route(leastLoaded, { promptTokens: undefined, maxTokens: undefined }, [replica(0, { contextSize: 16 })]), { ok: true, index: 0 });
  });
});

describe("argmax", () => {
  it("spreads ties evenly using the random source", () => {
    const counts = [0, 0, 0];
    let seed = 1;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 3000; i++) counts[argmax([1, 1, 1], 3, random)]!++;
    for (const c of counts) assert.ok(c > 850 && c < 1150, `tie share ${c} of 3000`);
  });

  it("prefers a strictly better score whatever the dice say", () => {
    assert.equal(argmax([0.2, 0.9, 0.5], 3, () => 0), 1);
  });
});

describe("least-loaded scorer", () => {
  it("is 1 when idle and falls as work grows", () => {
    assert.equal(leastLoadedScorer.score(replica(0), req), 1);
    assert.equal(leastLoadedScorer.score(replica(0, { active: 4 }), req), 0.5);
    assert.ok(leastLoadedScorer.score(replica(0, { active: 4, queued: 4 }), req) < 0.5);
  });
});

describe("scorers that step outside [0, 1]", () => {
  const cand = (index: number): Candidate => ({ index, ready: true, active: 0, queued: 0, slots: 4, maxQueue: 4, contextSize: undefined });
  const req: RouteRequest = { promptTokens: 10, maxTokens: 10 };
  const only = (score: (c: Candidate) => number) => ({
    name: "wild",
    filters: [],
    scorers: [
      { scorer: { name: "wild", score }, weight: 1 },
      // Prefers replica 1 by a little: it wins unless the wild score swamps it.
      { scorer: { name: "tiebreak", score: (c: Candidate) => (c.index === 1 ? 0.1 : 0) }, weight: 1 },
    ],
    pick: argmax,
  });

  it("are clamped, so one scorer cannot swamp the others, and NaN counts as 0 (table)", () => {
    const cases: [string, (c: Candidate) => number][] = [
      ["above 1", (c) => (c.index === 0 ? 50 : 1)],
      ["below 0", (c) => (c.index === 1 ? -50 : 0)],
      ["NaN", (c) => (c.index === 1 ? NaN : 0)],
    ];
    for (const [name, score] of cases) {
      const outcome = route(only(score), req, [cand(0), cand(1)], () => 0);
      assert.ok(outcome.ok);
      assert.equal(outcome.index, 1, `${name}: the clamped wild score leaves the tiebreak deciding`);
    }
  });
});

describe("what a policy reads", () => {
  it("a policy needs the prompt hashed exactly when one of its scorers declares it reads prefixes", () => {
    const policy = (readsPrefix: boolean | undefined) => ({
      name: "custom",
      filters: [],
      scorers: [{ scorer: { name: "custom", score: () => 0, ...(readsPrefix === undefined ? {} : { readsPrefix }) }, weight: 1 }],
      pick: argmax,
    });
    assert.equal(policyReadsPrefix(policy(true)), true, "declared: hashed, whatever its name");
    assert.equal(policyReadsPrefix(policy(false)), false);
    assert.equal(policyReadsPrefix(policy(undefined)), false);
    assert.equal(policyReadsPrefix(policyByName("prefix-aware")), true, "the built-in prefix scorer declares it");
    assert.equal(policyReadsPrefix(leastLoaded), false);
  });
});
