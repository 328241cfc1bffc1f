/**
 * The physical limit of a replica: how long its work would take if every
 * pass ran at the devices' datasheet peak, memory bandwidth and matrix FLOPS
 * alike, with no software overhead. What the efficiency figures compare the
 * fleet against (docs/observability.md, "The headline number"): a replica
 * busy all the time on an engine that reaches 80% of peak bandwidth decoding
 * is 80% efficient, not "100% utilised".
 *
 * A roofline profile is an ordinary PerfProfile, so the same pass formulas
 * (perf.ts) time the same batches and contexts at the limit: a decode step
 * streams the weights once for the whole batch plus each sequence's KV
 * (memory-bound until the batch is large), a prompt is its FLOPs.
 */
import type { HardwareSpec } from "./accelerators.js";
import { matrixRate } from "./accelerators.js";
import type { ModelSpec } from "./models.js";
import type { PerfParams } from "./params.js";
import type { PerfProfile, ProfileOptions } from "./perf.js";
import { decodeStepMs, makePerfProfile } from "./perf.js";
import type { PrecisionSpec } from "./precision.js";

/** Rates at 100% of peak, and no time that is software's: launches, scheduling, padding. */
const AT_PEAK: PerfParams = {
  computeEfficiency: 1,
  bandwidthEfficiency: 1,
  stepOverheadMs: 0,
  layerOverheadUs: 0,
  allReduceLatencyUs: 0,
  allReduceStepUs: 0,
  allReduceBandwidthEfficiency: 1,
  sequenceOverheadUs: 0,
  prefillOverheadMs: 0,
  gemmPadTokens: 0,
  fp4Efficiency: 1,
};

/**
 * The replica's passes at the devices' peak: datasheet matrix FLOPS (not the
 * measured achievable share makePerfProfile starts from), peak memory and
 * link bandwidth, and no overheads. Link hops keep their latency: it is physics.
 */
export function rooflineProfile(model: ModelSpec, hw: HardwareSpec, precision: PrecisionSpec, opts: Omit<ProfileOptions, "params"> = {}): PerfProfile {
  const p = makePerfProfile(model, hw, precision, { ...opts, params: AT_PEAK });
  const gemm = matrixRate(hw, precision.compute);
  const attn = matrixRate(hw, p.kvFormat === "fp8" ? "fp8" : "bf16");
  return { ...p, gemmFlopsPerMs: gemm.tflops * 1e9, attnFlopsPerMs: attn.tflops * 1e9 };
}

/** One request's work, as a replica's usage ledger and timing describe it. */
export interface RequestWork {
  readonly promptTokens: number;
  /** Prompt tokens the engine found in its prefix cache: no work. */
  readonly cachedTokens: number;
  readonly outputTokens: number;
  /** Sequences decoding beside it (itself included), on average: they share each step's weight reads. */
  readonly batch: number;
}

/**
 * Milliseconds a request's work takes at the physical limit: its uncached
 * prompt's FLOPs at peak (a prompt rides in passes whose weights the decode
 * steps already pay for), and its share of `outputTokens` decode steps of
 * `batch` sequences at the mean context, as servingPoint takes it.
 */
export function requestRooflineMs(roof: PerfProfile, w: RequestWork): number {
  const cached = Math.min(Math.max(0, w.cachedTokens), w.promptTokens);
  const fresh = Math.max(0, w.promptTokens - cached);
  const prefill = (fresh * roof.linearFlopsPerToken) / roof.gemmFlopsPerMs + (roof.attnFlopsPerPairPrefill * fresh * (cached + fresh / 2)) / roof.attnFlopsPerMs;
  if (w.outputTokens <= 0) return prefill;
  const batch = Math.max(1, w.batch);
  const step = decodeStepMs(roof, batch, batch * (w.promptTokens + w.outputTokens / 2));
  return prefill + (w.outputTokens * step) / batch;
}

/**
 * The share of what the paid-for hardware could deliver that it delivered as
 * useful output: `value` = roofline × availability × goodput.
 */
export interface Efficiency {
  readonly value: number;
  /** The work's time at the physical limit over the time up: how close to the datasheet the busy hardware ran, and how busy it was. */
  readonly roofline: number;
  /** Time up over time paid for. */
  readonly availability: number;
  /** Of the requests served, the share that counted (answered in full; in the twin, within the SLO). */
  readonly goodput: number;
}

/** Time totals in any one unit: the work at the limit, time up, time paid for; and requests served, of which useful. */
export interface EfficiencyTotals {
  readonly atLimit: number;
  readonly up: number;
  readonly paid: number;
  readonly served: number;
  readonly useful: number;
}

export function efficiencyOf(t: EfficiencyTotals): Efficiency {
  const roofline = t.up > 0 ? t.atLimit / t.up : 0;
  const availability = t.paid > 0 ? t.up / t.paid : 0;
  // No request served: nothing was wasted on a bad answer either.
  const goodput = t.served > 0 ? t.useful / t.served : 1;
  return { value: roofline * availability * goodput, roofline, availability, goodput };
}
