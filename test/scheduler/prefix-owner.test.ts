import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Candidate, RouteRequest } from "../../src/scheduler/pipeline.js";
import { route } from "../../src/scheduler/pipeline.js";
import { policyByName } from "../../src/scheduler/policies.js";
import { ownerKey, ownerOf, prefixOwnerScorer } from "../../src/scheduler/prefix-owner.js";
import { rendezvousWeight } from "../../src/scheduler/hash.js";

const replica = (index: number, load = 0, key?: number): Candidate => ({ index, ready: true, active: load, queued: 0, slots: 4, maxQueue: 16, contextSize: undefined, ...(key === undefined ? {} : { replicaKey: key }) });
const all = (cs: readonly Candidate[]): number[] => cs.map((_, i) => i);
/** Who rendezvous hashing alone would pick for `key` among `keys`. */
const topOf = (key: number, keys: readonly number[]): number => keys.reduce((best, k) => (rendezvousWeight(key, k) > rendezvousWeight(key, best) ? k : best));

describe("prefix-owner", () => {
  it("table: the owner is the rendezvous top of the replicas under the load bound", () => {
    const key = 0x5eed;
    const idle = [0, 1, 2, 3].map((i) => replica(i));
    const top = topOf(key, [0, 1, 2, 3]);
    const cases: { name: string; candidates: Candidate[]; expected: number }[] = [
      { name: "an idle fleet: the rendezvous top", candidates: idle, expected: top },
      { name: "the top is overloaded (4 per slot vs a mean of 1): the next in rendezvous order", candidates: idle.map((c) => (c.index === top ? replica(c.index, 16) : c)), expected: topOf(key, [0, 1, 2, 3].filter((i) => i !== top)) },
      { name: "equal load everywhere: nobody is over the bound", candidates: idle.map((c) => replica(c.index, 8)), expected: top },
      { name: "one request over an idle fleet is room, not overload", candidates: idle.map((c) => (c.index === top ? replica(c.index, 1) : c)), expected: top },
    ];
    for (const c of cases) assert.equal(ownerOf(key, c.candidates, all(c.candidates), c.candidates.length, 1.25), c.expected, c.name);
  });

  it("every gateway agrees: the owner follows replicaKey (the engine's URL), not the gateway's own numbering", () => {
    const keys = [101, 202, 303, 404];
    const a = keys.map((k, i) => replica(i, 0, k));
    const b = [...keys].reverse().map((k, i) => replica(i, 0, k)); // another gateway lists them in another order
    const key = 777;
    const ownerA = a.find((c) => c.index === ownerOf(key, a, all(a), 4, 1.25))!.replicaKey;
    const ownerB = b.find((c) => c.index === ownerOf(key, b, all(b), 4, 1.25))!.replicaKey;
    assert.equal(ownerA, ownerB);
  });

  it("a conversation's turns share their key; a template shorter than the key depth does not decide it", () => {
    const turn1: RouteRequest = { promptTokens: 100, maxTokens: 10, blocks: [1, 2, 3] };
    const turn2: RouteRequest = { promptTokens: 200, maxTokens: 10, blocks: [1, 2, 3, 4, 5] };
    const other: RouteRequest = { promptTokens: 100, maxTokens: 10, blocks: [1, 9, 10] };
    assert.equal(ownerKey(turn1, 2), ownerKey(turn2, 2));
    assert.notEqual(ownerKey(turn1, 2), ownerKey(other, 2));
    assert.equal(ownerKey({ promptTokens: 1, maxTokens: 1 }, 2), undefined);
  });

  it("in the prefix-owner policy, a gateway that never saw the conversation sends it to the owner; without blocks it is least-loaded", () => {
    const policy = policyByName("prefix-owner");
    const cs = [0, 1, 2, 3].map((i) => replica(i, 0, 1000 + i));
    const req: RouteRequest = { promptTokens: 4000, maxTokens: 10, blocks: [11, 22, 33, 44], blockTokens: 1000 };
    const owner = cs.find((c) => c.replicaKey === topOf(22, [1000, 1001, 1002, 1003]))!.index;
    const outcome = route(policy, req, cs);
    assert.deepEqual(outcome, { ok: true, index: owner });
    const busyElsewhere = cs.map((c) => (c.index === owner ? c : replica(c.index, 2, c.replicaKey)));
    assert.deepEqual(route(policy, { promptTokens: 10, maxTokens: 10 }, busyElsewhere), { ok: true, index: owner }, "no blocks: the idle one by load");
  });

  it("refuses nonsense options", () => {
    assert.throws(() => prefixOwnerScorer({ blocks: 0 }), /blocks/);
    assert.throws(() => prefixOwnerScorer({ loadFactor: 0.5 }), /loadFactor/);
  });
});
