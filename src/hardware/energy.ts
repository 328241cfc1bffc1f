/**
 * Energy of a pass from what it does: bits moved from DRAM (the memory tier's
 * pJ/bit plus on-chip movement), FLOPs (pJ/FLOP by number format), bits sent
 * over the scale-up link (pJ/bit), plus static power over the pass's time.
 * Device power is then checked against TDP: a device cannot draw more, so
 * where the sum exceeds it the device is power-capped at TDP (and the
 * measured-and-fitted time already includes the throttling).
 * Facility energy = device energy x PUE.
 */
import type { HardwareSpec } from "./accelerators.js";
import { matrixRate } from "./accelerators.js";
import type { PerfProfile } from "./perf.js";
import { batchPrefillMs, decodeStepMs, gemmFlops, prefillMs, weightBytesRead } from "./perf.js";
import type { ComputeFormat, PrecisionSpec } from "./precision.js";
import type { PerfParams } from "./params.js";
import { ENGINE_SETTINGS, FITTED_PARAMS } from "./params.js";

/** Data-centre PUE default (ref: 1.58 industry average 2023, ~1.1 hyperscale; assumption: 1.2). */
export const DEFAULT_PUE = 1.2;

/**
 * Energy per FLOP for a format on a device. Where the catalog gives none, it is
 * set so that a compute-bound pass at the achieved rate draws
 * computePowerShare x (TDP − static): GPUs run dense GEMMs at their power limit.
 * (Sanity check: H100 BF16 comes out near 1 pJ/FLOP, Horowitz's 45 nm FP16
 * multiply + add is 1.5 pJ per 2 FLOPs before operand delivery.)
 */
export function pjPerFlop(hw: HardwareSpec, format: ComputeFormat, params: PerfParams = FITTED_PARAMS): number {
  const given = hw.pjPerFlop?.[format];
  if (given !== undefined) return given;
  const rate = matrixRate(hw, format, params.fp4Efficiency);
  const achievedFlopsPerS = rate.tflops * 1e12 * rate.efficiency * params.computeEfficiency;
  return ((ENGINE_SETTINGS.computePowerShare * (hw.tdpW - hw.staticW)) / achievedFlopsPerS) * 1e12;
}

/** Per-device energy constants for a profile. */
export interface EnergyProfile {
  readonly staticW: number;
  readonly tdpW: number;
  readonly pjPerFlopGemm: number;
  readonly pjPerFlopAttn: number;
  /** DRAM tier + on-chip movement, per byte. */
  readonly pjPerByteMemory: number;
  readonly pjPerByteLink: number;
}

export function makeEnergyProfile(p: PerfProfile, hw: HardwareSpec, precision: PrecisionSpec, params: PerfParams = FITTED_PARAMS): EnergyProfile {
  return {
    staticW: hw.staticW,
    tdpW: hw.tdpW,
    pjPerFlopGemm: pjPerFlop(hw, precision.compute, params),
    pjPerFlopAttn: pjPerFlop(hw, p.kvFormat === "fp8" ? "fp8" : "bf16", params),
    pjPerByteMemory: (hw.memoryPjPerBit + ENGINE_SETTINGS.onChipPjPerBit) * 8,
    pjPerByteLink: hw.link.pjPerBit * 8,
  };
}

export interface PassEnergy {
  readonly ms: number;
  /** Joules per device, before PUE. */
  readonly joulesPerDevice: number;
  /** Average power per device, W, at most TDP. */
  readonly powerW: number;
  /** The activity would have drawn more than TDP. */
  readonly powerCapped: boolean;
}

function settle(e: EnergyProfile, ms: number, dynamicPj: number): PassEnergy {
  const s = ms / 1000;
  const raw = e.staticW + (dynamicPj * 1e-12) / s;
  const capped = raw > e.tdpW;
  const powerW = capped ? e.tdpW : raw;
  return { ms, joulesPerDevice: powerW * s, powerW, powerCapped: capped };
}

/** Energy of one decode step (per device). */
export function decodeStepEnergy(p: PerfProfile, e: EnergyProfile, batch: number, totalContextTokens: number): PassEnergy {
  const ms = decodeStepMs(p, batch, totalContextTokens);
  const flopsGemm = gemmFlops(p, batch);
  const flopsAttn = totalContextTokens * p.attnFlopsPerPairDecode;
  const bytes = weightBytesRead(p, batch) + totalContextTokens * p.kvBytesPerToken + batch * p.activationBytesPerToken;
  const link = batch * p.commBytesPerToken;
  const pj = flopsGemm * e.pjPerFlopGemm + flopsAttn * e.pjPerFlopAttn + bytes * e.pjPerByteMemory + link * e.pjPerByteLink;
  return settle(e, ms, pj);
}

/** Energy of prefilling `sequences` prompts of `tokens` each, packed into passes (per device). */
export function batchPrefillEnergy(p: PerfProfile, e: EnergyProfile, sequences: number, tokens: number): PassEnergy {
  const total = sequences * tokens;
  const passes = Math.max(1, total / p.maxTokensPerPass);
  const chunk = total / passes;
  const attnFlops = p.attnFlopsPerPairPrefill * total * (tokens / 2);
  const kvBytes = p.kvBytesPerToken * total;
  const ms = batchPrefillMs(p, sequences, tokens);
  const bytes = passes * weightBytesRead(p, chunk) + kvBytes + total * p.activationBytesPerToken;
  const pj =
    passes * gemmFlops(p, chunk) * e.pjPerFlopGemm +
    attnFlops * e.pjPerFlopAttn +
    bytes * e.pjPerByteMemory +
    total * p.commBytesPerToken * e.pjPerByteLink;
  return settle(e, ms, pj);
}

/**
 * Joules (per device, before PUE) of one decode step: the allocation-free form of
 * decodeStepEnergy for the simulator's inner loop.
 */
export function decodeStepJoules(p: PerfProfile, e: EnergyProfile, batch: number, totalContextTokens: number): number {
  if (batch <= 0) return 0;
  const s = decodeStepMs(p, batch, totalContextTokens) / 1000;
  const pj =
    gemmFlops(p, batch) * e.pjPerFlopGemm +
    totalContextTokens * p.attnFlopsPerPairDecode * e.pjPerFlopAttn +
    (weightBytesRead(p, batch) + totalContextTokens * p.kvBytesPerToken + batch * p.activationBytesPerToken) * e.pjPerByteMemory +
    batch * p.commBytesPerToken * e.pjPerByteLink;
  return Math.min(e.tdpW * s, e.staticW * s + pj * 1e-12);
}

/** Joules (per device, before PUE) of prefilling one request of `tokens` after `cachedTokens`. */
export function prefillJoules(p: PerfProfile, e: EnergyProfile, tokens: number, cachedTokens = 0): number {
  if (tokens <= 0) return 0;
  const s = prefillMs(p, tokens, cachedTokens) / 1000;
  const passes = Math.ceil(tokens / p.maxTokensPerPass);
  const chunk = tokens / passes;
  const pj =
    passes * gemmFlops(p, chunk) * e.pjPerFlopGemm +
    p.attnFlopsPerPairPrefill * tokens * (cachedTokens + tokens / 2) * e.pjPerFlopAttn +
    (passes * weightBytesRead(p, chunk) + p.kvBytesPerToken * (passes * cachedTokens + tokens) + tokens * p.activationBytesPerToken) * e.pjPerByteMemory +
    tokens * p.commBytesPerToken * e.pjPerByteLink;
  return Math.min(e.tdpW * s, e.staticW * s + pj * 1e-12);
}
