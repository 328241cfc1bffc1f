/**
 * Round-number model, hardware and parameters, so the formulas can be checked
 * by hand in the tests' comments.
 */
import type { HardwareSpec, ModelSpec, PerfParams } from "../../src/hardware/index.js";

/**
 * 2 layers, hidden 1024, 8 heads of 128, 2 KV heads, FFN 4096, vocab 1000, untied.
 *   attention per layer = 1024·1024·2 (q, o) + 1024·256·2 (k, v) = 2,621,440
 *   FFN per layer       = 3·1024·4096                              = 12,582,912
 *   layers              = 2 · 15,204,352                           = 30,408,704
 *   embedding = head    = 1000·1024                                = 1,024,000
 *   total               = 30,408,704 + 2·1,024,000                 = 32,456,704
 *   streamed per pass   = 30,408,704 + 1,024,000 (head)            = 31,432,704
 */
export const TINY: ModelSpec = {
  id: "tiny",
  name: "Tiny",
  layers: 2,
  hidden: 1024,
  heads: 8,
  kvHeads: 2,
  headDim: 128,
  ffn: 4096,
  vocab: 1000,
  tiedEmbeddings: false,
  gatedFfn: true,
  contextLength: 4096,
  source: "test fixture",
};

/** 100 dense BF16 TFLOPS (200 FP8) all achievable, 1000 GB/s, 100 W TDP, 20 W static, 400 GB/s link. */
export const ROUND_HW: HardwareSpec = {
  id: "round",
  name: "Round",
  kind: "gpu",
  peakTflops: { bf16: 100, fp8: 200 },
  matmulEfficiency: { bf16: 1, fp8: 1 },
  memoryGiB: 16,
  memoryType: "HBM",
  memoryGBs: 1000,
  memoryPjPerBit: 3,
  tdpW: 100,
  idleW: 10,
  staticW: 20,
  link: { name: "link", bidirGBs: 400, latencyUs: 1, pjPerBit: 5, maxDevices: 8 },
  price: { rentUsdPerHour: 2, purchaseUsd: 35040 },
  assumed: [],
  source: "test fixture",
};

/** No inefficiency and no overhead: the model reduces to the roofline. */
export const IDEAL: PerfParams = {
  computeEfficiency: 1,
  bandwidthEfficiency: 1,
  stepOverheadMs: 0,
  layerOverheadUs: 0,
  allReduceLatencyUs: 0,
  gemmPadTokens: 0,
  fp4Efficiency: 1,
  allReduceStepUs: 0,
  // the built-in value, which the communication tests below were written against
  allReduceBandwidthEfficiency: 0.8,
  sequenceOverheadUs: 0,
  prefillOverheadMs: 0,
};
