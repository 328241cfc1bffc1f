import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  NEUTRAL,
  affinityScorer,
  costScorer,
  energyScorer,
  hashString,
  kvScorer,
  leastLoadedScorer,
  predictTtftMs,
  prefixScorer,
  queueScorer,
  rendezvousWeight,
  sloScorer,
  ttftScorer,
  uncachedTokens,
  type Candidate,
  type RouteRequest,
} from "../../src/scheduler/index.js";

const cand = (over: Partial<Candidate> = {}): Candidate => ({ index: 0, ready: true, active: 0, queued: 0, slots: 4, maxQueue: 4, contextSize: 8192, ...over });
const req = (over: Partial<RouteRequest> = {}): RouteRequest => ({ promptTokens: undefined, maxTokens: undefined, ...over });
const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

describe("load scorers", () => {
  it("least-loaded: 1 / (1 + (active + queued) / slots)", () => {
    assert.equal(leastLoadedScorer.score(cand({ active: 2, queued: 2, slots: 4 }), req()), 0.5);
    assert.equal(leastLoadedScorer.score(cand({ active: 3, slots: 0 }), req()), 0.25, "slots below 1 count as 1");
  });

  it("queue: 1 / (1 + queued)", () => {
    assert.equal(queueScorer.score(cand({ active: 9 }), req()), 1);
    assert.equal(queueScorer.score(cand({ queued: 3 }), req()), 0.25);
  });
});

describe("prefix scorer", () => {
  const blocks = [1, 2, 3, 4];
  it("is the fraction of the request's blocks the replica holds", () => {
    const s = prefixScorer();
    assert.equal(s.name, "prefix");
    assert.equal(s.score(cand({ prefixBlocks: 3 }), req({ blocks })), 0.75);
    assert.equal(s.score(cand({ prefixBlocks: 9 }), req({ blocks })), 1, "clamped");
    assert.equal(s.score(cand({ prefixBlocks: 0 }), req({ blocks })), 0);
  });
  it("is 0 (neutral) when the request has no blocks or the candidate no count", () => {
    const s = prefixScorer();
    assert.equal(s.score(cand(), req({ blocks })), 0);
    assert.equal(s.score(cand({ prefixBlocks: 2 }), req()), 0);
    assert.equal(s.score(cand({ prefixBlocks: 2 }), req({ blocks: [] })), 0);
  });
  it("with a load cap, counts for nothing at or beyond it", () => {
    const s = prefixScorer({ loadCap: 1 });
    assert.equal(s.score(cand({ prefixBlocks: 2, active: 3, slots: 4 }), req({ blocks })), 0.5);
    assert.equal(s.score(cand({ prefixBlocks: 2, active: 3, queued: 1, slots: 4 }), req({ blocks })), 0);
    assert.throws(() => prefixScorer({ loadCap: 0 }), /loadCap/);
  });
  it("with minMatch, a match covering less of the prompt counts for nothing", () => {
    const s = prefixScorer({ minMatch: 0.25 });
    assert.equal(s.score(cand({ prefixBlocks: 2 }), req({ blocks: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] })), 0, "20% < 25%");
    assert.equal(s.score(cand({ prefixBlocks: 3 }), req({ blocks: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] })), 0.3);
    assert.throws(() => prefixScorer({ minMatch: 1.5 }), /minMatch/);
  });
});

describe("kv scorer", () => {
  it("is the free share of the KV cache", () => {
    assert.equal(kvScorer.score(cand({ kvUsedTokens: 750, kvCapacityTokens: 1000 }), req()), 0.25);
    assert.equal(kvScorer.score(cand({ kvUsedTokens: 0, kvCapacityTokens: 1000 }), req()), 1);
    assert.equal(kvScorer.score(cand({ kvUsedTokens: 2000, kvCapacityTokens: 1000 }), req()), 0);
  });
  it("is neutral when either number is missing", () => {
    assert.equal(kvScorer.score(cand({ kvUsedTokens: 10 }), req()), NEUTRAL);
    assert.equal(kvScorer.score(cand({ kvCapacityTokens: 10 }), req()), NEUTRAL);
    assert.equal(kvScorer.score(cand({ kvUsedTokens: 1, kvCapacityTokens: 0 }), req()), NEUTRAL);
  });
  it("reads an engine's reported share where tokens are unknown; tokens win where both are given", () => {
    assert.equal(kvScorer.score(cand({ kvUsage: 0.75 }), req()), 0.25);
    assert.equal(kvScorer.score(cand({ kvUsage: 1.2 }), req()), 0);
    assert.equal(kvScorer.score(cand({ kvUsage: 0.75, kvUsedTokens: 100, kvCapacityTokens: 1000 }), req()), 0.9);
  });
});

describe("TTFT prediction and scorers", () => {
  const r = req({ promptTokens: 2000, blocks: [1, 2, 3], blockTokens: 512 });
  it("uncached tokens: prompt minus the matched blocks", () => {
    assert.equal(uncachedTokens(cand({ prefixBlocks: 2 }), r), 2000 - 1024);
    assert.equal(uncachedTokens(cand(), r), 2000);
    assert.equal(uncachedTokens(cand({ prefixBlocks: 3 }), req({ blocks: [1, 2, 3], blockTokens: 512 })), 0, "uncounted prompt: blocks × blockTokens");
    assert.equal(uncachedTokens(cand({ prefixBlocks: 5 }), r), 0);
  });
  it("predicted TTFT = wait + uncached × ms per token", () => {
    // pending prefill 1000 tokens, own 976 uncached, 0.1 ms/token
    close(predictTtftMs(cand({ prefixBlocks: 2, prefillMsPerToken: 0.1, pendingPrefillTokens: 1000 }), r)!, 100 + 97.6);
    // explicit wait
    close(predictTtftMs(cand({ prefixBlocks: 2, prefillMsPerToken: 0.1, queueWaitMs: 40 }), r)!, 40 + 97.6);
    // coarse: each queued request as long as this one
    close(predictTtftMs(cand({ prefillMsPerToken: 0.1, queued: 2 }), r)!, 2 * 200 + 200);
    // the caller's own prediction wins
    assert.equal(predictTtftMs(cand({ prefillMsPerToken: 0.1, predictedTtftMs: 7 }), r), 7);
    assert.equal(predictTtftMs(cand(), r), undefined);
  });
  it("ttft scorer: 1 / (1 + ttft / scale), scale = the request's SLO or the option", () => {
    const c = cand({ predictedTtftMs: 500 });
    assert.equal(ttftScorer().score(c, r), 1 / 1.5);
    assert.equal(ttftScorer({ scaleMs: 500 }).score(c, r), 0.5);
    assert.equal(ttftScorer().score(c, { ...r, ttftSloMs: 250 }), 1 / 3);
    assert.equal(ttftScorer().score(cand(), r), NEUTRAL);
    assert.throws(() => ttftScorer({ scaleMs: 0 }), /scaleMs/);
  });
  it("slo scorer: 1 when met, 0.5 × slo / ttft when missed, 1 when unknown", () => {
    const s = sloScorer({ sloMs: 1000 });
    assert.equal(s.score(cand({ predictedTtftMs: 1000 }), r), 1);
    assert.equal(s.score(cand({ predictedTtftMs: 2000 }), r), 0.25);
    assert.equal(s.score(cand({ predictedTtftMs: 2000 }), { ...r, ttftSloMs: 4000 }), 1);
    assert.equal(s.score(cand(), r), 1);
    assert.ok(s.score(cand({ predictedTtftMs: 1001 }), r) < 0.5);
  });
});

describe("cost and energy scorers", () => {
  it("cost: 1 / (1 + usdPerMTok / scale)", () => {
    assert.equal(costScorer().score(cand({ usdPerMTok: 1 }), req()), 0.5);
    assert.equal(costScorer({ scaleUsdPerMTok: 0.5 }).score(cand({ usdPerMTok: 1.5 }), req()), 0.25);
    assert.equal(costScorer().score(cand({ usdPerMTok: 0 }), req()), 1);
    assert.equal(costScorer().score(cand(), req()), NEUTRAL);
  });
  it("energy: 1 / (1 + joulesPerToken / scale)", () => {
    assert.equal(energyScorer().score(cand({ joulesPerToken: 3 }), req()), 0.25);
    assert.equal(energyScorer({ scaleJoulesPerToken: 3 }).score(cand({ joulesPerToken: 3 }), req()), 0.5);
    assert.equal(energyScorer().score(cand(), req()), NEUTRAL);
  });
});

describe("affinity scorer", () => {
  it("is the rendezvous weight of (key, replica key ?? index), 0 without a key", () => {
    const r = req({ affinityKey: "conversation-42" });
    assert.equal(affinityScorer.score(cand({ index: 3 }), r), rendezvousWeight(hashString("conversation-42"), 3));
    assert.equal(affinityScorer.score(cand({ index: 3, replicaKey: 99 }), r), rendezvousWeight(hashString("conversation-42"), 99));
    assert.equal(affinityScorer.score(cand({ index: 3 }), req()), 0);
    const w = affinityScorer.score(cand({ index: 5 }), r);
    assert.ok(w >= 0 && w < 1);
  });
});
