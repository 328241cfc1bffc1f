import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import type { Engine } from "../../src/engines/engine.js";
import { candidatesOf, type ServedModel } from "../../src/fleet/fleet.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import { phaseAdmits, REPLICA_PHASES, type ReplicaPhase } from "../../src/scheduler/replica-state.js";

describe("replica phases", () => {
  it("what each phase admits, new requests and resumes (table)", () => {
    const table: Record<ReplicaPhase, [boolean, boolean]> = {
      serving: [true, true],
      draining: [false, true],
      terminating: [false, true],
      removed: [false, false],
    };
    for (const phase of REPLICA_PHASES) assert.deepEqual([phaseAdmits(phase, false), phaseAdmits(phase, true)], table[phase], phase);
  });

  it("the candidate rules: phase, engine readiness and breaker together, panic mode included (table)", () => {
    const clock = new ManualClock();
    const engine = (ready: boolean): Engine => ({ kind: "sim", contextSize: 1024, isReady: () => ready, load: () => ({ active: 0, queued: 0, slots: 1, maxQueue: 1 }) }) as unknown as Engine;
    const replica = (phase: ReplicaPhase, ready = true, ejected = false) => {
      const health = new ReplicaHealth(clock, { failureThreshold: 1, cooldownMs: 1_000 });
      health.phase = phase;
      if (ejected) health.failed();
      return { id: phase, model: "m", engine: engine(ready), health };
    };
    const ready = (m: ServedModel, resume: boolean): string[] => candidatesOf(m, resume).filter((c) => c.ready).map((c) => m.replicas[c.index]!.id);
    const cases: { name: string; replicas: ReturnType<typeof replica>[]; fresh: string[]; resume: string[] }[] = [
      { name: "every phase, all up", replicas: [replica("serving"), replica("draining"), replica("terminating"), replica("removed")], fresh: ["serving"], resume: ["serving", "draining", "terminating"] },
      { name: "a terminating replica whose engine stopped serving takes nothing", replicas: [replica("serving"), replica("terminating", false)], fresh: ["serving"], resume: ["serving"] },
      { name: "panic mode (all ejected) offers what the phase allows, never a removed replica", replicas: [replica("serving", true, true), replica("draining", true, true), replica("removed", true, true)], fresh: ["serving"], resume: ["serving", "draining"] },
      { name: "only a removed replica left: nothing", replicas: [replica("removed")], fresh: [], resume: [] },
    ];
    for (const c of cases) {
      const model: ServedModel = { name: "m", replicas: c.replicas };
      assert.deepEqual(ready(model, false), c.fresh, `${c.name}: new requests`);
      assert.deepEqual(ready(model, true), c.resume, `${c.name}: resumes`);
    }
  });
});
