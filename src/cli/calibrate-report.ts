/**
 * `flotilla calibrate`'s report, as text and as JSON. Pure formatting of a
 * CalibrationReport (hardware/calibrate.ts).
 */
import type { CalibrationReport, ErrorSummary, LeaveOneOut, SetupError } from "../hardware/calibrate.js";
import type { EngineParams, PerfParams } from "../hardware/index.js";
import { num, renderTable } from "./hardware-commands.js";

/** What each parameter is, for the report (docs/hardware-model.md has the long form). */
const MEANING: Readonly<Record<keyof PerfParams, string>> = {
  computeEfficiency: "share of the measured matmul peak a pass sustains",
  bandwidthEfficiency: "share of peak memory bandwidth",
  stepOverheadMs: "ms per pass",
  layerOverheadUs: "µs per layer per pass",
  sequenceOverheadUs: "µs per sequence per pass",
  prefillOverheadMs: "ms per pass that evaluates prompt tokens",
  allReduceLatencyUs: "µs per all-reduce",
  allReduceStepUs: "µs per all-reduce step (2·log2(tp) steps)",
  allReduceBandwidthEfficiency: "share of link bandwidth an all-reduce moves data at",
  gemmPadTokens: "GEMM padding rows",
  fp4Efficiency: "FP4 rate relative to FP8's efficiency",
};

function pct(x: number | undefined): string {
  return x === undefined ? "-" : `${(x * 100).toFixed(1)}%`;
}

function signedPct(x: number | undefined): string {
  return x === undefined ? "" : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
}

function summary(e: ErrorSummary): string {
  return `TTFT ${pct(e.ttft)}, TPOT ${pct(e.tpot)}, all ${pct(e.all)}${e.power !== undefined ? `; power ${pct(e.power)} (not fitted)` : ""}`;
}

function paramsTable(start: EngineParams, fitted: EngineParams, keys: readonly (keyof PerfParams)[]): string {
  const rows = keys.map((k) => [k, num(start.params[k]), num(fitted.params[k]), MEANING[k]]);
  const devices = Object.entries(fitted.overheadScale).map(([d, f]) => `${d} ${num(f)}`);
  const table = renderTable(["parameter", "start", "fitted", "meaning"], rows, new Set([1, 2]));
  return devices.length === 0 ? table : `${table}\n\noverhead factor by device (x the overheads above): ${devices.join(", ")}`;
}

/** Setups in the order a reader scans them: by device, model, tp, batch, prompt and output length. */
function ordered(setups: readonly SetupError[]): SetupError[] {
  const key = ({ group: g }: SetupError): (string | number)[] => [g.hardware.id, g.model.id, g.precision.id, g.tp, g.batch, g.inputTokens, g.outputTokens];
  return [...setups].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      const x = ka[i] as string | number;
      const y = kb[i] as string | number;
      if (x !== y) return x < y ? -1 : 1;
    }
    return 0;
  });
}

function setupTable(setups: readonly SetupError[]): string {
  const power = setups.some((s) => s.group.powerW !== undefined);
  const header = ["hardware", "model", "tp", "batch", "input", "output", "rows", "TTFT ms", "predicted", "error", "TPOT ms", "predicted", "error", ...(power ? ["power W", "predicted", "error"] : [])];
  const body = ordered(setups).map(({ group: g, predicted: p, ttftError, tpotError, predictedPowerW, powerError }) => [
    g.hardware.id,
    `${g.model.id} ${g.precision.id}`,
    String(g.tp),
    String(g.batch),
    String(g.inputTokens),
    String(g.outputTokens),
    String(g.lines.length),
    g.ttftMs !== undefined ? num(g.ttftMs) : "-",
    g.ttftMs !== undefined ? num(p.ttftMs) : "",
    signedPct(ttftError),
    g.tpotMs !== undefined ? num(g.tpotMs) : "-",
    g.tpotMs !== undefined ? num(p.tpotMs) : "",
    signedPct(tpotError),
    ...(power ? [g.powerW !== undefined ? num(g.powerW) : "-", predictedPowerW !== undefined ? num(predictedPowerW) : "", signedPct(powerError)] : []),
  ]);
  return renderTable(header, body, new Set(header.map((_, i) => i).filter((i) => i >= 2)));
}

function leaveOneOutTable(l: LeaveOneOut): string {
  const rows = l.folds.map((f) => [`${l.by} ${f.value}`, String(f.setups), pct(f.error.ttft), pct(f.error.tpot), pct(f.error.all), pct(f.startError.all)]);
  rows.push(["all held out", String(l.folds.reduce((a, f) => a + f.setups, 0)), pct(l.error.ttft), pct(l.error.tpot), pct(l.error.all), pct(l.startError.all)]);
  return renderTable(["held out", "setups", "TTFT", "TPOT", "all", "start's all"], rows, new Set([1, 2, 3, 4, 5]));
}

/** The report a person reads. */
export function formatCalibration(r: CalibrationReport, start: EngineParams, source: string): string {
  const devices = [...new Set(r.groups.map((g) => g.hardware.id))].join(", ");
  const tps = [...new Set(r.groups.map((g) => g.tp))].sort((a, b) => a - b).join(", ");
  const parts = [
    `${source}: ${r.rows} rows, ${r.groups.length} setups (repeats merged into their median) on ${devices}, tp ${tps}`,
    `Fitted parameters\n\n${paramsTable(start, r.engine, r.fitted)}`,
    `Per setup (error = predicted / measured - 1)\n\n${setupTable(r.setups)}`,
    `Fit: median |error| ${summary(r.error)}\n  with the starting parameters: ${summary(r.startError)}`,
  ];
  if (r.leaveOneOut !== undefined) {
    parts.push(`Leave one ${r.leaveOneOut.by} out (fit without it, predict it): median |error|\n\n${leaveOneOutTable(r.leaveOneOut)}`);
  }
  return parts.join("\n\n");
}

function summaryJson(e: ErrorSummary): Record<string, number> {
  return Object.fromEntries(Object.entries(e).filter((kv): kv is [string, number] => kv[1] !== undefined));
}

/** How the profile was fitted: the `fit` section of the profile file, and of the JSON report. */
export function fitRecord(r: CalibrationReport, measurements: string): Record<string, unknown> {
  return {
    measurements,
    rows: r.rows,
    setups: r.groups.length,
    hardware: [...new Set(r.groups.map((g) => g.hardware.id))],
    models: [...new Set(r.groups.map((g) => g.model.id))],
    tp: [...new Set(r.groups.map((g) => g.tp))].sort((a, b) => a - b),
    fitted: r.fitted,
    medianError: summaryJson(r.error),
    startMedianError: summaryJson(r.startError),
    ...(r.leaveOneOut !== undefined
      ? {
          leaveOneOut: {
            by: r.leaveOneOut.by,
            medianError: summaryJson(r.leaveOneOut.error),
            startMedianError: summaryJson(r.leaveOneOut.startError),
            folds: r.leaveOneOut.folds.map((f) => ({ heldOut: f.value, setups: f.setups, medianError: summaryJson(f.error), startMedianError: summaryJson(f.startError) })),
          },
        }
      : {}),
  };
}

/** Every setup with its measured and predicted values, for --json. */
export function setupsJson(setups: readonly SetupError[]): Record<string, unknown>[] {
  return setups.map(({ group: g, predicted: p, ttftError, tpotError, predictedPowerW, powerError }) => ({
    hardware: g.hardware.id,
    model: g.model.id,
    precision: g.precision.id,
    tp: g.tp,
    batch: g.batch,
    inputTokens: g.inputTokens,
    outputTokens: g.outputTokens,
    lines: g.lines,
    ...(g.ttftMs !== undefined ? { ttftMs: g.ttftMs, predictedTtftMs: p.ttftMs, ttftError } : {}),
    ...(g.tpotMs !== undefined ? { tpotMs: g.tpotMs, predictedTpotMs: p.tpotMs, tpotError } : {}),
    ...(g.powerW !== undefined ? { powerW: g.powerW, predictedPowerW, powerError } : {}),
  }));
}
