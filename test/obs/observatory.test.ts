import assert from "node:assert/strict";
import { describe, it } from "node:test";
import parsePrometheus from "parse-prometheus-text-format";
import { ManualClock } from "../../src/core/clock.js";
import { FlotillaError } from "../../src/core/errors.js";
import type { Engine, EngineLoad } from "../../src/engines/engine.js";
import { Fleet, type Replica } from "../../src/fleet/fleet.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import type { Ticket } from "../../src/metering/tenancy.js";
import { createMetrics, scrape } from "../../src/obs/metrics.js";
import { findHardware, findModel, findPrecision, requestRooflineMs, rooflineProfile } from "../../src/hardware/index.js";
import { hardwareByReplica, Observatory } from "../../src/obs/observatory.js";
import { ttftHistogram } from "../../src/obs/sim-reports.js";

/** An engine whose readiness and load the test sets. */
function fakeEngine(state: { ready: boolean; load: EngineLoad }): Engine {
  return {
    kind: "openai",
    contextSize: 100,
    start: async () => {},
    isReady: () => state.ready,
    load: () => state.load,
    countPromptTokens: () => 10,
    generate: () => Promise.reject(new Error("not used")),
    close: async () => {},
  };
}

const ticket: Ticket = { price: () => ({ energy_j: 4, cost_usd: 0.002 }), settle: async () => {} };
const log = { info: () => {} };

type Setup = { clock: ManualClock; obs: Observatory; a: { ready: boolean; load: EngineLoad }; b: { ready: boolean; load: EngineLoad }; ra: Replica; rb: Replica };

function setup(opts: Partial<ConstructorParameters<typeof Observatory>[1]> = {}): Setup {
  const clock = new ManualClock(0, 1_700_000_000_000);
  const a = { ready: true, load: { active: 2, queued: 1, slots: 4, maxQueue: 8 } };
  const b = { ready: false, load: { active: 0, queued: 0, slots: 4, maxQueue: 8 } };
  const ra: Replica = { id: "m/0", model: "m", engine: fakeEngine(a), health: new ReplicaHealth(clock) };
  const rb: Replica = { id: "m/1", model: "m", engine: fakeEngine(b), health: new ReplicaHealth(clock) };
  const obs = new Observatory(new Fleet([{ name: "m", replicas: [ra, rb] }]), { clock, ...opts });
  return { clock, obs, a, b, ra, rb };
}

describe("Observatory", () => {
  it("utilisation is busy slot-time of replicas up, availability replica-time up", async () => {
    const { clock, obs, b } = setup();
    const registry = createMetrics(obs);
    obs.tick();
    clock.advanceTo(10_000);
    const p1 = obs.tick();
    assert.equal(p1.availability, 0.5);
    assert.equal(p1.utilization, 0.5, "2 of the 4 slots of the one replica up");
    assert.equal(p1.running, 2);
    assert.equal(p1.queued, 1);

    // The second replica comes up idle for the next 10 s. Over the 20 s: availability 30/40 replica-seconds,
    // utilisation 40 busy of 120 slot-seconds up (80 of m/0, 40 of m/1).
    b.ready = true;
    clock.advanceTo(20_000);
    const p2 = obs.tick();
    assert.equal(p2.availability, 1);
    assert.equal(p2.utilization, 0.25);
    const k = obs.kpis();
    assert.equal(k.availability, 0.75);
    assert.equal(k.utilization, 1 / 3);
    assert.equal(k.efficiency, null, "no replica names its hardware: no physical limit to measure against");

    const families = new Map(parsePrometheus(await scrape(obs, registry)).map((f) => [f.name, f]));
    const value = (name: string, replica: string): number => Number(families.get(name)?.metrics.find((m) => m.labels?.replica === replica)?.value);
    assert.equal(value("flotilla_replica_busy_slot_seconds_total", "m/0"), 40);
    assert.equal(value("flotilla_replica_ready_slot_seconds_total", "m/0"), 80);
    assert.equal(value("flotilla_replica_ready_seconds_total", "m/1"), 10);
    assert.equal(value("flotilla_replica_observed_seconds_total", "m/1"), 20);
    assert.equal(Number(families.get("flotilla_fleet_efficiency_ratio")?.metrics[0]?.value), NaN, "unknown, not 0%");
    assert.equal(families.get("flotilla_replica_roofline_seconds_total")?.metrics.length ?? 0, 0);
  });

  it("follows a request across a continuation: KV held, tokens, continuations, energy", () => {
    const { clock, obs, ra, rb } = setup();
    const watch = obs.start({ model: "m", endpoint: "chat", stream: true, generation: { id: "r1", prompt: { kind: "text", text: "hello" }, sampling: { maxTokens: 20 } }, tenant: "acme", ticket, log });
    assert.equal(obs.inFlight, 1);
    const seen: string[] = [];
    const sink = watch.sink((t) => seen.push(t));
    watch.attempt(ra);
    clock.advanceTo(50);
    sink("a", 2);
    sink("b", 3);
    obs.refresh();
    assert.equal(obs.stats("m/0")!.kv, 15 / 400, "prompt (10) + output (5) of 4 slots x 100 tokens");
    watch.attempt(rb); // m/0 died mid-answer
    assert.equal(obs.stats("m/0")!.resident, 0);
    assert.equal(obs.stats("m/1")!.resident, 15, "the replacement holds the prompt and the replayed text");
    sink("c", 1);
    clock.advanceTo(150);
    watch.finish({ status: "ok", usage: { promptTokens: 12, completionTokens: 7, cachedTokens: 0 }, replica: "m/1", attempts: 2, continuations: 1, durationMs: 150 });
    watch.finish({ status: "ok", usage: undefined, replica: "m/1", attempts: 2, continuations: 1, durationMs: 150 });
    assert.deepEqual(seen, ["a", "b", "c"]);
    const s0 = obs.stats("m/0")!;
    const s1 = obs.stats("m/1")!;
    assert.equal(s0.continuations, 1);
    assert.equal(s0.failovers, 0);
    assert.equal(s0.outputTokens, 5);
    assert.equal(s1.outputTokens, 2, "1 streamed, 1 only in the engine's usage");
    assert.equal(s1.inputTokens, 12);
    assert.equal(s1.resident, 0);
    assert.equal(obs.inFlight, 0, "finish counts once");
    assert.equal(obs.finished, 1);
    assert.deepEqual([...obs.energy.values()], [{ tenant: "acme", model: "m", hardware: "remote", joules: 4, usd: 0.002 }]);
    assert.equal(obs.ttftQuantile(0.99, 60_000), 0.05);
  });

  it("counts a failure by its code, and a failover by the replica that failed first", () => {
    const { obs, ra, rb } = setup();
    const watch = obs.start({ model: "m", endpoint: "completion", stream: false, generation: { id: "r2", prompt: { kind: "text", text: "x" }, sampling: {} }, tenant: undefined, ticket, log });
    watch.attempt(ra);
    watch.attempt(rb);
    watch.failed(new FlotillaError("overloaded", "full"));
    watch.finish({ status: "failed", usage: undefined, replica: "m/1", attempts: 2, continuations: 0, durationMs: 5 });
    assert.equal(obs.stats("m/0")!.failovers, 1);
    assert.deepEqual([...obs.requests.values()], [{ model: "m", endpoint: "completion", status: "overloaded", count: 1 }]);
    assert.equal(obs.energy.size, 0, "failed requests are not priced");
  });

  it("measures each replica's tokens/s over the last ticks", () => {
    const { clock, obs } = setup();
    const s0 = obs.stats("m/0")!;
    obs.tick();
    s0.outputTokens += 30;
    clock.advanceTo(1_000);
    obs.tick();
    assert.equal(s0.tokensPerS, 30);
    s0.outputTokens += 10;
    clock.advanceTo(2_000);
    obs.tick();
    assert.equal(s0.tokensPerS, 20, "40 tokens over 2 s");
    for (let t = 3_000; t <= 6_000; t += 1_000) {
      clock.advanceTo(t);
      obs.tick();
    }
    assert.equal(s0.tokensPerS, 0, "quiet for longer than the window");
  });

  it("labels hardware as the fleet file names it, and energy as the tenancy priced it", () => {
    const named = hardwareByReplica({ models: [{ name: "m", replicas: [{ count: 2, hardware: "h100" }, { count: 1 }] }, { name: "n", replicas: [{ count: 1, hardware: "lpddr-chip" }] }] });
    assert.deepEqual(named, { "m/0": "h100", "m/1": "h100", "n/0": "lpddr-chip" });
    const clock = new ManualClock();
    const state = { ready: true, load: { active: 0, queued: 0, slots: 1, maxQueue: 1 } };
    const r: Replica = { id: "m/0", model: "m", engine: fakeEngine(state), health: new ReplicaHealth(clock) };
    const obs = new Observatory(new Fleet([{ name: "m", replicas: [r] }]), { clock, hardware: named });
    assert.equal(obs.stats("m/0")!.hardware, "h100");
    const priced: Ticket = { price: () => ({ hardware: "h200", energy_j: 1, cost_usd: 0 }), settle: async () => {} };
    const w = obs.start({ model: "m", endpoint: "chat", stream: false, generation: { id: "x", prompt: { kind: "text", text: "x" }, sampling: {} }, tenant: undefined, ticket: priced, log });
    w.attempt(r);
    w.finish({ status: "ok", usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 }, replica: "m/0", attempts: 1, continuations: 0, durationMs: 1 });
    assert.deepEqual([...obs.energy.values()], [{ tenant: "anonymous", model: "m", hardware: "h200", joules: 1, usd: 0 }]);
  });

  it("bins a sim report's requests.csv into the live view's TTFT buckets", () => {
    const csv = "id,arrival_ms,input_tokens,output_tokens,outcome,ttft_ms,tpot_ms\n0,0,5,5,done,3,1\n1,1,5,5,done,40,1\n2,2,5,5,rejected,,\n3,3,5,5,done,90000,1\n";
    const h = ttftHistogram(csv)!;
    assert.equal(h.counts.length, h.boundsS.length + 1);
    assert.equal(h.counts[0], 1, "3 ms <= 5 ms");
    assert.equal(h.counts[3], 1, "40 ms in (25, 50] ms");
    assert.equal(h.counts.at(-1), 1, "90 s past the last bound");
    assert.equal(h.counts.reduce((a, b) => a + b, 0), 3, "rejected requests have no TTFT");
  });

  it("efficiency: work at the physical limit over time up, x time up over time watched, x requests answered in full over requests ended", async () => {
    // m/0 is an H100 serving Llama-3.1-8B in BF16; m/1 names no hardware, so it has no limit and stays out.
    const roof = rooflineProfile(findModel("llama-3.1-8b"), findHardware("h100"), findPrecision("bf16"));
    const { clock, obs, ra } = setup({ rooflineProfile: (id) => (id === "m/0" ? roof : undefined) });
    const registry = createMetrics(obs);
    obs.tick();
    const run = (status: "ok" | "failed", tokens: number): void => {
      const w = obs.start({ model: "m", endpoint: "chat", stream: true, generation: { id: status, prompt: { kind: "text", text: "hi" }, sampling: {} }, tenant: undefined, ticket, log });
      const sink = w.sink(() => {});
      w.attempt(ra);
      clock.advanceTo(clock.now() + 10);
      for (let i = 0; i < tokens; i++) sink("t", 1);
      const usage = status === "ok" ? { promptTokens: 1000, completionTokens: tokens, cachedTokens: 0 } : undefined;
      w.finish({ status, usage, replica: "m/0", attempts: 1, continuations: 0, durationMs: 10 });
    };
    run("ok", 200);
    run("failed", 5); // cut off after 5 tokens of its 10-token prompt (the engine's count)
    clock.advanceTo(10_000);
    const point = obs.tick();
    const atLimitS = (requestRooflineMs(roof, { promptTokens: 1000, cachedTokens: 0, outputTokens: 200, batch: 1 }) + requestRooflineMs(roof, { promptTokens: 10, cachedTokens: 0, outputTokens: 5, batch: 1 })) / 1000;
    const e = obs.stats("m/0")!.efficiency()!;
    assert.ok(Math.abs(e.roofline - atLimitS / 10) < 1e-12, `${e.roofline} against ${atLimitS / 10}: 10 s up`);
    assert.equal(e.availability, 1);
    assert.equal(e.goodput, 0.5, "one of the two requests was answered in full");
    assert.ok(Math.abs(e.value - (atLimitS / 10) * 0.5) < 1e-12);
    assert.equal(obs.stats("m/1")!.efficiency(), undefined);
    assert.equal(point.efficiency, e.value, "the fleet's is m/0's: m/1 has no limit");
    assert.equal(obs.kpis().efficiency, e.value);

    const families = new Map(parsePrometheus(await scrape(obs, registry)).map((f) => [f.name, f]));
    const series = (name: string): readonly { labels?: Record<string, string>; value?: string }[] => families.get(name)?.metrics ?? [];
    assert.deepEqual(series("flotilla_replica_roofline_seconds_total").map((m) => m.labels?.replica), ["m/0"]);
    assert.ok(Math.abs(Number(series("flotilla_replica_roofline_seconds_total")[0]?.value) - atLimitS) < 1e-9);
    assert.deepEqual(series("flotilla_replica_efficiency_ratio").map((m) => m.labels?.replica), ["m/0"]);
    assert.equal(Number(series("flotilla_fleet_efficiency_ratio")[0]?.value), e.value);
    assert.equal(Number(series("flotilla_replica_requests_ended_total").find((m) => m.labels?.replica === "m/0")?.value), 2);

    // A minute later, idle: the requests have left the window, the hardware sat at 0% of its limit.
    for (let t = 20_000; t <= 80_000; t += 10_000) {
      clock.advanceTo(t);
      obs.tick();
    }
    const later = obs.stats("m/0")!.efficiency()!;
    assert.equal(later.roofline, 0);
    assert.equal(later.goodput, 1, "no request ended in the window: none was wasted");
  });
});
