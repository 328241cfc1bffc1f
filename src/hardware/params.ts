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
  /** Achieved fraction of link bandwidth in all-reduce (assumption: NCCL bus bandwidth ~80% of NVLink's). */
  linkEfficiency: 0.8,
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
