/**
 * Several gateways in the twin (sim/router-instances.ts): one instance is
 * the single router, decision for decision; several lose prefix hits with
 * their own indexes alone, and the coordination-free owner wins them back;
 * gateways that tell each other their placements keep them all.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FleetFileError, resolveSimFleet } from "../../src/sim/fleet-file.js";
import { buildReport } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import { loadTrace, truncateTrace } from "../../src/sim/traces.js";
import { RouterInstances } from "../../src/sim/router-instances.js";
import { MOONCAKE, TRACES_ABSENT } from "./fixtures.js";

const fleetWith = (policy: string, router: Record<string, unknown> = {}) =>
  resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count: 8, model: "llama-3.1-70b", precision: "fp8", tp: 2 }], router: { policy, ...router } });

describe("router instances in the twin", () => {
  it("one instance is the single router: the same decisions, the same report", { skip: TRACES_ABSENT }, async () => {
    const trace = truncateTrace(await loadTrace(MOONCAKE), 1500);
    const decisions = (router?: { instances: number }): unknown[] => {
      const out: unknown[] = [];
      simulate({ fleet: fleetWith("prefix-aware"), trace, ...(router === undefined ? {} : { router }), onDecision: (d) => out.push(d.outcome) });
      return out;
    };
    const plain = decisions();
    assert.equal(plain.length >= 1500, true);
    assert.deepEqual(decisions({ instances: 1 }), plain);
    const a = buildReport(simulate({ fleet: fleetWith("prefix-aware"), trace }));
    const b = buildReport(simulate({ fleet: fleetWith("prefix-aware", { instances: 1 }), trace }));
    assert.deepEqual(a.cache, b.cache);
    assert.deepEqual(a.latency, b.latency);
  });

  it("four gateways with their own indexes lose prefix hits; the owner keeps most of them", { skip: TRACES_ABSENT }, async () => {
    const trace = truncateTrace(await loadTrace(MOONCAKE), 3000);
    const hits = (policy: string, instances: number): number => buildReport(simulate({ fleet: fleetWith(policy, { instances }), trace })).cache.hitRate;
    const single = hits("prefix-aware", 1);
    const four = hits("prefix-aware", 4);
    const owned = hits("prefix-owner", 4);
    assert.ok(four < 0.8 * single, `own indexes only: ${four} vs ${single} with one router`);
    assert.ok(owned > four * 1.2, `with the owner: ${owned} vs ${four}`);
  });

  it("four gateways telling each other their placements and counts keep a single router's hits", { skip: TRACES_ABSENT }, async () => {
    const trace = truncateTrace(await loadTrace(MOONCAKE), 3000);
    const hits = (router: Record<string, unknown>): number => buildReport(simulate({ fleet: fleetWith("prefix-aware", router), trace })).cache.hitRate;
    const single = hits({ instances: 1 });
    const alone = hits({ instances: 4 });
    const told = hits({ instances: 4, peer_sync_ms: 50 });
    assert.ok(told >= 0.95 * single, `told every 50 ms: ${told} vs ${single} with one router`);
    assert.ok(told > alone * 1.2, `told: ${told}, alone: ${alone}`);
    assert.equal(hits({ instances: 1, peer_sync_ms: 50 }), single, "one gateway has no peers: the setting changes nothing");
  });

  it("bad settings are refused, naming the key", () => {
    assert.throws(() => fleetWith("prefix-aware", { instances: 0 }), (err: unknown) => err instanceof FleetFileError && /router\.instances/.test(err.message));
    assert.throws(() => fleetWith("prefix-aware", { load_report_ms: -1 }), /router\.load_report_ms/);
    assert.throws(() => fleetWith("prefix-aware", { peer_sync_ms: -5 }), /router\.peer_sync_ms/);
    assert.throws(() => new RouterInstances(4, 1, { instances: 2, peerSyncMs: Number.NaN }), /peer_sync_ms/);
    assert.throws(() => new RouterInstances(4, 1, { instances: 2.5 }), /integer/);
  });
});
