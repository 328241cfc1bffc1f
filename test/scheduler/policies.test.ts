import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { policyReadsPrefix } from "../../src/scheduler/scorers.js";
import {
  PolicyConfigError,
  argmax,
  costAware,
  knownPickers,
  knownPolicies,
  knownScorers,
  leastLoaded,
  policies,
  policyByName,
  policyFromConfig,
  prefixAware,
  route,
  type Candidate,
  type RouteRequest,
} from "../../src/scheduler/index.js";

const cand = (index: number, over: Partial<Candidate> = {}): Candidate => ({ index, ready: true, active: 0, queued: 0, slots: 4, maxQueue: 4, contextSize: 8192, ...over });
const req: RouteRequest = { promptTokens: 100, maxTokens: 10 };
const lcg = (seed: number): (() => number) => {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
};

describe("policies by name", () => {
  it("knows least-loaded, round-robin, power-of-two, prefix-aware, prefix-owner and cost-aware", () => {
    assert.deepEqual([...knownPolicies].sort(), ["cost-aware", "least-loaded", "power-of-two", "prefix-aware", "prefix-owner", "round-robin"]);
    for (const name of knownPolicies) assert.equal(policyByName(name).name, name);
    assert.equal(policyByName("least-loaded"), leastLoaded);
    assert.equal(policies["least-loaded"], leastLoaded);
    assert.deepEqual(Object.keys(policies).sort(), [...knownPolicies].sort());
  });

  it("says which names exist when asked for another", () => {
    assert.throws(
      () => policyByName("fastest"),
      (e: Error) => e instanceof PolicyConfigError && /unknown policy "fastest"/.test(e.message) && knownPolicies.every((n) => e.message.includes(n)),
    );
    assert.throws(() => policyByName("toString"), PolicyConfigError);
  });

  it("round-robin cycles through the replicas, each policy object with its own counter", () => {
    const a = policyByName("round-robin");
    const cs = [cand(0), cand(1), cand(2)];
    const picks = [0, 1, 2, 3, 4].map(() => (route(a, req, cs) as { index: number }).index);
    assert.deepEqual(picks, [0, 1, 2, 0, 1]);
    assert.equal((route(policyByName("round-robin"), req, cs) as { index: number }).index, 0, "a fresh policy starts over");
    assert.notEqual(policies["round-robin"], policies["round-robin"], "each read of the registry makes a fresh one");
  });

  it("power-of-two takes the less loaded of the two it draws", () => {
    const cs = [cand(0, { active: 4 }), cand(1, { active: 1 }), cand(2, { active: 3 })];
    // draws: i = ⌊0.5·3⌋ = 1, j = ⌊0·2⌋ = 0 → 1 (active 1) beats 0 (active 4)
    let dice = [0.5, 0];
    assert.deepEqual(route(policyByName("power-of-two"), req, cs, () => dice.shift()!), { ok: true, index: 1 });
    // i = 0, j = ⌊0.9·2⌋ = 1, shifted past i to 2 → 2 (active 3) beats 0
    dice = [0, 0.9];
    assert.deepEqual(route(policyByName("power-of-two"), req, cs, () => dice.shift()!), { ok: true, index: 2 });
  });
});

describe("prefix-aware", () => {
  const blocks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const r: RouteRequest = { promptTokens: 5120, maxTokens: 10, blocks, blockTokens: 512 };

  it("prefers the replica holding the prefix while it has free slots", () => {
    const cs = [cand(0), cand(1, { prefixBlocks: 9, active: 2 }), cand(2, { prefixBlocks: 2 })];
    assert.deepEqual(route(policyByName("prefix-aware"), r, cs), { ok: true, index: 1 });
  });

  it("ignores a match on a small share of the prompt, so a template's shared first block does not herd new conversations", () => {
    // Replica 1 holds only block 1 (every conversation's first block) and has work; replica 0 is idle.
    const cs = [cand(0, { slots: 64 }), cand(1, { prefixBlocks: 1, active: 1, slots: 64 })];
    assert.deepEqual(route(policyByName("prefix-aware"), r, cs), { ok: true, index: 0 });
    assert.deepEqual(route(prefixAware({ minMatch: 0 }), r, cs), { ok: true, index: 1 }, "without the threshold the 10% match wins");
  });

  it("stops favouring it once its load reaches the cap", () => {
    const cs = [cand(0, { active: 1 }), cand(1, { prefixBlocks: 10, active: 4 })];
    assert.deepEqual(route(policyByName("prefix-aware"), r, cs), { ok: true, index: 0 });
    assert.deepEqual(route(prefixAware({ loadCap: 2 }), r, cs), { ok: true, index: 1 }, "a higher cap keeps it");
  });

  it("does not melt the replica holding a hot prefix", () => {
    // 200 requests with the same prefix, held by replica 0 only; each routed request stays running.
    const active = [0, 0, 0, 0];
    const random = lcg(2);
    const order: number[] = [];
    for (let k = 0; k < 200; k++) {
      const cs = active.map((a, i) => cand(i, { active: a, slots: 8, maxQueue: 1000, prefixBlocks: i === 0 ? 10 : 0 }));
      const out = route(policyByName("prefix-aware"), r, cs, random);
      assert.ok(out.ok);
      active[out.index]!++;
      order.push(out.index);
    }
    assert.deepEqual(order.slice(0, 8), [0, 0, 0, 0, 0, 0, 0, 0], "the holder takes the prefix while it has free slots");
    assert.notEqual(order[8], 0, "then, at the load cap, the others take over");
    assert.ok(Math.max(...active) - Math.min(...active) <= 8, `and load decides from there: ${active}`);
  });

  it("with no blocks it is least-loaded", () => {
    const cs = [cand(0, { active: 2 }), cand(1, { active: 1 }), cand(2, { active: 3 })];
    assert.deepEqual(route(policyByName("prefix-aware"), req, cs), { ok: true, index: 1 });
  });
});

describe("cost-aware", () => {
  const r: RouteRequest = { promptTokens: 1000, maxTokens: 10 };
  it("takes the cheapest replica predicted to meet the TTFT objective", () => {
    const cs = [
      cand(0, { usdPerMTok: 0.2, prefillMsPerToken: 5 }), // 5 s: misses a 2 s SLO
      cand(1, { usdPerMTok: 0.6, prefillMsPerToken: 1 }), // 1 s: meets
      cand(2, { usdPerMTok: 1.5, prefillMsPerToken: 0.2 }), // 0.2 s: meets, dearer
    ];
    assert.deepEqual(route(policyByName("cost-aware"), r, cs), { ok: true, index: 1 });
    assert.deepEqual(route(policyByName("cost-aware"), { ...r, ttftSloMs: 6000 }, cs), { ok: true, index: 0 }, "a loose SLO lets the cheapest through");
    assert.deepEqual(route(costAware({ sloMs: 500 }), r, cs), { ok: true, index: 2 });
  });
  it("counts queue wait: a cheap replica with a long queue misses the SLO", () => {
    const cs = [cand(0, { usdPerMTok: 0.2, prefillMsPerToken: 1, pendingPrefillTokens: 5000 }), cand(1, { usdPerMTok: 0.6, prefillMsPerToken: 1 })];
    assert.deepEqual(route(policyByName("cost-aware"), r, cs), { ok: true, index: 1 });
  });
  it("when none can meet it, takes the nearest miss", () => {
    const cs = [cand(0, { usdPerMTok: 0.2, prefillMsPerToken: 20 }), cand(1, { usdPerMTok: 0.3, prefillMsPerToken: 3 })];
    assert.deepEqual(route(policyByName("cost-aware"), r, cs), { ok: true, index: 1 });
  });
});

describe("policyFromConfig", () => {
  it("builds a weighted mix", () => {
    const p = policyFromConfig({ scorers: [{ name: "prefix", weight: 2 }, { name: "load", weight: 1 }], picker: "argmax" });
    assert.equal(p.name, "custom");
    assert.deepEqual(
      p.scorers.map((s) => [s.scorer.name, s.weight]),
      [
        ["prefix", 2],
        ["least-loaded", 1],
      ],
    );
    assert.equal(p.pick, argmax);
    assert.deepEqual(p.filters.map((f) => f.name), ["ready", "context-fits", "has-capacity"]);
    const r: RouteRequest = { promptTokens: 100, maxTokens: 1, blocks: [1, 2] };
    // prefix 2 × 0.5 + load 1/(1+1) = 1.5 beats 0 + 1
    assert.deepEqual(route(p, r, [cand(0), cand(1, { prefixBlocks: 1, active: 4 })]), { ok: true, index: 1 });
  });

  it("takes a name, params, a picker with params, and filters", () => {
    assert.equal(policyFromConfig("cost-aware").name, "cost-aware");
    const p = policyFromConfig({
      name: "mine",
      filters: ["ready", "kv-fits"],
      scorers: [
        { name: "ttft", weight: 1, params: { scaleMs: 500 } },
        { name: "prefix", weight: 1, params: { loadCap: 2 } },
      ],
      picker: { name: "softmax", temperature: 0.05 },
    });
    assert.equal(p.name, "mine");
    assert.deepEqual(p.filters.map((f) => f.name), ["ready", "kv-fits"]);
    assert.deepEqual(route(p, { promptTokens: 5000, maxTokens: 1 }, [cand(0, { kvCapacityTokens: 4000 }), cand(1)]), { ok: true, index: 1 });
    assert.equal(policyFromConfig({ scorers: [{ name: "cost", weight: 1 }], picker: "power-of-two" }).scorers.length, 1);
  });

  it("names the known scorers, pickers and filters when given others", () => {
    const bad = (spec: unknown, ...patterns: RegExp[]): void =>
      assert.throws(
        () => policyFromConfig(spec),
        (e: Error) => e instanceof PolicyConfigError && patterns.every((p) => p.test(e.message)),
      );
    bad({ scorers: [{ name: "prefx", weight: 1 }] }, /scorers\[0\]: unknown scorer "prefx"/, new RegExp(`known scorers: ${knownScorers.join(", ")}`));
    bad({ scorers: [{ name: "load", weight: 1 }], picker: "best" }, /picker: unknown picker "best"/, new RegExp(`known pickers: ${knownPickers.join(", ")}`));
    bad({ scorers: [{ name: "load", weight: 1 }], filters: ["ready", "healthy"] }, /filters\[1\]: unknown filter "healthy"; known filters: ready, context-fits, has-capacity, kv-fits/);
    bad({ scorers: [] }, /scorers must be a non-empty list/, /known scorers/);
    bad({}, /scorers must be a non-empty list/);
    bad({ scorers: [{ name: "load", weight: -1 }] }, /scorers\[0\]: weight must be a finite number >= 0/);
    bad({ scorers: [{ name: "load" }] }, /weight must be/);
    bad({ scorers: [{ name: "load", weight: 1, params: { x: 1 } }] }, /unknown parameter "x"; it takes none/);
    bad({ scorers: [{ name: "ttft", weight: 1, params: { scale: 1 } }] }, /unknown parameter "scale"; known: scaleMs/);
    bad({ scorers: [{ name: "ttft", weight: 1, params: { scaleMs: -5 } }] }, /scaleMs must be a positive finite number/);
    bad({ scorers: [{ name: "load", weight: 1 }], picker: { name: "softmax", temperature: -1 } }, /temperature/);
    bad({ scorers: [{ name: "load", weight: 1 }], pickr: "argmax" }, /unknown key "pickr"/);
    bad(42, /a policy is a name/);
    bad("nope", /unknown policy "nope"; known policies/);
    // every problem at once
    bad({ scorers: [{ name: "a", weight: 1 }, { name: "b", weight: 1 }] }, /unknown scorer "a"[\s\S]*unknown scorer "b"/);
  });
});

describe("policyReadsPrefix", () => {
  it("is true exactly for policies with a scorer that reads prefix blocks", () => {
    assert.equal(policyReadsPrefix(policyByName("least-loaded")), false);
    assert.equal(policyReadsPrefix(policyByName("round-robin")), false);
    assert.equal(policyReadsPrefix(policyByName("prefix-aware")), true);
    assert.equal(policyReadsPrefix(policyFromConfig({ scorers: [{ name: "affinity", weight: 1 }], picker: "argmax" })), false);
    assert.equal(policyReadsPrefix(policyFromConfig({ scorers: [{ name: "ttft", weight: 1 }], picker: "argmax" })), true);
  });
});
