/**
 * What `flotilla calibrate` computes, without its I/O: the fit of an engine's
 * parameters to its measurements, each setup's error under it, and the
 * leave-one-group-out error (each tensor-parallel size, say, held out in
 * turn, the rest refitted and the held-out ones predicted). The last is the
 * figure to trust: the fit's own error says how well it describes the rows
 * it saw, the held-out error how well it predicts rows it did not.
 */
import { median } from "./calibration.js";
import type { Measurement } from "./measurements.js";
import type { EngineParams, PerfParams } from "./params.js";
import type { MeasurementGroup, Prediction } from "./profile-fit.js";
import { fitEngineParams, mergeRepeats, predictPowerW, predictSetups } from "./profile-fit.js";

/** What held-out groups are made of. */
export const HOLD_OUT_KEYS = ["tp", "hardware", "batch", "input_tokens", "output_tokens"] as const;
export type HoldOutKey = (typeof HOLD_OUT_KEYS)[number];

const KEY_OF: Readonly<Record<HoldOutKey, (g: MeasurementGroup) => string>> = {
  tp: (g) => String(g.tp),
  hardware: (g) => g.hardware.id,
  batch: (g) => String(g.batch),
  input_tokens: (g) => String(g.inputTokens),
  output_tokens: (g) => String(g.outputTokens),
};

/** One setup's prediction and its errors ((predicted − measured) / measured). */
export interface SetupError {
  readonly group: MeasurementGroup;
  readonly predicted: Prediction;
  readonly ttftError?: number;
  readonly tpotError?: number;
  /** Where power was measured: the predicted average power per device, and its error (reported, not fitted). */
  readonly predictedPowerW?: number;
  readonly powerError?: number;
}

/** Median absolute errors; undefined where nothing of that kind was measured. */
export interface ErrorSummary {
  readonly ttft: number | undefined;
  readonly tpot: number | undefined;
  /** Over every measured value, TTFT and TPOT together. */
  readonly all: number;
  readonly power: number | undefined;
}

export interface HeldOutFold {
  /** The held-out value, e.g. "8" for tp 8. */
  readonly value: string;
  readonly setups: number;
  /** The held-out setups predicted by the profile fitted without them. */
  readonly error: ErrorSummary;
  /** The same setups predicted by the starting parameters. */
  readonly startError: ErrorSummary;
}

export interface LeaveOneOut {
  readonly by: HoldOutKey;
  readonly folds: readonly HeldOutFold[];
  /** Every setup predicted by the fold that held it out. */
  readonly error: ErrorSummary;
  readonly startError: ErrorSummary;
}

export interface CalibrationReport {
  readonly rows: number;
  readonly groups: readonly MeasurementGroup[];
  readonly engine: EngineParams;
  readonly fitted: readonly (keyof PerfParams)[];
  readonly setups: readonly SetupError[];
  readonly error: ErrorSummary;
  /** The starting parameters' error on the same setups (the built-in ones, unless the fit started from a profile). */
  readonly startError: ErrorSummary;
  /** Undefined where the measurements hold one value of the key, or none was asked for. */
  readonly leaveOneOut: LeaveOneOut | undefined;
}

export function setupErrors(groups: readonly MeasurementGroup[], engine: EngineParams): SetupError[] {
  const predicted = predictSetups(groups, engine);
  return groups.map((group, i) => {
    const p = predicted[i] as Prediction;
    const powerW = group.powerW === undefined ? undefined : predictPowerW(group, engine);
    return {
      group,
      predicted: p,
      ...(group.ttftMs !== undefined ? { ttftError: (p.ttftMs - group.ttftMs) / group.ttftMs } : {}),
      ...(group.tpotMs !== undefined ? { tpotError: (p.tpotMs - group.tpotMs) / group.tpotMs } : {}),
      ...(powerW !== undefined && group.powerW !== undefined ? { predictedPowerW: powerW, powerError: (powerW - group.powerW) / group.powerW } : {}),
    };
  });
}

export function summarise(errors: readonly SetupError[]): ErrorSummary {
  const abs = (f: (e: SetupError) => number | undefined): number[] => errors.flatMap((e) => {
    const x = f(e);
    return x !== undefined ? [Math.abs(x)] : [];
  });
  const ttft = abs((e) => e.ttftError);
  const tpot = abs((e) => e.tpotError);
  const power = abs((e) => e.powerError);
  const med = (xs: number[]): number | undefined => (xs.length > 0 ? median(xs) : undefined);
  return { ttft: med(ttft), tpot: med(tpot), all: median([...ttft, ...tpot]), power: med(power) };
}

/** Holds out each value of `by` in turn, fits the rest from `start`, and predicts the held-out setups. */
export function leaveOneOut(groups: readonly MeasurementGroup[], start: EngineParams, by: HoldOutKey): LeaveOneOut | undefined {
  const keyOf = KEY_OF[by];
  const values = [...new Set(groups.map(keyOf))];
  if (values.length < 2) return undefined;
  const pooled: SetupError[] = [];
  const pooledStart: SetupError[] = [];
  const folds = values.map((value) => {
    const held = groups.filter((g) => keyOf(g) === value);
    const fit = fitEngineParams(groups.filter((g) => keyOf(g) !== value), start);
    const errors = setupErrors(held, fit.engine);
    const startErrors = setupErrors(held, start);
    pooled.push(...errors);
    pooledStart.push(...startErrors);
    return { value, setups: held.length, error: summarise(errors), startError: summarise(startErrors) };
  });
  return { by, folds, error: summarise(pooled), startError: summarise(pooledStart) };
}

/** Merges repeats, fits, and (unless `holdOutBy` is undefined) runs the leave-one-group-out check. */
export function calibrateEngine(rows: readonly Measurement[], start: EngineParams, holdOutBy: HoldOutKey | undefined): CalibrationReport {
  const groups = mergeRepeats(rows);
  const fit = fitEngineParams(groups, start);
  const setups = setupErrors(groups, fit.engine);
  return {
    rows: rows.length,
    groups,
    engine: fit.engine,
    fitted: fit.fitted,
    setups,
    error: summarise(setups),
    startError: summarise(setupErrors(groups, start)),
    leaveOneOut: holdOutBy === undefined ? undefined : leaveOneOut(groups, start, holdOutBy),
  };
}
