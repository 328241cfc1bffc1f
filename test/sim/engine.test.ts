import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import type { FlotillaError } from "../../src/core/errors.js";
import type { GenerationRequest } from "../../src/core/request.js";
import type { Engine } from "../../src/engines/engine.js";
import { SimEngine, textBlocks } from "../../src/sim/engine.js";
import { Fleet, type Replica } from "../../src/fleet/fleet.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import { Dispatcher } from "../../src/gateway/dispatcher.js";
import { prefillMs } from "../../src/hardware/index.js";
import type { Policy } from "../../src/scheduler/pipeline.js";
import { leastLoaded } from "../../src/scheduler/policies.js";
import { simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { fleetOf } from "./fixtures.js";

const engine = (over: Partial<ConstructorParameters<typeof SimEngine>[0]> = {}): SimEngine =>
  new SimEngine({ hardware: "h100", model: "llama-3.1-8b", speed: Infinity, ...over });

const request = (text: string, maxTokens?: number, id = "r"): GenerationRequest => ({
  id,
  prompt: { kind: "text", text },
  sampling: maxTokens === undefined ? {} : { maxTokens },
});

async function collect(e: Engine, req: GenerationRequest, signal = new AbortController().signal): Promise<{ text: string; tokens: number; result: Awaited<ReturnType<Engine["generate"]>> }> {
  let text = "";
  let tokens = 0;
  const result = await e.generate(req, (t, n) => ((text += t), (tokens += n)), signal);
  return { text, tokens, result };
}

describe("SimEngine", () => {
  it("is an Engine of kind sim that reports what the router needs", async () => {
    const e: Engine = engine({ maxBatch: 8, maxQueue: 3 });
    assert.equal(e.kind, "sim");
    assert.equal(e.isReady(), false);
    await e.start();
    assert.equal(e.isReady(), true);
    assert.deepEqual(e.load(), { active: 0, queued: 0, slots: 8, maxQueue: 3 });
    assert.equal(e.contextSize, 131_072);
    assert.equal(e.countPromptTokens({ kind: "text", text: "abcdefgh" }), 2);
    assert.equal(e.countPromptTokens({ kind: "text", text: "abcdefgh" }, "ijkl"), 3);
  });

  it("streams one word per token and reports usage; the same prompt again hits the prefix cache", async () => {
    const e = engine();
    await e.start();
    const prompt = "x".repeat(4 * 3000);
    const a = await collect(e, request(prompt, 12));
    assert.equal(a.tokens, 12);
    assert.equal(a.text.length, 4 * 12, "four characters a token, as the engine counts prompts");
    assert.equal(a.text.slice(0, 4), " sit");
    assert.deepEqual(a.result, { finishReason: "length", usage: { promptTokens: 3000, completionTokens: 12, cachedTokens: 0 } });
    const coldMs = e.counters.busyMs;
    assert.ok(coldMs > prefillMs(e.profile, 3000), "the prefill, then eleven decode steps");
    const b = await collect(e, request(prompt));
    assert.equal(b.result.finishReason, "stop");
    assert.equal(b.result.usage.completionTokens, 64, "the default length without max_tokens");
    assert.equal(b.result.usage.cachedTokens, 2999);
    assert.equal(e.clock.now(), e.counters.busyMs, "virtual time is the sum of the passes");
    assert.equal(textBlocks("a".repeat(10), 4).length, 3);
  });

  it("batches concurrent requests and frees everything after", async () => {
    const e = engine({ maxBatch: 4 });
    await e.start();
    const all = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => collect(e, request(`prompt ${i}`, 5 + i))));
    assert.deepEqual(
      all.map((x) => x.tokens),
      [6, 7, 8, 9, 10, 11],
    );
    assert.deepEqual(e.load(), { active: 0, queued: 0, slots: 4, maxQueue: 256 });
  });

  it("cancels on abort, refuses when the queue is full, and fails in-flight work on a device failure", async () => {
    const e = engine({ maxBatch: 1, maxQueue: 1 });
    await e.start();
    const ac = new AbortController();
    const long = e.generate(request("a", 10_000), (_t, n) => {
      if (n > 0) ac.abort();
    }, ac.signal);
    await assert.rejects(long, (err: FlotillaError) => err.code === "cancelled");
    assert.deepEqual(e.load().active + e.load().queued, 0);

    const first = e.generate(request("a", 1000), () => {}, new AbortController().signal);
    const second = e.generate(request("b", 10), () => {}, new AbortController().signal);
    await assert.rejects(e.generate(request("c", 10), () => {}, new AbortController().signal), (err: FlotillaError) => err.code === "overloaded");
    e.fail();
    await assert.rejects(first, (err: FlotillaError) => err.code === "engine_unavailable");
    await assert.rejects(second, (err: FlotillaError) => err.code === "engine_unavailable");
    assert.equal(e.isReady(), false);
    await assert.rejects(e.generate(request("d", 1), () => {}, new AbortController().signal), (err: FlotillaError) => err.code === "engine_unavailable");
    e.repair();
    assert.equal((await collect(e, request("d", 2))).tokens, 2);
    await assert.rejects(e.generate(request("x".repeat(4 * 200_000), 1), () => {}, new AbortController().signal), (err: FlotillaError) => err.code === "context_length_exceeded");
  });

  it("names the known hardware when given an unknown one", () => {
    assert.throws(() => new SimEngine({ hardware: "h1000", model: "llama-3.1-8b" }), /unknown hardware "h1000" \(did you mean h100, a100 or h200\?\); known: h100/);
  });
});

describe("one scheduler for the live gateway and the simulator", () => {
  it("the live Dispatcher routes over SimEngines with the same Policy object the simulator runs, and resumes mid-stream on failure", async () => {
    let scored = 0;
    const policy: Policy = { ...leastLoaded, scorers: leastLoaded.scorers.map((s) => ({ weight: s.weight, scorer: { name: s.scorer.name, score: (c, r) => (scored++, s.scorer.score(c, r)) } })) };

    // Live path: a Fleet of two simulated replicas behind the gateway's Dispatcher.
    const clock = new ManualClock();
    const engines = [engine(), engine()];
    const replicas: Replica[] = engines.map((e, i) => ({ id: `m/${i}`, model: "m", engine: e, health: new ReplicaHealth(clock) }));
    const fleet = new Fleet([{ name: "m", replicas }]);
    await fleet.start(() => {});
    const dispatcher = new Dispatcher(fleet, policy);
    let text = "";
    let tokens = 0;
    let first: Replica | undefined;
    const out = await dispatcher.run(
      dispatcher.model("m"),
      request("hello there", 30),
      (t, n) => {
        text += t;
        tokens += n;
        // Kill the first replica after ten tokens: the answer must go on elsewhere.
        if (tokens === 10) (first!.engine as SimEngine).fail();
      },
      new AbortController().signal,
      (r) => (first ??= r),
    );
    assert.equal(tokens, 30);
    assert.equal(out.usage.completionTokens, 30);
    assert.equal(out.continuations, 1);
    assert.notEqual(out.replica, first);
    assert.equal(text.length, 4 * 30);
    const live = scored;
    assert.equal(live, 2 + 1, "two candidates scored on the first attempt; on the second the failed one is filtered out first");

    // Simulated path: the same policy object, through simulate().
    simulate({ fleet: fleetOf(2), trace: syntheticTrace({ requests: 10, ratePerS: 10, seed: 1 }), policy });
    assert.equal(scored - live, 10 * 2);
    await fleet.close();
  });
});
