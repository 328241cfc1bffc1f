/**
 * The few global parameters of the performance model, and the fixed
 * (not fitted) serving-engine settings. The fitted values come from
 * `fitParams` in calibration.ts over the measured rows of
 * ../shared/data/hardware-reference.md; `bench/calibration.ts --fit` refits them.
 */

export interface PerfParams {
  /** Fraction of the device's measured max-achievable matmul rate (MAMF) a serving pass sustains. */
  readonly computeEfficiency: number;
  /** Fraction of peak memory bandwidth achieved streaming weights and KV. */
  readonly bandwidthEfficiency: number;
  /** Fixed cost of every forward pass: scheduling, sampling, launch (ms). */
  readonly stepOverheadMs: number;
  /** Per-layer cost of every forward pass: kernel launches, tails and synchronisation (microseconds). */
  readonly layerOverheadUs: number;
  /** Software latency of one all-reduce or all-to-all, on top of link hops (microseconds). */
  readonly allReduceLatencyUs: number;
  /**
   * Software latency of each step of an all-reduce, on top of the link hop (microseconds). A tree
   * all-reduce over tp devices takes 2·log2(tp) steps, so this is the part of the latency that grows
   * with tp: 0 for engines with one-shot all-reduce kernels, tens of microseconds for stacks whose
   * time per token stops falling past tp 4.
   */
  readonly allReduceStepUs: number;
  /** Fraction of the link's one-way bandwidth an all-reduce moves data at (NCCL "bus bandwidth"). */
  readonly allReduceBandwidthEfficiency: number;
  /**
   * Per sequence in a pass (microseconds): block tables, sampling, stop checks and other host work
   * done for each sequence. What makes time per token grow with batch while decode is still
   * memory-bound.
   */
  readonly sequenceOverheadUs: number;
  /**
   * Fixed cost of a pass that evaluates prompt tokens, beyond a decode step's (ms): the host work an
   * engine does for a prompt before its first token (a sampler, the sequence's KV made ready, the
   * prompt's batch built). Paid once per prefill pass, so a short prompt's TTFT carries it and a decode
   * step does not.
   */
  readonly prefillOverheadMs: number;
  /**
   * Rows of padding every GEMM pays (tile quantisation and wave tails): a GEMM over m tokens
   * costs as if it had m + min(m, gemmPadTokens). Negligible for big prefill chunks, large for
   * decode at modest batch and for each expert of a fine-grained MoE.
   */
  readonly gemmPadTokens: number;
  /**
   * FP4 matrix rate achieved relative to the FP8 one's measured efficiency, for devices whose
   * FP4 MAMF nobody has measured (block scales and on-the-fly activation quantisation cost).
   */
  readonly fp4Efficiency: number;
}

/** Fitted by `fitParams` (calibration.ts); see docs/hardware-model.md for the fit and its residuals. */
export const FITTED_PARAMS: PerfParams = {
  computeEfficiency: 0.9543,
  bandwidthEfficiency: 0.8874,
  stepOverheadMs: 0.1268,
  layerOverheadUs: 67.85,
  allReduceLatencyUs: 31.51,
  gemmPadTokens: 73.64,
  fp4Efficiency: 0.6306,
  // Not fitted to the reference rows (TensorRT-LLM and llama.cpp show no sign of them): the
  // values under which the seven above were fitted. `flotilla calibrate` fits them to an engine.
  allReduceStepUs: 0,
  prefillOverheadMs: 0,
  // assumption: NCCL bus bandwidth ~80% of NVLink's
  allReduceBandwidthEfficiency: 0.8,
  sequenceOverheadUs: 0,
};

/** Fixed settings, not fitted (each with its source or stated as an assumption). */
export const ENGINE_SETTINGS = {
  /** Share of free memory given to the KV cache: vLLM gpu_memory_utilization / TRT-LLM kv_cache_free_gpu_mem_fraction default. */
  kvMemoryFraction: 0.9,
  /** Memory held back for activations, workspace and runtime context (assumption: 4% of capacity). */
  reservedMemoryFraction: 0.04,
  /** Tokens per forward pass when prefilling in chunks (TRT-LLM default max_num_tokens 8192). */
  maxTokensPerPass: 8192,
  /** Cap on concurrent sequences when the batch is chosen from KV capacity (TRT-LLM default max_batch_size 2048). */
  maxBatch: 2048,
  /** Bytes per activation element exchanged between devices (BF16). */
  activationBytes: 2,
  /**
   * On-chip movement of each bit fetched from DRAM: crossbar wires to L2 (~0.1 pJ/bit/mm over ~20 mm,
   * Dally et al. CACM 2020), L2 and shared-memory SRAM (Horowitz: 10-100 pJ per 64-bit read), registers.
   * Assumption: 4 pJ/bit.
   */
  onChipPjPerBit: 4,
  /** Share of (TDP - static) a compute-bound pass draws; sets energy per FLOP where the catalog gives none (assumption). */
  computePowerShare: 0.9,
} as const;

/** The parameters that are software time (host work, launches, synchronisation) rather than rates. */
export const OVERHEAD_KEYS = ["stepOverheadMs", "layerOverheadUs", "sequenceOverheadUs", "allReduceLatencyUs", "allReduceStepUs", "prefillOverheadMs"] as const;

/**
 * `params` with every software-time parameter multiplied by `factor`: the same
 * engine on a system whose host and kernel launches are faster or slower.
 */
function scaleOverheads(params: PerfParams, factor: number): PerfParams {
  if (factor === 1) return params;
  const out: Record<string, number> = { ...params };
  for (const k of OVERHEAD_KEYS) out[k] = params[k] * factor;
  return out as unknown as PerfParams;
}

/**
 * An engine's parameters: one set for every device, and a software-overhead
 * factor for each device it was measured on (absent: 1). The factor carries
 * what differs between systems running the same engine: host CPU speed and
 * kernel-launch latency, which the same code pays more of on an older system.
 */
export interface EngineParams {
  readonly params: PerfParams;
  readonly overheadScale: Readonly<Record<string, number>>;
}

/** The parameters the engine runs with on `hardwareId`. */
export function paramsOn(engine: EngineParams, hardwareId: string): PerfParams {
  return scaleOverheads(engine.params, engine.overheadScale[hardwareId] ?? 1);
}
