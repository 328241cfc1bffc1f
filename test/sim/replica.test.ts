import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeStepMs, findHardware, findModel, findPrecision, makeEnergyProfile, makePerfProfile, prefillMs } from "../../src/hardware/index.js";
import { ReplicaModel, SimSeq, type ReplicaParams } from "../../src/sim/replica.js";
import { close, drain } from "./fixtures.js";

const hw = findHardware("h100");
const precision = findPrecision("bf16");
const profile = makePerfProfile(findModel("llama-3.1-8b"), hw, precision);
const energy = makeEnergyProfile(profile, hw, precision);

interface Log {
  first: Map<number, number>;
  done: Map<number, number>;
}

function replica(over: Partial<ReplicaParams> = {}): { r: ReplicaModel; log: Log } {
  const log: Log = { first: new Map(), done: new Map() };
  const r = new ReplicaModel(
    { profile, energy, maxBatch: 256, ...over },
    { firstToken: (s, now) => log.first.set(s.id, now), finished: (s, now) => log.done.set(s.id, now) },
  );
  return { r, log };
}


describe("ReplicaModel", () => {
  it("one request alone: TTFT is the model's prefill time (chunked prefill, prompt within one pass)", () => {
    const { r, log } = replica();
    r.enqueue(new SimSeq(0, 4000, 1));
    drain(r);
    close(log.first.get(0)!, prefillMs(profile, 4000, 0), "TTFT");
    assert.equal(log.done.get(0), log.first.get(0), "a one-token answer ends with its first token");
  });

  it("one request alone: TTFT is the model's prefill time (whole-prompt prefill, any length)", () => {
    const { r, log } = replica({ chunkedPrefill: false });
    r.enqueue(new SimSeq(0, 30_000, 3));
    const end = drain(r);
    assert.equal(log.first.get(0), prefillMs(profile, 30_000, 0));
    // Then two decode steps at context 30,001 and 30,002.
    close(end, prefillMs(profile, 30_000, 0) + decodeStepMs(profile, 1, 30_001) + decodeStepMs(profile, 1, 30_002), "end to end");
  });

  it("a long prompt is prefilled in chunks of the pass budget", () => {
    const { r, log } = replica({ stepTokens: 1000 });
    r.enqueue(new SimSeq(0, 2500, 2));
    let steps = 0;
    let now = 0;
    for (let ms = r.beginStep(now); ms >= 0; ms = r.beginStep(now)) {
      now += ms;
      r.endStep(now);
      steps++;
      if (steps === 3) assert.equal(log.first.get(0), now, "first token after the third chunk");
    }
    assert.equal(steps, 4);
    assert.equal(r.counters.prefillTokens, 2500);
  });

  it("two identical prompts: the second hits the cache and prefills only its last token", () => {
    const { r, log } = replica();
    const blocks = [1, 2, 3];
    r.enqueue(new SimSeq(0, 1500, 5, blocks));
    const t1 = drain(r);
    r.enqueue(new SimSeq(1, 1500, 5, blocks));
    const t2 = drain(r, t1);
    const ttft0 = log.first.get(0)!;
    const ttft1 = log.first.get(1)! - t1;
    close(ttft0, prefillMs(profile, 1500, 0), "cold TTFT");
    assert.ok(ttft1 < ttft0 / 5, `warm TTFT ${ttft1} vs cold ${ttft0}`);
    assert.equal(r.counters.blockRefs, 6);
    assert.equal(r.counters.blockHits, 3);
    assert.equal(r.counters.cachedTokens, 1499);
    assert.equal(r.counters.prefillTokens, 1500 + 1);
    assert.ok(t2 > t1);
  });

  it("batches continuously: sequences admitted later join the running batch", () => {
    const { r, log } = replica();
    r.enqueue(new SimSeq(0, 100, 50));
    let now = 0;
    for (let i = 0; i < 10; i++) {
      now += r.beginStep(now);
      r.endStep(now);
    }
    r.enqueue(new SimSeq(1, 100, 5));
    assert.equal(r.queued, 1);
    now += r.beginStep(now);
    assert.equal(r.active, 2, "admitted at the step boundary");
    r.endStep(now);
    drain(r, now);
    assert.ok(log.done.get(1)! < log.done.get(0)!, "the short one finishes first");
    assert.equal(r.counters.outputTokens, 55);
    assert.equal(r.counters.completed, 2);
    assert.ok(r.counters.joulesPerDevice > 0);
  });

  it("caps the batch at maxBatch; the rest wait in order", () => {
    const { r, log } = replica({ maxBatch: 2 });
    for (let i = 0; i < 5; i++) r.enqueue(new SimSeq(i, 50, 10));
    r.beginStep(0);
    assert.equal(r.active, 2);
    assert.equal(r.queued, 3);
    r.endStep(1);
    drain(r, 1);
    const order = [...log.done.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
    assert.deepEqual(order.slice(0, 2).sort(), [0, 1]);
  });

  it("preempts the newest sequence when decoding outgrows KV, and recomputes it later", () => {
    // 3,000 tokens of KV: three prompts of 900 fit, but not with 200 tokens of output each.
    const { r, log } = replica({ kvCapacityTokens: 3000 });
    for (let i = 0; i < 3; i++) r.enqueue(new SimSeq(i, 900, 200));
    drain(r);
    assert.ok(r.counters.preemptions > 0, "someone was preempted");
    assert.equal(log.done.size, 3, "and everyone finished");
    assert.equal(r.counters.outputTokens, 600, "recomputation does not count output twice");
    assert.ok(r.counters.prefillTokens > 2700, "the preempted prompt was prefilled again");
    assert.equal(r.committedKvTokens, 0, "all KV released");
  });

  it("evicts cached prefix blocks (LRU) to make room", () => {
    const { r } = replica({ kvCapacityTokens: 2048, blockTokens: 512 });
    r.enqueue(new SimSeq(0, 1024, 1, [1, 2]));
    drain(r);
    r.enqueue(new SimSeq(1, 1024, 1, [3, 4]));
    drain(r);
    assert.equal(r.cachedBlock(1) && r.cachedBlock(3), true, "both fit");
    r.enqueue(new SimSeq(2, 1024, 1, [5, 6]));
    drain(r);
    assert.equal(r.cachedBlock(1), false, "the oldest went");
    assert.equal(r.cachedBlock(2), false);
    assert.equal(r.prefixHits([3, 4, 9]), 2);
  });

  it("on failure hands back every request, oldest first, and forgets its cache", () => {
    const { r } = replica({ maxBatch: 2 });
    for (let i = 0; i < 4; i++) r.enqueue(new SimSeq(i, 100, 100, [i]));
    let now = r.beginStep(0);
    r.endStep(now);
    now += r.beginStep(now);
    const out = r.failAll();
    assert.deepEqual(
      out.map((s) => s.id),
      [0, 1, 2, 3],
    );
    assert.ok(out[0]!.generated > 0, "progress is kept for the replay elsewhere");
    assert.equal(r.active + r.queued, 0);
    assert.equal(r.stepping, false);
    assert.equal(r.cachedBlock(0), false);
    assert.equal(r.beginStep(now), -1);
  });

  it("cancels a request wherever it is", () => {
    const { r, log } = replica({ maxBatch: 1 });
    const a = new SimSeq(0, 100, 100);
    const b = new SimSeq(1, 100, 100);
    r.enqueue(a);
    r.enqueue(b);
    r.endStep(r.beginStep(0));
    assert.equal(r.cancel(b), true);
    assert.equal(r.cancel(a), true);
    assert.equal(r.active + r.queued, 0);
    assert.equal(r.committedKvTokens, 0);
    assert.equal(log.done.size, 0);
  });

  it("rejects nonsense", () => {
    assert.throws(() => new SimSeq(0, 0, 1), /prompt tokens/);
    assert.throws(() => new SimSeq(0, 1, 0), /output tokens/);
    assert.throws(() => replica({ maxBatch: 0 }), /maxBatch/);
    const { r } = replica();
    assert.throws(() => r.endStep(0), /no step/);
  });
});
