/**
 * Replicas joining and leaving in the twin (`membership:` in a sim fleet
 * file), by live membership's rules: a removed replica takes no new
 * request, its running ones get `remove_wait_s` and then resume elsewhere;
 * an added one joins cold. Nothing is lost, and a replica is paid for and
 * counted in availability only while it is in the fleet.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildReport } from "../../src/sim/report.js";
import { STATUS, simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { fleetOf } from "./fixtures.js";

const trace = syntheticTrace({ requests: 900, ratePerS: 30, input: { mean: 1500, cv: 0.5 }, output: { mean: 300, cv: 0.5 }, seed: 11 });

describe("simulate: membership changes", () => {
  it("a rolling replacement of every replica under load loses nothing; none takes a request once removed, or before it joins", () => {
    // pool/0-2 serve from the start; pool/3-5 replace them one by one, 5 s apart, from 5 s on.
    const membership = [0, 1, 2].flatMap((i) => [
      { replica: `pool/${i + 3}`, at_s: 5 + 5 * i, change: "add" },
      { replica: `pool/${i}`, at_s: 5 + 5 * i, change: "remove", remove_wait_s: 2 },
    ]);
    const r = simulate({ fleet: fleetOf(6, {}, { membership }), trace });
    assert.equal(r.lost, 0);
    assert.equal(r.unfinished, 0);
    assert.ok([...r.requests.status].every((s) => s === STATUS.done), "every request answered");
    for (let i = 0; i < trace.count; i++) {
      const at = trace.arrivalMs[i]!;
      const replica = r.requests.replica[i]!;
      if (replica >= 3) assert.ok(r.requests.finishMs[i]! > 5000 + 5000 * (replica - 3), `request ${i} finished on pool/${replica} before it joined`);
      // A request that arrived after pool/k's removal never ends there.
      if (replica < 3) assert.ok(at < 5000 + 5000 * replica, `request ${i}, arriving at ${at} ms, ended on pool/${replica} after its removal`);
    }
    assert.ok(r.retries > 0, "what was still running after the wait resumed elsewhere");
    const report = buildReport(r);
    // Each replica is in the fleet for part of the run only: availability counts that part, cost too.
    assert.equal(report.availability.share, 1);
    const span = r.endMs / 1000;
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(report.replicas[i]!.memberS - (5 + 5 * i + 2)) < 1e-6, `pool/${i} left after its wait`);
      assert.ok(Math.abs(report.replicas[i + 3]!.memberS - (span - 5 - 5 * i)) < 1e-6, `pool/${i + 3} joined at ${5 + 5 * i} s`);
    }
    const always = buildReport(simulate({ fleet: fleetOf(6), trace }));
    assert.ok(report.cost.usd < always.cost.usd, "replicas out of the fleet are not paid for");
  });

  it("a replica that fails while draining leaves at the end of its wait; the failure is counted, its repair never comes", () => {
    const fleet = fleetOf(3, {}, { membership: [{ replica: 0, at_s: 5, change: "remove", remove_wait_s: 30 }], failures: { schedule: [{ replica: 0, at_s: 6, down_s: 100 }] } });
    const r = simulate({ fleet, trace });
    assert.equal(r.lost, 0);
    assert.equal(r.replicas[0]!.failures, 1);
    assert.ok(Math.abs(r.replicas[0]!.memberMs - 35_000) < 1e-6);
    assert.ok(Math.abs(r.replicas[0]!.downMs - 29_000) < 1e-6, "down from its failure to the end of its wait");
  });

  it("refuses a change it cannot apply, naming it", () => {
    const bad = (membership: unknown[], message: RegExp): void => assert.throws(() => fleetOf(3, {}, { membership }), message);
    bad([{ replica: 0, at_s: 1, change: "add" }, { replica: 0, at_s: 2, change: "add" }], /membership\.1\.change: replica 0 already has an add \(membership\.0\)/);
    bad([{ replica: 1, at_s: 10, change: "add" }, { replica: 1, at_s: 5, change: "remove" }], /membership\.1\.at_s: replica 1 leaves at 5 s, before it joins at 10 s/);
    bad([{ replica: "pool/7", at_s: 1, change: "remove" }], /membership\.0\.replica: no replica "pool\/7"/);
    bad([{ replica: 0, at_s: 1, change: "scale" }], /membership\.0\.change/);
  });
});
