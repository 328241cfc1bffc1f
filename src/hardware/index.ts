/**
 * hardware/: accelerator and model catalogs with cited figures, and the
 * performance, energy and cost model. Pure: no I/O.
 */
export { UnknownNameError } from "./errors.js";
export type { CatalogKind } from "./errors.js";

export {
  PRECISIONS,
  KV_BYTES,
  findPrecision,
  knownPrecisions,
  precisionFromGgufFileType,
} from "./precision.js";
export type { ComputeFormat, KvFormat, PrecisionSpec } from "./precision.js";

export {
  HARDWARE,
  CPUS,
  LPDDR_CHIP,
  DEFAULT_MATMUL_EFFICIENCY,
  allHardware,
  knownHardware,
  findHardware,
  lpddrChipProfile,
  cpuProfile,
  matrixRate,
} from "./accelerators.js";
export type { DeviceKind, HardwareSpec, PeakTflops, ScaleUpLink, LpddrChipOptions, CpuOptions, MatrixRate } from "./accelerators.js";

export { MODELS, allModels, knownModels, findModel, modelStats, attentionParamsPerLayer, modelSpecFromGguf } from "./models.js";
export type { ModelSpec, MoeSpec, MlaSpec, ModelStats } from "./models.js";

export { ENGINE_SETTINGS, FITTED_PARAMS, paramsOn } from "./params.js";
export type { EngineParams, PerfParams } from "./params.js";

export { GIB, kvBytesPerToken, kvShards, memoryPlan, maxBatchForKv } from "./kv.js";
export type { MemoryPlan, MemoryOptions } from "./kv.js";

export {
  makePerfProfile,
  decodeStepMs,
  prefillMs,
  batchPrefillMs,
  passMs,
  gemmFlops,
  weightBytesRead,
  servingPoint,
  maxBatch,
  decodeBound,
} from "./perf.js";
export type { PerfProfile, ProfileOptions, ServingPoint } from "./perf.js";

export { catalog } from "./catalog.js";
export type { Catalog } from "./catalog.js";
export { DEFAULT_PUE, pjPerFlop, makeEnergyProfile, decodeStepEnergy, batchPrefillEnergy, decodeStepJoules, prefillJoules } from "./energy.js";
export type { EnergyProfile, PassEnergy } from "./energy.js";

export { DEFAULT_AMORTIZATION_YEARS, DEFAULT_USD_PER_KWH, deviceUsdPerHour, usdPerMTok, userMonthCost } from "./cost.js";
export type { Pricing, CostOptions, TokenCost, UsageProfile, UserMonthCost } from "./cost.js";

export {
  CALIBRATION_ROWS,
  VALIDATION_ROWS,
  evaluateRow,
  evaluateRows,
  median,
  medianAbsError,
  fitLoss,
  fitParams,
} from "./calibration.js";
export type { CalibrationRow, Scenario, RowResult, FitResult } from "./calibration.js";

export { servedTtftMs, servedTpotMs } from "./served.js";
export { rooflineProfile, requestRooflineMs, efficiencyOf } from "./roofline.js";
export type { RequestWork, Efficiency, EfficiencyTotals } from "./roofline.js";
export type { ServedRequest } from "./served.js";

export { estimate, profileFor, smallestFittingTp } from "./estimate.js";
export type { Estimate, EstimateInput } from "./estimate.js";

// Not re-exported, each loaded only by what needs it (CLI start-up time): measurements.ts (CSV),
// profile-fit.ts and calibrate.ts (fitting an engine, `flotilla calibrate`), profile-file.ts (zod).
