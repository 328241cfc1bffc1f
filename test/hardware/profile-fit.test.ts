/**
 * Fitting an engine profile: the fitter recovers an engine it generated rows
 * from, and on real measurements (Splitwise's Llama-2-70B on A100 and H100,
 * fixtures/splitwise-llama2-70b.csv) a profile fitted at some tensor-parallel
 * sizes predicts the others far better than the built-in parameters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { FITTED_PARAMS, findHardware, findModel, findPrecision, paramsOn } from "../../src/hardware/index.js";
import type { EngineParams } from "../../src/hardware/index.js";
import { calibrateEngine, leaveOneOut, setupErrors, summarise } from "../../src/hardware/calibrate.js";
import type { Measurement } from "../../src/hardware/measurements.js";
import { parseMeasurementsCsv } from "../../src/hardware/measurements.js";
import { fitEngineParams, mergeRepeats, predictSetups } from "../../src/hardware/profile-fit.js";
import { repoPath } from "../paths.js";

const BUILT_IN: EngineParams = { params: FITTED_PARAMS, overheadScale: {} };
const SPLITWISE = repoPath("test/hardware/fixtures/splitwise-llama2-70b.csv");

/** An engine unlike the built-in one: slower kernels, host work per sequence, an all-reduce that scales poorly. */
const SLOW: EngineParams = {
  params: { ...FITTED_PARAMS, computeEfficiency: 0.8, bandwidthEfficiency: 0.8, stepOverheadMs: 0.5, layerOverheadUs: 40, sequenceOverheadUs: 150, allReduceLatencyUs: 20, allReduceStepUs: 15, allReduceBandwidthEfficiency: 0.6 },
  overheadScale: { a100: 1.25, h100: 0.8 },
};

/** Rows `engine` would measure: Llama-3.1-8B on A100 and H100, tp 1-4, a few batches and prompt lengths. */
function rowsOf(engine: EngineParams): Measurement[] {
  const setups = ["a100", "h100"].flatMap((hw) =>
    [1, 2, 4].flatMap((tp) =>
      [1, 8, 32].flatMap((batch) =>
        [256, 2048].map((inputTokens) => ({ hardware: findHardware(hw), model: findModel("llama-3.1-8b"), precision: findPrecision("bf16"), tp, batch, inputTokens, outputTokens: 128 })),
      ),
    ),
  );
  return predictSetups(setups, engine).map((p, i) => ({ ...setups[i]!, line: i + 2, ttftMs: p.ttftMs, tpotMs: p.tpotMs }));
}

function splitwiseRows(): readonly Measurement[] {
  return parseMeasurementsCsv(readFileSync(SPLITWISE, "utf8"), "splitwise").rows;
}

test("repeats of a setup merge into their median", () => {
  const [a] = rowsOf(SLOW);
  const groups = mergeRepeats([{ ...a!, line: 2, ttftMs: 10 }, { ...a!, line: 3, ttftMs: 30 }, { ...a!, line: 4, ttftMs: 11, tpotMs: undefined }] as Measurement[]);
  assert.equal(groups.length, 1);
  assert.equal(groups[0]!.ttftMs, 11);
  assert.equal(groups[0]!.tpotMs, a!.tpotMs, "the median of the rows that have one");
  assert.deepEqual(groups[0]!.lines, [2, 3, 4]);
});

test("the fit recovers an engine from rows it generated, and is deterministic", () => {
  const groups = mergeRepeats(rowsOf(SLOW));
  const fit = fitEngineParams(groups, BUILT_IN);
  const errors = summarise(setupErrors(groups, fit.engine));
  // not exactly: with a factor per device, bandwidth efficiency and fixed overheads trade off, and the pull
  // towards the built-in efficiencies settles that trade a little away from the truth
  assert.ok(errors.all < 0.02, `median error ${errors.all}`);
  assert.ok(summarise(setupErrors(groups, BUILT_IN)).all > 0.15, "the built-in engine is far from it");
  // what the rows pin down comes back: the engine is slower on the A100 host than on the H100 one
  assert.ok((fit.engine.overheadScale.a100 ?? 0) / (fit.engine.overheadScale.h100 ?? 1) > 1.3);
  assert.ok(Math.abs(fit.engine.params.sequenceOverheadUs / 150 - 1) < 0.25, String(fit.engine.params.sequenceOverheadUs));
  assert.deepEqual(fitEngineParams(groups, BUILT_IN).engine, fit.engine);
  // a device the profile has not seen runs at the measured ones' typical overheads
  const h200 = paramsOn(fit.engine, "h200");
  assert.ok(h200.sequenceOverheadUs > paramsOn(fit.engine, "h100").sequenceOverheadUs && h200.sequenceOverheadUs < paramsOn(fit.engine, "a100").sequenceOverheadUs);
});

test("rows at tp 1 leave the all-reduce parameters alone", () => {
  const groups = mergeRepeats(rowsOf(SLOW).filter((r) => r.tp === 1));
  const fit = fitEngineParams(groups, BUILT_IN);
  assert.ok(!fit.fitted.includes("allReduceStepUs") && !fit.fitted.includes("allReduceBandwidthEfficiency"));
  assert.equal(fit.engine.params.allReduceLatencyUs, FITTED_PARAMS.allReduceLatencyUs);
});

test("Splitwise's Llama-2-70B: fitted at tp 2 and 4, it predicts tp 8 (stated bound 10%, measured 7.1%)", () => {
  const groups = mergeRepeats(splitwiseRows());
  const fit = fitEngineParams(groups.filter((g) => g.tp !== 8), BUILT_IN);
  const held = groups.filter((g) => g.tp === 8);
  const calibrated = summarise(setupErrors(held, fit.engine));
  const builtIn = summarise(setupErrors(held, BUILT_IN));
  assert.ok(calibrated.all <= 0.1, `held-out tp 8: ${calibrated.all}`);
  assert.ok(calibrated.tpot! <= 0.09, `held-out tp 8 TPOT: ${calibrated.tpot}`);
  assert.ok(builtIn.all >= 0.4, `built-in at tp 8: ${builtIn.all}`);
  assert.ok(calibrated.all < builtIn.all / 2.5, `${calibrated.all} against the built-in ${builtIn.all}`);
});

test("Splitwise's Llama-2-70B: each tp held out in turn (stated bound 10%, measured 7.1-7.9%, 7.3% pooled)", () => {
  const l = leaveOneOut(mergeRepeats(splitwiseRows()), BUILT_IN, "tp");
  assert.ok(l !== undefined);
  assert.deepEqual(l.folds.map((f) => f.value), ["2", "4", "8"]);
  assert.ok(l.error.all <= 0.1, `pooled held-out error ${l.error.all}`);
  assert.ok(l.error.all < l.startError.all / 2.5, `${l.error.all} against the built-in ${l.startError.all}`);
  for (const f of l.folds) {
    assert.ok(f.error.all <= 0.1, `tp ${f.value} held out: ${f.error.all}`);
    assert.ok(f.error.all < f.startError.all, `tp ${f.value}: ${f.error.all} against the built-in ${f.startError.all}`);
  }
});

test("calibrateEngine reports the fit on every row and skips the check when there is nothing to hold out", () => {
  const rows = splitwiseRows().filter((r) => r.tp === 4 && r.hardware.id === "h100");
  const r = calibrateEngine(rows, BUILT_IN, "tp");
  assert.equal(r.leaveOneOut, undefined, "one tp size: nothing to hold out");
  assert.equal(r.rows, rows.length);
  assert.equal(r.setups.length, r.groups.length);
  assert.ok(r.error.all < r.startError.all);
  assert.deepEqual(r.engine.overheadScale, {}, "one device: no per-device factor");
});
