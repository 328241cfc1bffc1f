/**
 * Runs every calibration row of the hardware model and prints measured,
 * predicted and error, then the held-out validation rows.
 *
 *   node --import tsx bench/calibration.ts          # with the fitted parameters
 *   node --import tsx bench/calibration.ts --fit    # refit first and print the new parameters
 */
import {
  CALIBRATION_ROWS,
  FITTED_PARAMS,
  VALIDATION_ROWS,
  evaluateRows,
  fitParams,
  medianAbsError,
} from "../src/hardware/index.js";
import type { PerfParams, RowResult } from "../src/hardware/index.js";

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(x >= 10 ? 1 : 2);
}

export function calibrationTable(results: readonly RowResult[]): string {
  const header = ["row", "system", "model", "scenario", "tp", "batch", "measured", "predicted", "error %"];
  const rows = results.map((r) => {
    const sc = r.row.scenario;
    const scenario =
      sc.kind === "throughput" ? `${sc.input}/${sc.output} max-tput` : sc.kind === "ttft" ? `TTFT ${sc.input} in` : sc.kind === "tpot" ? `TPOT @ctx ${sc.context}` : `decode @ctx ${sc.context}`;
    return [
      r.row.id,
      r.row.system,
      `${r.row.model} ${r.row.precision}`,
      scenario,
      String(r.tp),
      String(r.batch),
      `${fmt(r.row.measured)} ${r.row.unit}`,
      fmt(r.predicted),
      `${r.error >= 0 ? "+" : ""}${(r.error * 100).toFixed(1)}`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => "| " + cells.map((c, i) => pad(c, widths[i] ?? 0, i >= 4)).join(" | ") + " |";
  const sep = "|" + widths.map((w, i) => (i >= 4 ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|") + "|";
  return [line(header), sep, ...rows.map(line)].join("\n");
}

function describe(p: PerfParams): string {
  return [
    `computeEfficiency      ${p.computeEfficiency.toFixed(3)}  (of measured max-achievable matmul rate)`,
    `bandwidthEfficiency    ${p.bandwidthEfficiency.toFixed(3)}  (of peak memory bandwidth)`,
    `stepOverheadMs         ${p.stepOverheadMs.toFixed(3)}`,
    `layerOverheadUs        ${p.layerOverheadUs.toFixed(1)}`,
    `allReduceLatencyUs     ${p.allReduceLatencyUs.toFixed(1)}`,
    `gemmPadTokens          ${p.gemmPadTokens.toFixed(1)}`,
    `fp4Efficiency          ${p.fp4Efficiency.toFixed(3)}  (FP4 rate relative to FP8's measured efficiency)`,
    "not fitted to these rows (`flotilla calibrate` fits them to an engine):",
    `allReduceStepUs        ${p.allReduceStepUs.toFixed(1)}`,
    `allReduceBandwidthEfficiency ${p.allReduceBandwidthEfficiency.toFixed(3)}`,
    `sequenceOverheadUs     ${p.sequenceOverheadUs.toFixed(1)}`,
  ].join("\n");
}

function main(): void {
  let params = FITTED_PARAMS;
  if (process.argv.includes("--fit")) {
    const t0 = performance.now();
    const fit = fitParams(CALIBRATION_ROWS, FITTED_PARAMS);
    params = fit.params;
    console.log(`fit: ${fit.iterations} iterations, mean |log error| ${fit.loss.toFixed(4)}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(JSON.stringify(params));
  }
  console.log("\nParameters\n" + describe(params));
  const cal = evaluateRows(CALIBRATION_ROWS, params);
  console.log("\nCalibration rows (hardware-reference.md)\n");
  console.log(calibrationTable(cal));
  console.log(`\nmedian absolute error: ${(medianAbsError(cal) * 100).toFixed(1)}% over ${cal.length} rows`);
  const val = evaluateRows(VALIDATION_ROWS, params);
  console.log("\nHeld-out rows (not used in the fit)\n");
  console.log(calibrationTable(val));
  console.log(`\nmedian absolute error: ${(medianAbsError(val) * 100).toFixed(1)}% over ${val.length} rows`);
}

main();
