/**
 * Fits an engine's parameters (PerfParams) to its measurements: the model's
 * physics stays, and the engine's efficiencies and overheads are fitted, so a
 * profile fitted at some tensor-parallel degrees, batches and prompt lengths
 * predicts the others.
 *
 * - A row's TTFT is `batchPrefillMs(batch, input)` (all prompts prefilled
 *   together) and its TPOT `decodeStepMs(batch, batch · (input + output/2))`,
 *   the same figures `flotilla estimate` prints as "TTFT, batch prefilled
 *   together" and "time per output token". A served request's (a row from
 *   the usage ledger) are served.ts's: its prompt joining a running batch,
 *   and its decode among prompts that come and go.
 * - Repeats of one setup are merged into their median first, so a setup
 *   measured five times weighs as much as one measured once.
 * - The loss is the mean of a penalty on each measured value's log error
 *   (its square within about 20%, growing linearly past that: a setup a
 *   busy host stalled does not drag the fit), plus a
 *   pull of each parameter towards its starting value, which settles what
 *   the rows cannot tell apart (at one tp, a lower bandwidth efficiency and a
 *   larger all-reduce latency give the same time per token; for one model the
 *   per-pass and per-layer overheads are the same thing) instead of leaving
 *   it to wherever the simplex stops. Efficiencies are pulled hard (0.1 per
 *   squared e-fold): they are properties of kernels on the hardware (GEMMs,
 *   weight streaming, NCCL) that engines largely share. Overheads are pulled
 *   lightly (1e-4): host work and launches are what differs most between
 *   engines. An overhead that starts at 0 is not pulled at all: there is no
 *   value to pull it towards. Held-out errors on the Splitwise rows chose
 *   these weights (docs/hardware-model.md). Served requests (the usage
 *   ledger's) pull the compute efficiency only lightly: they are one
 *   replica's prompts of every length, which pin it down.
 * - Measured on several devices, each gets a factor on the software
 *   overheads (EngineParams.overheadScale): the same engine pays more host
 *   and launch time on an older system.
 * - Parameters the data cannot inform are left out: the all-reduce ones
 *   without tp > 1 rows, the FP4 one without FP4 rows. GEMM padding is never
 *   fitted here (it needs throughput rows at large batch).
 */
import { batchPrefillEnergy, decodeStepEnergy, makeEnergyProfile } from "./energy.js";
import type { Minimum } from "./fit.js";
import { minimise } from "./fit.js";
import type { MeasuredSetup, Measurement } from "./measurements.js";
import { median } from "./calibration.js";
import type { EngineParams, PerfParams } from "./params.js";
import { OVERHEAD_KEYS, paramsOn } from "./params.js";
import type { PerfProfile } from "./perf.js";
import { batchPrefillMs, decodeStepMs, makePerfProfile } from "./perf.js";
import { servedTtftMs, servedTpotMs } from "./served.js";

/** One setup with the median of its repeats. */
export interface MeasurementGroup extends MeasuredSetup {
  /** CSV lines merged into this group. */
  readonly lines: readonly number[];
  readonly ttftMs?: number;
  readonly tpotMs?: number;
  readonly powerW?: number;
}

export interface Prediction {
  readonly ttftMs: number;
  readonly tpotMs: number;
}

/** A fitted parameter: its bounds, and the scale below which the search moves it linearly rather than by factors. */
interface FreeParameter {
  readonly key: keyof PerfParams;
  readonly scale: number;
  readonly min: number;
  readonly max: number;
  /** Weight of the pull towards its starting value, per squared e-fold, against the mean squared log error. */
  readonly pull: number;
  /** Whether the measurements can inform it. */
  readonly informed?: (groups: readonly MeasuredSetup[]) => boolean;
  /** Pulled towards its start even when that is 0: a cost most engines do not have, taken up only where the rows show it. */
  readonly pullAtZero?: boolean;
  /** The pull where every row is a served request (default `pull`). */
  readonly servedPull?: number;
}

const multiDevice = (gs: readonly MeasuredSetup[]): boolean => gs.some((g) => g.tp > 1);

/** Pull on an efficiency, and on an overhead (and a device's overhead factor), towards the start. */
const EFFICIENCY_PULL = 0.1;
const OVERHEAD_PULL = 1e-4;
/**
 * The setups the pulls were chosen at (Splitwise's). The loss is a mean over
 * setups while a prior weighs against their sum, so past this many the pulls
 * shrink in proportion: a large set of measurements (a usage ledger's) then
 * outweighs the start as it should, instead of staying a few percent off
 * towards it however much was measured.
 */
const PULL_SETUPS = 112;

/**
 * The fit's penalty on a log error r: r² within about 20% of the measurement,
 * growing only linearly past it (pseudo-Huber), so a setup whose requests a
 * busy host stalled pulls on the fit with no more force than one 20% off.
 */
const HUBER_LOG_ERROR = 0.2;
const robust = (r: number): number => 2 * HUBER_LOG_ERROR ** 2 * (Math.sqrt(1 + (r / HUBER_LOG_ERROR) ** 2) - 1);

const FREE_PARAMETERS: readonly FreeParameter[] = [
  // Served requests are one replica's, prompts of every length: they pin its compute efficiency down, and the
  // twin predicts that same replica. A small model's GEMMs on a CPU core run at a few percent of peak (llama.cpp,
  // the built-in model: 4%), which the benchmark rows' pull would hold at a GPU kernel's 95%.
  { key: "computeEfficiency", scale: 0.01, min: 0.005, max: 1, pull: EFFICIENCY_PULL, servedPull: 1e-3 },
  { key: "bandwidthEfficiency", scale: 0.01, min: 0.02, max: 1, pull: EFFICIENCY_PULL },
  { key: "stepOverheadMs", scale: 0.01, min: 0, max: 1000, pull: OVERHEAD_PULL },
  { key: "layerOverheadUs", scale: 1, min: 0, max: 100_000, pull: OVERHEAD_PULL },
  { key: "sequenceOverheadUs", scale: 1, min: 0, max: 100_000, pull: OVERHEAD_PULL },
  { key: "allReduceLatencyUs", scale: 1, min: 0, max: 100_000, pull: OVERHEAD_PULL, informed: multiDevice },
  { key: "allReduceStepUs", scale: 1, min: 0, max: 100_000, pull: OVERHEAD_PULL, informed: multiDevice },
  { key: "allReduceBandwidthEfficiency", scale: 0.01, min: 0.005, max: 1, pull: EFFICIENCY_PULL, informed: multiDevice },
  { key: "fp4Efficiency", scale: 0.01, min: 0.02, max: 1, pull: EFFICIENCY_PULL, informed: (gs) => gs.some((g) => g.precision.compute === "fp4") },
  // Fitted to served requests only: the benchmark rows the pulls were chosen on are fitted as before. Pulled
  // towards none (1e-3: a millisecond costs about 0.009), or it stands in for a prompt's per-token cost wherever
  // the pull holds the compute efficiency up.
  { key: "prefillOverheadMs", scale: 0.1, min: 0, max: 1000, pull: 1e-3, pullAtZero: true, informed: (gs) => gs.some((g) => g.served !== undefined) },
];

function setupKey(s: MeasuredSetup): string {
  return `${s.hardware.id}|${s.model.id}|${s.precision.id}|${s.tp}|${s.batch}|${s.inputTokens}|${s.outputTokens}|${s.served?.cachedTokens ?? "-"}`;
}

/** Merges repeats of one setup into their median, in the order setups first appear. */
export function mergeRepeats(rows: readonly Measurement[]): MeasurementGroup[] {
  const byKey = new Map<string, Measurement[]>();
  for (const r of rows) {
    const k = setupKey(r);
    const list = byKey.get(k);
    if (list === undefined) byKey.set(k, [r]);
    else list.push(r);
  }
  return [...byKey.values()].map((rs) => {
    const first = rs[0] as Measurement;
    const med = (f: (r: Measurement) => number | undefined): number | undefined => {
      const xs = rs.map(f).filter((x): x is number => x !== undefined);
      return xs.length === 0 ? undefined : median(xs);
    };
    const ttftMs = med((r) => r.ttftMs);
    const tpotMs = med((r) => r.tpotMs);
    const powerW = med((r) => r.powerW);
    const { hardware, model, precision, tp, batch, inputTokens, outputTokens, served } = first;
    return {
      hardware, model, precision, tp, batch, inputTokens, outputTokens,
      ...(served !== undefined ? { served } : {}),
      lines: rs.map((r) => r.line),
      ...(ttftMs !== undefined ? { ttftMs } : {}),
      ...(tpotMs !== undefined ? { tpotMs } : {}),
      ...(powerW !== undefined ? { powerW } : {}),
    };
  });
}

/** Predicts every setup, building each (hardware, model, precision, tp) profile once. */
export function predictSetups(setups: readonly MeasuredSetup[], engine: EngineParams): Prediction[] {
  const profiles = new Map<string, PerfProfile>();
  return setups.map((s) => {
    const key = `${s.hardware.id}|${s.model.id}|${s.precision.id}|${s.tp}`;
    let p = profiles.get(key);
    if (p === undefined) {
      p = makePerfProfile(s.model, s.hardware, s.precision, { tp: s.tp, params: paramsOn(engine, s.hardware.id) });
      profiles.set(key, p);
    }
    return s.served !== undefined ? predictServed(p, s, s.served.cachedTokens) : {
      ttftMs: batchPrefillMs(p, s.batch, s.inputTokens),
      tpotMs: decodeStepMs(p, s.batch, s.batch * (s.inputTokens + s.outputTokens / 2)),
    };
  });
}

/** A served request's timings (served.ts). */
function predictServed(p: PerfProfile, s: MeasuredSetup, cachedTokens: number): Prediction {
  const r = { promptTokens: s.inputTokens, cachedTokens, batch: s.batch, outputTokens: s.outputTokens };
  return { ttftMs: servedTtftMs(p, r), tpotMs: servedTpotMs(p, r) };
}

/**
 * Average power per device over a run of the setup (the batch prefilled,
 * then `output` decode steps), as `estimate` computes it.
 */
export function predictPowerW(s: MeasuredSetup, engine: EngineParams): number {
  const params = paramsOn(engine, s.hardware.id);
  const p = makePerfProfile(s.model, s.hardware, s.precision, { tp: s.tp, params });
  const e = makeEnergyProfile(p, s.hardware, s.precision, params);
  const pre = batchPrefillEnergy(p, e, s.batch, s.inputTokens);
  const dec = decodeStepEnergy(p, e, s.batch, s.batch * (s.inputTokens + s.outputTokens / 2));
  const seconds = (pre.ms + s.outputTokens * dec.ms) / 1000;
  return (pre.joulesPerDevice + s.outputTokens * dec.joulesPerDevice) / seconds;
}

/** Mean squared log error of every measured value. */
export function meanSquaredLogError(groups: readonly MeasurementGroup[], engine: EngineParams, penalty: (r: number) => number = (r) => r * r): number {
  const predicted = predictSetups(groups, engine);
  let sum = 0;
  let n = 0;
  const term = (pred: number, measured: number | undefined): void => {
    if (measured === undefined) return;
    const r = pred > 0 && Number.isFinite(pred) ? Math.log(pred / measured) : 10;
    sum += penalty(r);
    n++;
  };
  groups.forEach((g, i) => {
    const p = predicted[i] as Prediction;
    term(p.ttftMs, g.ttftMs);
    term(p.tpotMs, g.tpotMs);
  });
  return n === 0 ? 0 : sum / n;
}

export interface EngineFit {
  readonly engine: EngineParams;
  /** Mean squared log error at the fitted parameters (without the prior). */
  readonly msle: number;
  /** The PerfParams fitted (the rest kept their starting values). */
  readonly fitted: readonly (keyof PerfParams)[];
  readonly iterations: number;
}

/** The fit's search space: the informed parameters, then one overhead factor per device where there are several. */
function searchSpace(groups: readonly MeasurementGroup[], start: EngineParams) {
  const free = FREE_PARAMETERS.filter((f) => f.informed === undefined || f.informed(groups));
  const devices = [...new Set(groups.map((g) => g.hardware.id))];
  // with one device its factor is the global overheads' own: only the factors' ratios are informed
  const scaled = devices.length > 1 ? devices : [];
  const v0 = [
    ...free.map((f) => Math.asinh(clamp(start.params[f.key], f.min, f.max) / f.scale)),
    ...scaled.map((d) => Math.log(start.overheadScale[d] ?? 1)),
  ];
  // an overhead that starts at 0 has no value to be pulled towards
  const shrink = Math.min(1, PULL_SETUPS / Math.max(1, groups.length));
  const served = groups.length > 0 && groups.every((g) => g.served !== undefined);
  const pullOf = (f: FreeParameter): number => (start.params[f.key] === 0 && f.pullAtZero !== true ? 0 : (served ? (f.servedPull ?? f.pull) : f.pull) * shrink);
  const pulls = [...free.map(pullOf), ...scaled.map(() => OVERHEAD_PULL * shrink)];
  const decode = (v: readonly number[]): EngineParams => {
    const params: Record<string, number> = { ...start.params };
    free.forEach((f, i) => {
      params[f.key] = clamp(f.scale * Math.sinh(v[i] ?? 0), f.min, f.max);
    });
    const overheadScale: Record<string, number> = { ...start.overheadScale };
    scaled.forEach((d, j) => {
      overheadScale[d] = clamp(Math.exp(v[free.length + j] ?? 0), 0.05, 20);
    });
    return { params: params as unknown as PerfParams, overheadScale };
  };
  return { free, v0, pulls, decode };
}

/**
 * Fits the informed parameters (and, measured on several devices, each one's
 * overhead factor) to the groups, starting from and pulled towards `start`. Each parameter is searched as asinh(x / scale): logarithmic above
 * its scale, so efficiencies and overheads move by factors, and linear near
 * 0, so an overhead the start leaves at 0 can grow from there. Two starts
 * (the given one, and one with an engine's typical overheads) guard against
 * a simplex that stalls where an overhead at 0 has no effect yet.
 */
export function fitEngineParams(groups: readonly MeasurementGroup[], start: EngineParams): EngineFit {
  const { free, v0, pulls, decode } = searchSpace(groups, start);
  const loss = (v: readonly number[]): number => {
    let prior = 0;
    v.forEach((x, i) => {
      prior += (pulls[i] ?? 0) * (x - (v0[i] ?? 0)) ** 2;
    });
    return meanSquaredLogError(groups, decode(v), robust) + prior;
  };
  const from = (p: Partial<PerfParams>): number[] => searchSpace(groups, { ...start, params: { ...start.params, ...p } }).v0;
  let best: Minimum | undefined;
  let iterations = 0;
  for (const x0 of [v0, from(BUSY_ENGINE), from(SLOW_KERNELS)]) {
    const run = minimise(loss, x0, { maxIterations: 2000, maxRestarts: 12, minGain: 1e-7, step: 0.5 });
    iterations += run.iterations;
    if (best === undefined || run.value < best.value) best = run;
  }
  const engine = centreOverheadScales(decode((best as Minimum).x), free.map((f) => f.key));
  return { engine, msle: meanSquaredLogError(groups, engine), fitted: free.map((f) => f.key), iterations };
}

/**
 * Moves the geometric mean of the overhead factors into the fitted overheads
 * themselves (the measured setups' predictions unchanged), so a device the profile was not
 * measured on, at factor 1, gets the measured devices' typical overheads.
 * Overheads the data did not inform (the all-reduce ones, without tp > 1
 * rows) keep their starting values.
 */
function centreOverheadScales(engine: EngineParams, fitted: readonly (keyof PerfParams)[]): EngineParams {
  const factors = Object.values(engine.overheadScale);
  if (factors.length === 0) return engine;
  const mean = Math.exp(factors.reduce((a, f) => a + Math.log(f), 0) / factors.length);
  const params: Record<string, number> = { ...engine.params };
  for (const k of OVERHEAD_KEYS) if (fitted.includes(k)) params[k] = engine.params[k] * mean;
  const overheadScale = Object.fromEntries(Object.entries(engine.overheadScale).map(([d, f]) => [d, f / mean]));
  return { params: params as unknown as PerfParams, overheadScale };
}

/**
 * The second start: overheads of a Python-scheduled engine without CUDA graphs
 * (order of magnitude; the fit moves from here).
 */
const BUSY_ENGINE: Partial<PerfParams> = { sequenceOverheadUs: 100, allReduceStepUs: 20 };

/**
 * The third: kernels far below the datasheet, as a small model's GEMMs on a
 * CPU core run (llama.cpp, the built-in model: about 5% of peak), so a fit
 * to such rows does not have to find its way down from a GPU's 95%.
 */
const SLOW_KERNELS: Partial<PerfParams> = { computeEfficiency: 0.05 };

function clamp(x: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, x));
}
