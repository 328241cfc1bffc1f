/**
 * KV-cache size per token, and how many tokens and sequences fit next to the
 * weights.
 */
import type { HardwareSpec } from "./accelerators.js";
import type { ModelSpec } from "./models.js";
import { modelStats } from "./models.js";
import type { KvFormat, PrecisionSpec } from "./precision.js";
import { KV_BYTES } from "./precision.js";
import { ENGINE_SETTINGS } from "./params.js";

export const GIB = 1024 ** 3;

/**
 * KV-cache bytes per token for the whole model:
 * GQA: 2 (K and V) x kvHeads x headDim x layers x bytes;
 * MLA: (kvLoraRank + ropeHeadDim) x layers x bytes (one latent per token and layer).
 */
export function kvBytesPerToken(model: ModelSpec, kv: KvFormat): number {
  return modelStats(model).kvElementsPerToken * KV_BYTES[kv];
}

/**
 * Devices among which one token's KV is split. Tensor parallelism splits KV
 * heads, but no further than there are heads (extra ranks replicate them);
 * an MLA latent is not split by heads at all. With expert parallelism and
 * data-parallel attention each device keeps its own sequences whole, so the
 * cache as a whole is split `tp` ways.
 */
export function kvShards(model: ModelSpec, tp: number, expertParallel = false): number {
  if (expertParallel) return tp;
  if (model.mla !== undefined) return 1;
  return Math.max(1, Math.min(tp, model.kvHeads));
}

export interface MemoryPlan {
  readonly weightBytesPerDevice: number;
  readonly kvBudgetBytesPerDevice: number;
  /** Bytes one cached token occupies on each device. */
  readonly kvBytesPerTokenPerDevice: number;
  /** Tokens the whole replica (tp devices) can hold in KV. */
  readonly kvCapacityTokens: number;
  /** Weights fit with room for at least one token of KV. */
  readonly fits: boolean;
}

export interface MemoryOptions {
  readonly tp: number;
  readonly kv: KvFormat;
  readonly expertParallel?: boolean;
  readonly kvMemoryFraction?: number;
}

/**
 * Weights per device = parameters x bytes per weight / tp (replicated attention
 * under expert parallelism); KV budget = fraction x (capacity - reserve - weights).
 */
export function memoryPlan(model: ModelSpec, hw: HardwareSpec, precision: PrecisionSpec, opts: MemoryOptions): MemoryPlan {
  const s = modelStats(model);
  const tp = opts.tp;
  const ep = opts.expertParallel === true && model.moe !== undefined;
  const replicated = s.totalParams - s.routedExperts * s.expertParams;
  const weightParamsPerDevice = ep ? replicated + (s.routedExperts * s.expertParams) / tp : s.totalParams / tp;
  const weightBytesPerDevice = weightParamsPerDevice * precision.bytesPerWeight;
  const capacity = hw.memoryGiB * GIB;
  const free = capacity * (1 - ENGINE_SETTINGS.reservedMemoryFraction) - weightBytesPerDevice;
  const fraction = opts.kvMemoryFraction ?? ENGINE_SETTINGS.kvMemoryFraction;
  const kvBudgetBytesPerDevice = Math.max(0, free * fraction);
  const kvBytesPerTokenPerDevice = kvBytesPerToken(model, opts.kv) / kvShards(model, tp, ep);
  // every device holds its share of every token (on average, under expert parallelism), so the
  // replica holds what one device's budget allows
  const kvCapacityTokens = Math.floor(kvBudgetBytesPerDevice / kvBytesPerTokenPerDevice);
  return { weightBytesPerDevice, kvBudgetBytesPerDevice, kvBytesPerTokenPerDevice, kvCapacityTokens, fits: kvCapacityTokens >= 1 };
}

/** Largest number of sequences of `tokensPerSequence` the cache holds, capped by the engine's max batch. */
export function maxBatchForKv(kvCapacityTokens: number, tokensPerSequence: number, cap: number = ENGINE_SETTINGS.maxBatch): number {
  if (tokensPerSequence <= 0) return cap;
  return Math.max(0, Math.min(cap, Math.floor(kvCapacityTokens / tokensPerSequence)));
}
