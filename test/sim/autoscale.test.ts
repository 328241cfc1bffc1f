/**
 * The autoscaler in the twin (`autoscale:` on an island): scheduler/autoscale.ts
 * decides every interval, ordered replicas serve after the provisioning
 * delay and are paid from the order, removed ones drain by live
 * membership's rules. On a compressed day it follows the load with fewer
 * device-hours than static peak provisioning, and loses nothing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveSimFleet } from "../../src/sim/fleet-file.js";
import { buildReport } from "../../src/sim/report.js";
import { STATUS, simulate, type SimResult } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { withDiurnalRate } from "../../src/sim/traces.js";
import { fleetOf } from "./fixtures.js";

const deviceHours = (r: SimResult): number => r.replicas.reduce((s, x) => s + x.memberMs, 0) / 3.6e6;

describe("simulate: autoscaling", () => {
  // A day compressed into 30 minutes: 4:1 peak to trough, 5 requests/s on average.
  const day = withDiurnalRate(syntheticTrace({ requests: 9000, ratePerS: 5, input: { mean: 1500, cv: 0.5 }, output: { mean: 300, cv: 0.5 }, seed: 3 }), { peakToTrough: 4, periodS: 1800 });
  const island = { max_batch: 8 };

  it("follows a daily curve: replicas rise to the peak and fall after it, fewer device-hours than static peak, the same SLO attainment, nothing lost", () => {
    const fixed = simulate({ fleet: fleetOf(8, island), trace: day });
    const fixedGood = buildReport(fixed).goodput.share;
    for (const mode of ["reactive", "predictive"] as const) {
      const r = simulate({ fleet: fleetOf(2, { ...island, autoscale: { min: 1, max: 12, mode, provisioning_s: 60, cooldown_s: 120 } }), trace: day });
      assert.equal(r.lost, 0, mode);
      assert.equal(r.unfinished, 0, mode);
      assert.ok([...r.requests.status].every((s) => s === STATUS.done), `${mode}: every request answered`);
      const members = r.timeline.members;
      const peak = Math.max(...members);
      const peakAt = members.indexOf(peak);
      assert.ok(peak >= 4 && members[0]! <= 2 && members.at(-1)! < peak, `${mode}: replicas over the day ${members.join(",")}`);
      assert.ok(peakAt > members.length / 4 && peakAt < (3 * members.length) / 4, `${mode}: the most replicas around the middle of the day (the curve's peak), at bucket ${peakAt} of ${members.length}`);
      assert.ok(deviceHours(r) < 0.7 * deviceHours(fixed), `${mode}: ${deviceHours(r).toFixed(2)} device-hours against ${deviceHours(fixed).toFixed(2)} static`);
      assert.ok(buildReport(r).goodput.share >= 0.99 * fixedGood, `${mode}: SLO attainment ${buildReport(r).goodput.share} against ${fixedGood} static`);
    }
  });

  it("an ordered replica serves nothing before its provisioning delay is over, and is paid from the order", () => {
    // Overload from the start: 1 replica of 8 slots, 40 requests/s of long answers.
    const trace = syntheticTrace({ requests: 4000, ratePerS: 40, input: { mean: 500, cv: 0.2 }, output: { mean: 400, cv: 0.2 }, seed: 5 });
    const fleet = fleetOf(1, { ...island, max_queue: 100_000, autoscale: { min: 1, max: 3, interval_s: 10, provisioning_s: 60, cooldown_s: 600 } });
    const r = simulate({ fleet, trace, maxQueued: 100_000 });
    assert.equal(r.lost, 0);
    let onNew = 0;
    for (let i = 0; i < trace.count; i++) {
      if (r.requests.replica[i]! === 0) continue;
      onNew++;
      assert.ok(r.requests.firstTokenMs[i]! >= 70_000, `request ${i} had its first token at ${r.requests.firstTokenMs[i]} ms on pool/${r.requests.replica[i]}, ordered at 10 s, serving from 70 s`);
    }
    assert.ok(onNew > 0, "the ordered replicas served");
    for (const x of r.replicas.slice(1)) assert.ok(Math.abs(x.memberMs - (r.endMs - 10_000)) < 1e-6, `${x.name} paid from its order at 10 s: ${x.memberMs} ms of ${r.endMs}`);
  });

  it("beside a static island, an autoscaled one is sized for its share of the load, not the whole fleet's", () => {
    const fleet = resolveSimFleet({
      islands: [
        { name: "fixed", hardware: "h100", model: "llama-3.1-8b", count: 3, ...island },
        { name: "scaled", hardware: "h100", model: "llama-3.1-8b", count: 1, ...island, autoscale: { min: 1, max: 12, mode: "predictive", provisioning_s: 60, cooldown_s: 120 } },
      ],
    });
    const r = simulate({ fleet, trace: day });
    assert.equal(r.lost, 0);
    const alone = simulate({ fleet: fleetOf(1, { ...island, autoscale: { min: 1, max: 12, mode: "predictive", provisioning_s: 60, cooldown_s: 120 } }), trace: day });
    const peak = (x: SimResult): number => Math.max(...x.timeline.members);
    assert.ok(peak(r) - 3 < peak(alone), `with 3 fixed replicas beside it the island peaks at ${peak(r) - 3}, alone at ${peak(alone)}`);
  });

  it("refuses settings it cannot run, naming the key", () => {
    assert.throws(() => fleetOf(5, { autoscale: { min: 1, max: 4 } }), /islands\.0\.count: with autoscale, count is the replicas at the start: between autoscale\.min 1 and max 4, got 5/);
    assert.throws(() => fleetOf(2, { autoscale: { min: 3, max: 2 } }), /islands\.0\.autoscale: min 3 is above max 2/);
    assert.throws(() => fleetOf(2, { autoscale: { max: 4, target_utilisation: 0 } }), /islands\.0\.autoscale\.target_utilisation/);
    assert.throws(() => fleetOf(2, { autoscale: { max: 4, cooldown: 300 } }), /islands\.0\.autoscale: Unrecognized key/);
    assert.throws(() => fleetOf(2, { autoscale: { max: 4 } }, { membership: [{ replica: "pool/3", at_s: 5, change: "add" }] }), /membership\.0\.replica: replica "pool\/3" is in island "pool", whose autoscale sets its membership/);
  });
});
