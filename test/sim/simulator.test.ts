import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { describe, it } from "node:test";
import { prefillMs } from "../../src/hardware/index.js";
import { route } from "../../src/scheduler/pipeline.js";
import type { Policy } from "../../src/scheduler/pipeline.js";
import { leastLoaded, policies } from "../../src/scheduler/policies.js";
import { buildReport } from "../../src/sim/report.js";
import { STATUS, schedulerRoute, simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { loadTrace } from "../../src/sim/traces.js";
import { MOONCAKE, fleetOf, tinyTrace, TRACES_ABSENT } from "./fixtures.js";

const ROOT = resolve(import.meta.dirname, "../..");

/** The policy with a scorer that counts its calls, for proving which code ran. */
function counting(base: Policy): { policy: Policy; calls: () => number } {
  let calls = 0;
  const policy: Policy = {
    ...base,
    scorers: base.scorers.map((s) => ({ weight: s.weight, scorer: { name: s.scorer.name, score: (c, r) => (calls++, s.scorer.score(c, r)) } })),
  };
  return { policy, calls: () => calls };
}

describe("simulate: known answers", () => {
  it("one request alone: TTFT equals the model's prefill time", () => {
    const fleet = fleetOf(1);
    const trace = tinyTrace([[250, 6000, 10]]);
    const r = simulate({ fleet, trace });
    const ttft = r.requests.firstTokenMs[0]! - 250;
    assert.ok(Math.abs(ttft - prefillMs(fleet.islands[0]!.profile, 6000, 0)) < 1e-9, `TTFT ${ttft}`);
    assert.equal(r.requests.status[0], STATUS.done);
  });

  it("two identical prompts: the second hits the cache", () => {
    const fleet = fleetOf(1);
    const blocks = [0, 1, 2, 3];
    const trace = tinyTrace([
      [0, 2000, 4, blocks],
      [10_000, 2000, 4, blocks],
    ]);
    const r = simulate({ fleet, trace });
    const c = r.replicas[0]!.counters;
    assert.deepEqual([c.blockRefs, c.blockHits], [8, 4]);
    assert.equal(r.requests.cachedTokens[0], 0);
    assert.equal(r.requests.cachedTokens[1], 1999);
    const ttft1 = r.requests.firstTokenMs[1]! - 10_000;
    assert.ok(ttft1 < (r.requests.firstTokenMs[0]! - 0) / 5, `warm TTFT ${ttft1}`);
  });

  it("Mooncake conversation, one replica, unlimited cache: exactly 105,710 of 288,500 block references reused (36.64%)", { skip: TRACES_ABSENT }, async () => {
    const trace = await loadTrace(MOONCAKE);
    const fleet = fleetOf(1, { max_queue: 1_000_000 });
    const r = simulate({ fleet, trace, kvCapacityTokens: Infinity });
    const c = r.replicas[0]!.counters;
    assert.equal(r.unfinished, 0);
    assert.equal(c.preemptions, 0);
    assert.equal(c.blockRefs, 288_500);
    assert.equal(c.blockHits, 105_710);
    assert.equal((c.blockHits / c.blockRefs).toFixed(4), "0.3664");
    assert.equal(buildReport(r).cache.hitRate.toFixed(4), "0.3664");
  });
});

describe("simulate: the production scheduler", () => {
  it("calls the very route() the live gateway's dispatcher imports", async () => {
    assert.equal(schedulerRoute, route);
    // Both modules import route from the same file.
    const importOf = async (file: string): Promise<string> => {
      const src = await readFile(resolve(ROOT, file), "utf8");
      const m = /import\s*\{[^}]*\broute\b[^}]*\}\s*from\s*"([^"]+)"/.exec(src);
      assert.ok(m !== null, `${file} imports route`);
      return resolve(dirname(resolve(ROOT, file)), m[1]!);
    };
    const gateway = await importOf("src/gateway/dispatcher.ts");
    const sim = await importOf("src/sim/simulator.ts");
    assert.equal(sim, gateway);
    assert.equal(sim, resolve(ROOT, "src/scheduler/pipeline.js"));
  });

  it("runs whatever Policy object it is given, once per request, over every replica of a small fleet", () => {
    const { policy, calls } = counting(leastLoaded);
    const trace = syntheticTrace({ requests: 200, ratePerS: 20, seed: 3 });
    const r = simulate({ fleet: fleetOf(4), trace, policy });
    assert.equal(r.decisions, 200);
    assert.equal(calls(), 200 * 4, "one score per candidate per decision: all 4 replicas are candidates");
    assert.equal(r.policy, "least-loaded");
    assert.ok(Object.values(policies).includes(leastLoaded));
  });

  it("samples k candidates per decision in fleets larger than k", () => {
    const { policy, calls } = counting(leastLoaded);
    const trace = syntheticTrace({ requests: 300, ratePerS: 100, seed: 3 });
    const r = simulate({ fleet: fleetOf(200, {}, { router: { sample: 8 } }), trace, policy });
    assert.equal(calls(), 300 * 8);
    assert.equal(r.unfinished + r.lost, 0);
    const used = new Set(r.requests.replica);
    assert.ok(used.size > 100, `${used.size} replicas used`);
  });

  it("is deterministic for a seed", () => {
    const trace = syntheticTrace({ requests: 300, ratePerS: 30, seed: 5 });
    const a = simulate({ fleet: fleetOf(3), trace });
    const b = simulate({ fleet: fleetOf(3), trace });
    assert.deepEqual(a.requests.replica, b.requests.replica);
    assert.deepEqual(a.requests.finishMs, b.requests.finishMs);
  });

  it("rejects what no replica can take, with the router's reason", () => {
    const fleet = fleetOf(1, { max_batch: 1, max_queue: 1 });
    const trace = tinyTrace([
      [0, 100, 50],
      [0, 100, 50],
      [0, 100, 50],
      [0, 200_000, 1],
    ]);
    const r = simulate({ fleet, trace });
    assert.deepEqual(r.rejected, { no_ready_replica: 0, context_length_exceeded: 1, overloaded: 1 });
    assert.deepEqual([...r.requests.status], [STATUS.done, STATUS.done, STATUS.rejected, STATUS.rejected]);
  });
});

describe("simulate: failures", () => {
  it("1 of 3 replicas down: its requests move to the others and none is lost", () => {
    const trace = syntheticTrace({ requests: 600, ratePerS: 30, input: { mean: 2000, cv: 0.5 }, output: { mean: 200, cv: 0.5 }, seed: 8 });
    const fleet = fleetOf(3, {}, { failures: { schedule: [{ replica: 0, at_s: 5, down_s: 1e6 }] } });
    const r = simulate({ fleet, trace });
    const report = buildReport(r);
    assert.equal(report.requests.completed, 600);
    assert.equal(r.lost, 0);
    assert.equal(report.requests.rejected, 0);
    assert.ok(r.retries > 0, "the failed replica's requests were re-routed");
    assert.equal(r.replicas[0]!.failures, 1);
    for (let i = 0; i < trace.count; i++) {
      if (trace.arrivalMs[i]! > 5000) assert.notEqual(r.requests.replica[i], 0, `request ${i} went to the down replica`);
      if (r.requests.retries[i]! > 0) assert.ok(r.requests.finishMs[i]! > 5000);
    }
    assert.ok(Math.max(...r.timeline.down) === 1);
  });

  it("random failures and repairs: retries counted, nothing lost", () => {
    const trace = syntheticTrace({ requests: 800, ratePerS: 8, seed: 9 });
    const fleet = fleetOf(3, {}, { failures: { mtbf_s: 15, repair_s: 10, retry_ms: 500 } });
    const r = simulate({ fleet, trace });
    const failures = r.replicas.reduce((s, x) => s + x.failures, 0);
    assert.ok(failures >= 6, `${failures} failures`);
    assert.ok(r.retries > 0);
    assert.equal(r.lost, 0);
    assert.equal(r.unfinished, 0);
    const notDone = [...r.requests.status].filter((s) => s !== STATUS.done).length;
    assert.equal(notDone, r.rejected.no_ready_replica + r.rejected.overloaded, "only new arrivals finding no replica up are refused");
    const report = buildReport(r);
    assert.ok(report.replicas.every((x) => x.downS > 0));
    // mtbf 15 s, repair 10 s: about 40% of replica-time down once the process settles.
    const downShare = 1 - report.availability.share;
    assert.ok(downShare > 0.2 && downShare < 0.5, `down ${(downShare * 100).toFixed(1)}% of replica-time`);
    assert.equal(report.availability.failures, failures);
  });

  it("every replica down at once: displaced requests wait and resume after repair; arrivals meanwhile are refused", () => {
    const trace = syntheticTrace({ requests: 200, ratePerS: 20, arrival: "uniform", seed: 2 });
    const schedule = [0, 1, 2].map((replica) => ({ replica, at_s: 4, down_s: 2 + replica }));
    const r = simulate({ fleet: fleetOf(3, {}, { failures: { schedule, retry_ms: 250 } }), trace });
    assert.equal(Math.max(...r.timeline.down), 3);
    assert.equal(r.lost, 0);
    assert.ok(r.retries > 0);
    // Arrivals between 4 s and 6 s (when the first replica is back) find no replica ready.
    assert.ok(r.rejected.no_ready_replica >= 35 && r.rejected.no_ready_replica <= 41, `${r.rejected.no_ready_replica} refused`);
    for (let i = 0; i < trace.count; i++) {
      if (r.requests.retries[i]! > 0) {
        assert.equal(r.requests.status[i], STATUS.done);
        assert.ok(r.requests.finishMs[i]! > 6000, "served after the first repair");
      }
    }
  });

  it("stops at --duration's horizon and reports the rest as unfinished", () => {
    const trace = syntheticTrace({ requests: 100, ratePerS: 10, seed: 1 });
    const r = simulate({ fleet: fleetOf(1), trace, untilMs: 3000 });
    assert.ok(r.unfinished > 50);
    assert.ok(r.endMs <= 3000);
  });
});
