import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FITTED_PARAMS, decodeStepMs, knownHardware, makePerfProfile, findHardware, findModel, findPrecision } from "../../src/hardware/index.js";
import { FleetFileError, parseSimFleetYaml, resolveSimFleet } from "../../src/sim/fleet-file.js";
import { leastLoaded } from "../../src/scheduler/policies.js";

const EXAMPLE = `
islands:
  - name: h100-pool
    hardware: h100
    count: 16          # replicas
    model: llama-3.1-70b
    precision: fp8
    tp: 2
  - name: spare
    hardware: h200
    count: 2
    model: llama-3.1-70b
router: { policy: least-loaded }
slo: { ttft_ms: 1500, tpot_ms: 80 }
failures: { mtbf_s: 3600, repair_s: 600, schedule: [{ replica: "spare/1", at_s: 10, down_s: 5 }] }
`;

describe("fleet file", () => {
  it("reads islands, router, SLOs and failures, resolving names against the catalog", () => {
    const f = parseSimFleetYaml(EXAMPLE, "fleet.yaml");
    assert.equal(f.replicaCount, 18);
    assert.equal(f.islands.length, 2);
    const [a, b] = f.islands;
    assert.equal(a!.hardware.id, "h100");
    assert.equal(a!.tp, 2);
    assert.equal(a!.firstReplica, 0);
    assert.equal(b!.firstReplica, 16);
    assert.equal(b!.precision.id, "bf16", "bf16 by default");
    assert.equal(b!.tp, 2, "the smallest power of two that holds 70B in bf16 and a full context on an H200");
    const expected = makePerfProfile(findModel("llama-3.1-70b"), findHardware("h100"), findPrecision("fp8"), { tp: 2 });
    assert.equal(a!.profile.kvCapacityTokens, expected.kvCapacityTokens);
    assert.equal(a!.usdPerHour, 2 * findHardware("h100").price.rentUsdPerHour);
    assert.equal(f.policy, leastLoaded, "the policy object itself, by name");
    assert.deepEqual(f.slo, { ttftMs: 1500, tpotMs: 80 });
    assert.deepEqual(f.failures?.schedule, [{ replica: 17, atMs: 10_000, downMs: 5000 }]);
    assert.equal(f.failures?.mtbfMs, 3_600_000);
    assert.equal(f.blockTokens, 512);
    assert.equal(f.chunkedPrefill, true);
    assert.equal(f.sample, 16);
  });

  it("applies defaults: SLO 2 s / 100 ms, least-loaded, max batch 256, no failures", () => {
    const f = resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b" }] });
    assert.deepEqual(f.slo, { ttftMs: 2000, tpotMs: 100 });
    assert.equal(f.policy.name, "least-loaded");
    assert.equal(f.islands[0]!.name, "h100-0");
    assert.equal(f.islands[0]!.maxBatch, 256);
    assert.equal(f.failures, undefined);
  });

  it("overrides scorer weights by scorer name", () => {
    const f = resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b" }], router: { policy: "least-loaded", weights: { "least-loaded": 3 } } });
    assert.equal(f.policy.scorers[0]!.weight, 3);
    assert.equal(leastLoaded.scorers[0]!.weight, 1, "the shared policy object is untouched");
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b" }], router: { weights: { nope: 1 } } }), /router\.weights: policy "least-loaded" has no scorer "nope"/);
  });

  it("rejects unknown keys, naming their path", () => {
    assert.throws(
      () => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", tensor_parallel: 2 }] }),
      (e: Error) => e instanceof FleetFileError && /islands\.0: Unrecognized key: "tensor_parallel"/.test(e.message),
    );
    assert.throws(() => resolveSimFleet({ islands: [], slo: { ttft: 1 } }), (e: Error) => /islands: /.test(e.message) && /slo: Unrecognized key: "ttft"/.test(e.message));
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 0, model: "llama-3.1-8b" }] }), /islands\.0\.count/);
    // A key the simulator no longer reads says why, rather than being ignored.
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b" }], failures: { retry_ms: 500 } }), /failures\.retry_ms: retry_ms is no longer read: .*gateway's retry rules/);
  });

  it("names the known ones when hardware, model, precision or policy is unknown", () => {
    assert.throws(
      () => resolveSimFleet({ islands: [{ hardware: "h1000", count: 1, model: "llama-3.1-8b" }] }),
      (e: Error) => e.message.includes(`islands.0.hardware: unknown hardware "h1000" (did you mean h100, a100 or h200?); known: ${knownHardware().join(", ")}`),
    );
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "gpt-9" }] }), /islands\.0\.model: unknown model "gpt-9"; known: .*llama-3\.1-70b/);
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", precision: "fp3" }] }), /islands\.0\.precision: unknown precision "fp3"/);
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b" }], router: { policy: "psychic" } }), /router\.policy: unknown policy "psychic"; known: least-loaded/);
  });

  it("says when a model does not fit at the tensor-parallel degree given", () => {
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-70b", tp: 1 }] }), /islands\.0\.tp: llama-3\.1-70b in bf16 does not fit on h100 with tp 1; tp 2 fits/);
  });

  it("checks scheduled failures name a replica, and islands are not listed twice", () => {
    assert.throws(
      () => resolveSimFleet({ islands: [{ name: "a", hardware: "h100", count: 2, model: "llama-3.1-8b" }], failures: { schedule: [{ replica: 2, at_s: 1, down_s: 1 }] } }),
      /failures\.schedule\.0\.replica: no replica 2 \(the fleet has 2/,
    );
    assert.throws(
      () => resolveSimFleet({ islands: [{ name: "a", hardware: "h100", count: 1, model: "llama-3.1-8b" }, { name: "a", hardware: "h100", count: 1, model: "llama-3.1-8b" }] }),
      /islands\.1\.name: island "a" is listed twice/,
    );
  });

  it("runs an island with its profile: the engine's parameters on that island's hardware", () => {
    const engine = { params: { ...FITTED_PARAMS, sequenceOverheadUs: 300 }, overheadScale: { a100: 2 } };
    const asked: string[] = [];
    const f = resolveSimFleet(
      { islands: [{ name: "a", hardware: "a100", count: 1, model: "llama-3.1-8b", profile: "p.json" }, { name: "h", hardware: "h100", count: 1, model: "llama-3.1-8b", profile: "p.json" }, { name: "plain", hardware: "h100", count: 1, model: "llama-3.1-8b" }] },
      "fleet.yaml",
      { loadProfile: (path) => (asked.push(path), engine) },
    );
    assert.deepEqual(asked, ["p.json", "p.json"]);
    const [a, h, plain] = f.islands;
    assert.equal(a!.params.sequenceOverheadUs, 600, "the A100's overhead factor applies");
    assert.equal(h!.params.sequenceOverheadUs, 300);
    assert.equal(plain!.params, FITTED_PARAMS);
    assert.ok(decodeStepMs(h!.profile, 8, 8000) > decodeStepMs(plain!.profile, 8, 8000) + 2.3);
    assert.throws(() => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", profile: "p.json" }] }), /islands\.0\.profile: cannot load p\.json here/);
    assert.throws(
      () => resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", profile: "p.json" }] }, "fleet.yaml", { loadProfile: () => { throw new Error("p.json is not a valid engine profile"); } }),
      /islands\.0\.profile: p\.json is not a valid engine profile/,
    );
  });

  it("reports YAML syntax errors with the line", () => {
    assert.throws(() => parseSimFleetYaml("islands:\n  - hardware: h100\n    count: [1,\n", "f.yaml"), /^FleetFileError: f\.yaml:\d+: not valid YAML/);
  });
});
