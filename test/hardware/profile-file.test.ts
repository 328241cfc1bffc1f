import { test } from "node:test";
import assert from "node:assert/strict";
import { FITTED_PARAMS } from "../../src/hardware/index.js";
import { ProfileFileError, parseEngineProfile, serializeEngineProfile } from "../../src/hardware/profile-file.js";

function fails(text: string, pattern: RegExp): void {
  assert.throws(() => parseEngineProfile(text, "p.json"), (e: unknown) => e instanceof ProfileFileError && pattern.test(e.message), `expected ${pattern}`);
}

const doc = (over: Record<string, unknown>): string => JSON.stringify({ kind: "flotilla-engine-profile", version: 1, params: {}, ...over });

test("a profile round-trips, every parameter written out", () => {
  const engine = { params: { ...FITTED_PARAMS, sequenceOverheadUs: 285.0331, allReduceStepUs: 24.87 }, overheadScale: { a100: 1.17, h100: 0.856 } };
  const text = serializeEngineProfile({ name: "vllm", engine, fit: { rows: 3 } });
  const back = parseEngineProfile(text, "p.json");
  assert.equal(back.name, "vllm");
  assert.deepEqual(back.engine.overheadScale, { a100: 1.17, h100: 0.856 });
  assert.equal(back.engine.params.sequenceOverheadUs, 285.033, "six significant digits");
  assert.deepEqual(Object.keys(JSON.parse(text).params as object).sort(), Object.keys(FITTED_PARAMS).sort());
  assert.deepEqual(back.fit, { rows: 3 });
});

test("a hand-written profile names only what it changes; the rest are the built-in parameters", () => {
  const p = parseEngineProfile(doc({ params: { sequenceOverheadUs: 200 }, overheadScale: { "a100-80gb": 1.5 } }), "p.json");
  assert.deepEqual(p.engine.params, { ...FITTED_PARAMS, sequenceOverheadUs: 200 });
  assert.deepEqual(p.engine.overheadScale, { a100: 1.5 }, "aliases resolve to catalog ids");
});

test("mistakes name the key", () => {
  fails("{", /p\.json: not valid JSON/);
  fails(doc({ params: { computeEfficency: 0.5 } }), /params: Unrecognized key: "computeEfficency"/);
  fails(doc({ params: { computeEfficiency: 1.5 } }), /params\.computeEfficiency: /);
  fails(doc({ params: { sequenceOverheadUs: "fast" } }), /params\.sequenceOverheadUs: /);
  fails(doc({ overheadScale: { h900: 1 } }), /overheadScale\.h900: unknown hardware "h900"/);
  fails(doc({ kind: "something-else" }), /kind: /);
  fails(doc({ version: 2 }), /version: /);
  fails(doc({ extra: true }), /Unrecognized key: "extra"/);
});
