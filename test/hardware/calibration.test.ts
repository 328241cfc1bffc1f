import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CALIBRATION_ROWS,
  FITTED_PARAMS,
  VALIDATION_ROWS,
  evaluateRow,
  evaluateRows,
  fitLoss,
  median,
  medianAbsError,
} from "../../src/hardware/index.js";

test("every calibration row is within its reported error", () => {
  for (const row of CALIBRATION_ROWS) {
    const r = evaluateRow(row);
    assert.ok(Number.isFinite(r.predicted) && r.predicted > 0, `row ${row.id}: no prediction`);
    assert.ok(Math.abs(r.error) <= row.tolerance, `row ${row.id} (${row.system}): ${(r.error * 100).toFixed(1)}% exceeds ${row.tolerance * 100}%`);
  }
});

test("median absolute error is at most 15% on the reference rows and 25% held out", () => {
  assert.equal(CALIBRATION_ROWS.length, 19);
  assert.ok(medianAbsError(evaluateRows(CALIBRATION_ROWS)) <= 0.15);
  assert.ok(medianAbsError(evaluateRows(VALIDATION_ROWS)) <= 0.25);
});

test("throughput rows run at the batch the KV cache allows, and the best tensor-parallel degree", () => {
  // row 1: 8x H100, Llama-2-70B FP8: TP1 leaves little KV room, TP2 is the better use of 8 GPUs
  const r1 = evaluateRow(CALIBRATION_ROWS.find((r) => r.id === "1")!);
  assert.equal(r1.tp, 2);
  assert.ok(r1.batch > 100);
  // row 6a: H200 TP1, 1000/1000: a couple of hundred sequences of 2,000 tokens fit next to 70 GB of weights
  const r6 = evaluateRow(CALIBRATION_ROWS.find((r) => r.id === "6a")!);
  assert.ok(r6.batch > 150 && r6.batch < 300, String(r6.batch));
});

test("the fitted parameters are physically plausible", () => {
  const p = FITTED_PARAMS;
  assert.ok(p.computeEfficiency > 0.3 && p.computeEfficiency <= 1);
  assert.ok(p.bandwidthEfficiency > 0.5 && p.bandwidthEfficiency <= 1);
  assert.ok(p.layerOverheadUs > 1 && p.layerOverheadUs < 200);
  assert.ok(p.allReduceLatencyUs > 1 && p.allReduceLatencyUs < 100);
  assert.ok(p.gemmPadTokens >= 0 && p.gemmPadTokens <= 256);
  assert.ok(p.fp4Efficiency > 0.2 && p.fp4Efficiency <= 1);
  assert.ok(fitLoss(p) < 0.1);
});

test("median helper", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
});
