/**
 * The twin decides as the fleet does. One scenario (arrivals, replica
 * failures and repairs) is driven twice: through the live gateway's
 * AdmissionGate and Dispatcher over SimEngine replicas, all paced on one
 * ManualClock, and through simulate(). Both report every routing decision
 * (time, request size, resume or not, which candidates were ready, the
 * outcome); the two sequences must be equal, event for event. Giving either
 * side a different rule (a retry policy, a readiness rule) must break the
 * equality: the test shows it does, so it cannot pass by accident.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import type { GenerationRequest } from "../../src/core/request.js";
import { Fleet, type Replica } from "../../src/fleet/fleet.js";
import { AdmissionGate } from "../../src/gateway/admission-gate.js";
import { Dispatcher } from "../../src/gateway/dispatcher.js";
import { routeConstants } from "../../src/scheduler/constants.js";
import type { Decision } from "../../src/scheduler/decision.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import { leastLoaded } from "../../src/scheduler/policies.js";
import { markReady, type Readiness } from "../../src/scheduler/readiness.js";
import type { RetryPolicy } from "../../src/scheduler/retry.js";
import { SimEngine } from "../../src/sim/engine.js";
import type { SimFleet } from "../../src/sim/fleet-file.js";
import { seededRandom } from "../../src/sim/random.js";
import { simulate } from "../../src/sim/simulator.js";
import { fleetOf, tinyTrace } from "./fixtures.js";

interface Scenario {
  /** [arrival ms, prompt tokens, output tokens] */
  readonly requests: readonly (readonly [number, number, number])[];
  readonly failures: readonly { readonly replica: number; readonly atMs: number; readonly downMs: number }[];
}

const REPLICAS = 3;
const MAX_BATCH = 2;
const MAX_QUEUE = 6;
const TTFT_SLO_MS = 500;

/** A busy few seconds: the front door queues, one replica fails, then all three do, one after another. */
function scenario(): Scenario {
  const random = seededRandom(11);
  const requests: [number, number, number][] = [];
  let t = 0.25;
  for (let i = 0; i < 90; i++) {
    t += 50 * random() + 0.001;
    requests.push([t, 64 + Math.floor(1500 * random()), 8 + Math.floor(56 * random())]);
  }
  const failures = [
    { replica: 1, atMs: 1_200.37, downMs: 650.11 },
    { replica: 2, atMs: 2_600.13, downMs: 380.29 },
    { replica: 0, atMs: 2_600.21, downMs: 210.43 },
    { replica: 1, atMs: 2_600.29, downMs: 1_900.07 },
  ];
  return { requests, failures };
}

function simFleet(s: Scenario): SimFleet {
  const schedule = s.failures.map((f) => ({ replica: f.replica, at_s: f.atMs / 1000, down_s: f.downMs / 1000 }));
  return fleetOf(REPLICAS, { max_batch: MAX_BATCH, max_queue: MAX_QUEUE, host_kv_gb: 0 }, { failures: { schedule }, slo: { ttft_ms: TTFT_SLO_MS } });
}

interface Rules {
  readonly retry?: Partial<RetryPolicy>;
  readonly readiness?: Readiness;
}

function simulated(s: Scenario, rules: Rules = {}): Decision[] {
  const decisions: Decision[] = [];
  const fleet = simFleet(s);
  simulate({ fleet, trace: tinyTrace(s.requests), policy: leastLoaded, ...rules, onDecision: (d) => decisions.push(d) });
  return decisions;
}

/** Lets every Promise chain the last clock step woke run to its next wait (no I/O here: nothing else can be pending). */
async function settle(): Promise<void> {
  for (let i = 0; i < 8; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function live(s: Scenario, rules: Rules = {}): Promise<Decision[]> {
  const decisions: Decision[] = [];
  const fleetSpec = simFleet(s);
  const island = fleetSpec.islands[0]!;
  const clock = new ManualClock();
  const engines = Array.from(
    { length: REPLICAS },
    () =>
      new SimEngine({ hardware: island.hardware.id, model: island.model.id, precision: island.precision.id, tp: island.tp, maxBatch: MAX_BATCH, maxQueue: MAX_QUEUE, blockTokens: fleetSpec.blockTokens, clock }),
  );
  const replicas: Replica[] = engines.map((engine, i) => ({ id: `m/${i}`, model: "m", engine, health: new ReplicaHealth(clock) }));
  const fleet = new Fleet([{ name: "m", replicas }]);
  await fleet.start(() => {});
  const hints = routeConstants(island.profile, island.energy, { usdPerHour: island.usdPerHour });
  const dispatcher = new Dispatcher(fleet, leastLoaded, {
    clock,
    random: seededRandom(fleetSpec.seed),
    hedge: { enabled: false },
    scoreEveryDecision: true,
    routeHints: () => hints,
    ttftSloMs: TTFT_SLO_MS,
    ...rules,
    onDecision: (d) => decisions.push(d),
  });
  const gate = new AdmissionGate({ clock });
  const model = dispatcher.model("m");
  let open = 0;
  let sent = 0;
  const arrive = (input: number, output: number): void => {
    // Four characters a token, and a prompt of its own (the trace shares no prefix blocks).
    const text = `${sent++}|`.padEnd(4 * input, "w");
    const request: GenerationRequest = { id: `r${sent}`, prompt: { kind: "text", text }, sampling: { maxTokens: output } };
    const signal = new AbortController().signal;
    open++;
    void (async () => {
      const release = await gate.enter(model, { tenant: "", priority: "interactive", cost: () => input + output, deadlineMs: Infinity }, signal).catch(() => undefined);
      if (release === undefined) return void open--;
      await dispatcher.run(model, request, () => {}, signal).catch(() => undefined);
      release();
      open--;
    })();
  };
  // What happens at each moment, in the simulator's order: the clock's own wake-ups (passes, backoffs, polls) up to and including it, then it.
  const happenings: { atMs: number; run: () => void }[] = [
    ...s.failures.flatMap((f) => [
      { atMs: f.atMs, run: () => engines[f.replica]!.fail() },
      { atMs: f.atMs + f.downMs, run: () => engines[f.replica]!.repair() },
    ]),
    ...s.requests.map(([atMs, input, output]) => ({ atMs, run: () => arrive(input, output) })),
  ].sort((a, b) => a.atMs - b.atMs);
  for (const h of happenings) {
    while (clock.nextWakeMs <= h.atMs) {
      clock.advanceTo(clock.nextWakeMs);
      await settle();
    }
    clock.advanceTo(h.atMs);
    h.run();
    await settle();
  }
  while (open > 0 && clock.nextWakeMs < Infinity) {
    clock.advanceTo(clock.nextWakeMs);
    await settle();
  }
  assert.equal(open, 0, "every live request ended");
  gate.close();
  await fleet.close();
  return decisions;
}

/** Decisions without their plugin times (wall clock, never equal twice). */
const outcomes = (ds: readonly Decision[]): unknown[] => ds.map(({ trace: _, ...d }) => d);

describe("the twin decides as the fleet does", () => {
  const s = scenario();

  it("the live dispatcher and simulate() make the same decisions, event for event", async () => {
    const sim = simulated(s);
    const fleet = await live(s);
    // The scenario reaches every rule: resumes after failures, waits with no replica ready, replicas left out as not ready.
    assert.ok(sim.some((d) => d.resume), "a resume");
    assert.ok(sim.some((d) => d.outcome === "no_ready_replica"), "a wait for a ready replica");
    assert.ok(sim.some((d) => d.ready.length === 1), "decisions with one replica ready");
    assert.ok(sim.length > s.requests.length, `${sim.length} decisions for ${s.requests.length} requests`);
    // Everything but the plugins' wall times: the scores each scorer gave each candidate included.
    const comparable = (d: Decision | undefined): string => JSON.stringify(d === undefined ? d : { ...d, trace: { plugins: d.trace?.plugins.map((p) => p.name), scored: d.trace?.scored } });
    assert.ok(sim.every((d) => d.trace?.scored !== undefined && (d.trace.scored.length > 0 || typeof d.outcome === "string")), "every decision is explained");
    const first = sim.findIndex((d, i) => comparable(d) !== comparable(fleet[i]));
    assert.equal(first, -1, `decision ${first} differs:\n  simulator: ${JSON.stringify(sim[first])}\n  live:      ${JSON.stringify(fleet[first])}`);
    assert.equal(fleet.length, sim.length);
  });

  it("fails when the simulator is given a different retry rule", () => {
    assert.notDeepEqual(outcomes(simulated(s, { retry: { readyPollMs: 40 } })), outcomes(simulated(s)));
  });

  it("fails when the live dispatcher is given a different readiness rule", async () => {
    // A rule that forgets the engine: a replica that is down stays a candidate.
    const forgetful: Readiness = (candidates, statusOf, resume) => markReady(candidates, (i) => ({ ...statusOf(i), engineReady: true }), resume);
    assert.notDeepEqual(outcomes(await live(s, { readiness: forgetful })), outcomes(simulated(s)));
  });
});
