/**
 * The one entry point: how fast, how much energy and how much money model M
 * costs on hardware H at batch B, precision P, tensor parallelism T.
 */
import type { HardwareSpec } from "./accelerators.js";
import { findHardware } from "./accelerators.js";
import type { ModelSpec } from "./models.js";
import { findModel } from "./models.js";
import type { KvFormat, PrecisionSpec } from "./precision.js";
import { findPrecision } from "./precision.js";
import type { PerfParams } from "./params.js";
import { ENGINE_SETTINGS, FITTED_PARAMS } from "./params.js";
import type { PerfProfile } from "./perf.js";
import { decodeBound, makePerfProfile, maxBatch, prefillMs, servingPoint } from "./perf.js";
import { DEFAULT_PUE, batchPrefillEnergy, decodeStepEnergy, makeEnergyProfile } from "./energy.js";
import type { Pricing, UsageProfile, UserMonthCost } from "./cost.js";
import { DEFAULT_USD_PER_KWH, deviceUsdPerHour, usdPerMTok, userMonthCost } from "./cost.js";
import { GIB, kvBytesPerToken } from "./kv.js";

export interface EstimateInput {
  readonly model: string | ModelSpec;
  readonly hardware: string | HardwareSpec;
  /** Default "bf16". */
  readonly precision?: string | PrecisionSpec;
  /** Tensor-parallel degree (devices per replica); default 1. */
  readonly tp?: number;
  /** Concurrent sequences; default: as many as the KV cache holds (capped at `maxBatch`). */
  readonly batch?: number;
  /** Cap when the batch is chosen from KV capacity (default ENGINE_SETTINGS.maxBatch). */
  readonly maxBatch?: number;
  /** Prompt tokens per request (default 1000). */
  readonly inputTokens?: number;
  /** Generated tokens per request (default 1000). */
  readonly outputTokens?: number;
  readonly kvPrecision?: KvFormat;
  readonly expertParallel?: boolean;
  readonly kvMemoryFraction?: number;
  readonly pricing?: Pricing;
  readonly amortizationYears?: number;
  readonly usdPerKwh?: number;
  readonly pue?: number;
  readonly usage?: UsageProfile;
  readonly params?: PerfParams;
}

export interface Estimate {
  readonly model: string;
  readonly hardware: string;
  readonly precision: string;
  readonly kvPrecision: KvFormat;
  readonly tp: number;
  /** Experts split across the tp devices (MoE with --expert-parallel). */
  readonly expertParallel: boolean;
  readonly batch: number;
  readonly inputTokens: number;
  readonly outputTokens: number;

  readonly weightsGiBPerDevice: number;
  readonly kvBytesPerToken: number;
  /** Tokens the replica's KV cache holds. */
  readonly kvCapacityTokens: number;
  /** Sequences of input + output tokens the cache holds (uncapped). */
  readonly kvMaxBatch: number;
  /** Weights and the batch's KV fit in memory. */
  readonly fits: boolean;

  /** Time to first token for one request alone. */
  readonly ttftMs: number;
  /** Time to first token of the last request when the whole batch is prefilled together. */
  readonly batchTtftMs: number;
  /** Time per output token at this batch. */
  readonly tpotMs: number;
  readonly decodeBound: "compute" | "memory";
  /** Output tokens/s while decoding the batch. */
  readonly decodeTokensPerS: number;
  /** Output tokens/s in steady state (prefill included), whole replica. */
  readonly tokensPerS: number;
  readonly tokensPerSPerDevice: number;

  /** Average accelerator power while serving, per device (W, at most TDP). */
  readonly powerWPerDevice: number;
  readonly powerCapped: boolean;
  /** Facility joules per output token (device energy x PUE). */
  readonly joulesPerToken: number;
  readonly tokensPerJoule: number;

  readonly usdPerMTok: number;
  readonly deviceUsdPerMTok: number;
  readonly energyUsdPerMTok: number;
  readonly userMonth?: UserMonthCost;
}

function resolveModel(m: string | ModelSpec): ModelSpec {
  return typeof m === "string" ? findModel(m) : m;
}
function resolveHardware(h: string | HardwareSpec): HardwareSpec {
  return typeof h === "string" ? findHardware(h) : h;
}
function resolvePrecision(p: string | PrecisionSpec | undefined): PrecisionSpec {
  return p === undefined ? findPrecision("bf16") : typeof p === "string" ? findPrecision(p) : p;
}

/** Builds the profile an estimate uses, for callers that want the fast path directly. */
export function profileFor(input: EstimateInput): PerfProfile {
  return makePerfProfile(resolveModel(input.model), resolveHardware(input.hardware), resolvePrecision(input.precision), {
    tp: input.tp ?? 1,
    ...(input.kvPrecision !== undefined ? { kvFormat: input.kvPrecision } : {}),
    ...(input.expertParallel !== undefined ? { expertParallel: input.expertParallel } : {}),
    ...(input.kvMemoryFraction !== undefined ? { kvMemoryFraction: input.kvMemoryFraction } : {}),
    ...(input.params !== undefined ? { params: input.params } : {}),
  });
}

/**
 * The smallest power-of-two tensor-parallel degree (within the device's scale-up
 * domain) at which the weights fit with room for `minKvTokens` of KV, or undefined.
 */
export function smallestFittingTp(input: Omit<EstimateInput, "tp">, minKvTokens = 1): number | undefined {
  const hw = resolveHardware(input.hardware);
  for (let tp = 1; tp <= hw.link.maxDevices; tp *= 2) {
    const p = profileFor({ ...input, hardware: hw, tp });
    if (p.kvCapacityTokens >= minKvTokens) return tp;
  }
  return undefined;
}

export function estimate(input: EstimateInput): Estimate {
  const model = resolveModel(input.model);
  const hw = resolveHardware(input.hardware);
  const precision = resolvePrecision(input.precision);
  const params = input.params ?? FITTED_PARAMS;
  const tp = input.tp ?? 1;
  const inTok = input.inputTokens ?? 1000;
  const outTok = input.outputTokens ?? 1000;
  if (!(inTok >= 0) || !(outTok >= 1)) throw new RangeError("inputTokens must be >= 0 and outputTokens >= 1");
  const p = profileFor({ ...input, model, hardware: hw, precision, params });
  const kvMax = maxBatch(p, inTok, outTok, Number.MAX_SAFE_INTEGER);
  const batch = input.batch ?? Math.max(1, Math.min(kvMax, input.maxBatch ?? ENGINE_SETTINGS.maxBatch));
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer, got ${batch}`);

  const point = servingPoint(p, batch, inTok, outTok);
  const e = makeEnergyProfile(p, hw, precision, params);
  const dec = decodeStepEnergy(p, e, batch, batch * (inTok + outTok / 2));
  const pre = batchPrefillEnergy(p, e, batch, inTok);
  const cycleS = (pre.ms + outTok * dec.ms) / 1000;
  const deviceJoules = pre.joulesPerDevice + outTok * dec.joulesPerDevice;
  const powerW = cycleS > 0 ? deviceJoules / cycleS : hw.staticW;
  const pue = input.pue ?? DEFAULT_PUE;
  const replicaFacilityW = powerW * tp * pue;
  const joulesPerToken = (deviceJoules * tp * pue) / (batch * outTok);
  const costOpts = {
    ...(input.pricing !== undefined ? { pricing: input.pricing } : {}),
    ...(input.amortizationYears !== undefined ? { amortizationYears: input.amortizationYears } : {}),
    ...(input.usdPerKwh !== undefined ? { usdPerKwh: input.usdPerKwh } : {}),
  };
  const cost = usdPerMTok(hw, tp, point.tokensPerS, replicaFacilityW, costOpts);

  let userMonth: UserMonthCost | undefined;
  if (input.usage !== undefined) {
    const u = input.usage;
    const uIn = u.inputTokens ?? inTok;
    const uOut = u.outputTokens ?? outTok;
    const uBatch = input.batch ?? Math.max(1, Math.min(maxBatch(p, uIn, uOut, Number.MAX_SAFE_INTEGER), input.maxBatch ?? ENGINE_SETTINGS.maxBatch));
    const up = servingPoint(p, uBatch, uIn, uOut);
    userMonth = userMonthCost(u, uOut, tp * deviceUsdPerHour(hw, costOpts), replicaFacilityW, up.tokensPerS / uOut, input.usdPerKwh ?? DEFAULT_USD_PER_KWH);
  }

  return {
    model: model.id,
    hardware: hw.id,
    precision: precision.id,
    kvPrecision: p.kvFormat,
    tp,
    expertParallel: p.expertParallel,
    batch,
    inputTokens: inTok,
    outputTokens: outTok,
    weightsGiBPerDevice: p.weightBytesPerDevice / GIB,
    kvBytesPerToken: kvBytesPerToken(model, p.kvFormat),
    kvCapacityTokens: p.kvCapacityTokens,
    kvMaxBatch: kvMax,
    fits: p.fits && batch <= kvMax,
    ttftMs: prefillMs(p, inTok),
    batchTtftMs: point.batchPrefillMs,
    tpotMs: point.tpotMs,
    decodeBound: decodeBound(p, batch),
    decodeTokensPerS: point.decodeTokensPerS,
    tokensPerS: point.tokensPerS,
    tokensPerSPerDevice: point.tokensPerS / tp,
    powerWPerDevice: powerW,
    powerCapped: pre.powerCapped || dec.powerCapped,
    joulesPerToken,
    tokensPerJoule: joulesPerToken > 0 ? 1 / joulesPerToken : Infinity,
    usdPerMTok: cost.usdPerMTok,
    deviceUsdPerMTok: cost.deviceUsdPerMTok,
    energyUsdPerMTok: cost.energyUsdPerMTok,
    ...(userMonth !== undefined ? { userMonth } : {}),
  };
}
