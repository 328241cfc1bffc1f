/**
 * Time of prefill and decode passes. Everything that depends only on
 * (model, hardware, precision, parallelism) is folded into a PerfProfile once;
 * `decodeStepMs` and `prefillMs` are then a handful of arithmetic operations,
 * with no allocation, for the simulator's inner loop.
 *
 * One forward pass over `n` tokens on one device of a tensor-parallel group:
 *
 *   t = max(C(n) / R_gemm, W(n) / B)              linear layers: compute or weight streaming
 *     + max(A / R_attn, K / B)                     attention: compute or KV streaming
 *     + n·a / B                                     activations written and read between kernels
 *     + c_fix + n·c_tok                             all-reduce (or all-to-all) latency + bytes
 *     + o_step + L·o_layer + s·o_seq                per-pass, per-layer and per-sequence software overhead
 *
 * W(n) = dense weights + E·w_e·(1 − (1 − k/E)^n): the expected number of distinct
 * routed experts n tokens touch under uniform top-k routing (all of them for a
 * dense model's FFN). C(n) = (n + min(n, m0))·F_dense + (n·k + min(n·k, m0·E_touched))·F_expert:
 * the GEMM FLOPs with up to m0 rows of padding per GEMM (tile quantisation; each
 * touched expert is its own GEMM; a GEMM smaller than m0 rows runs at half rate).
 * The two max() terms are separate because they are separate kernels: GEMMs and
 * attention do not overlap each other's bottleneck.
 */
import type { HardwareSpec } from "./accelerators.js";
import { matrixRate } from "./accelerators.js";
import type { ModelSpec } from "./models.js";
import { modelStats } from "./models.js";
import type { KvFormat, PrecisionSpec } from "./precision.js";
import { kvBytesPerToken, kvShards, maxBatchForKv, memoryPlan } from "./kv.js";
import type { PerfParams } from "./params.js";
import { ENGINE_SETTINGS, FITTED_PARAMS } from "./params.js";

/** Per-device constants of one (model, hardware, precision, parallelism) combination. */
export interface PerfProfile {
  readonly modelId: string;
  readonly hardwareId: string;
  readonly precisionId: string;
  readonly kvFormat: KvFormat;
  readonly tp: number;
  readonly expertParallel: boolean;
  readonly layers: number;

  /** Bytes of weights every pass streams, per device. */
  readonly denseBytes: number;
  /** Bytes of all routed experts, per device (0 for a dense model). */
  readonly expertBytes: number;
  /** ln(1 − k/E): the chance an expert escapes one token is e^logMiss; −∞ where every expert is always used. */
  readonly logMiss: number;
  /** Linear-layer FLOPs per token of the pass, per device (dense part + k routed experts). */
  readonly linearFlopsPerToken: number;
  /** Dense (always-used) linear FLOPs per token, per device. */
  readonly denseFlopsPerToken: number;
  /** FLOPs of one routed expert for one token, per device. */
  readonly expertFlopsPerToken: number;
  /** Routed experts E and experts per token k (0 for a dense model). */
  readonly experts: number;
  readonly activeExperts: number;
  /** GEMM padding rows (params.gemmPadTokens). */
  readonly padTokens: number;
  /** Attention FLOPs per (query, cached token) pair, per device. */
  readonly attnFlopsPerPairDecode: number;
  readonly attnFlopsPerPairPrefill: number;
  /** KV bytes per cached token, per device. */
  readonly kvBytesPerToken: number;
  /** Activation bytes each token of a pass writes and reads back, per device. */
  readonly activationBytesPerToken: number;

  /** Achieved rates, per millisecond. */
  readonly gemmFlopsPerMs: number;
  readonly attnFlopsPerMs: number;
  readonly bytesPerMs: number;

  /** Communication: fixed latency per pass, time per token of the pass, bytes sent per token per device. */
  readonly commFixedMs: number;
  readonly commMsPerToken: number;
  readonly commBytesPerToken: number;
  /** Software overhead per pass. */
  readonly overheadMs: number;
  /** Software overhead per sequence in a pass. */
  readonly sequenceOverheadMs: number;
  /** Software overhead of a pass that evaluates prompt tokens (params.prefillOverheadMs). */
  readonly prefillOverheadMs: number;
  readonly maxTokensPerPass: number;

  readonly weightBytesPerDevice: number;
  /** Tokens of KV the replica holds. */
  readonly kvCapacityTokens: number;
  /** Weights fit with some KV room. */
  readonly fits: boolean;
}

export interface ProfileOptions {
  readonly tp?: number;
  readonly kvFormat?: KvFormat;
  /** Experts split across the tp devices with data-parallel attention (DeepSeek/SGLang style); MoE only. */
  readonly expertParallel?: boolean;
  readonly kvMemoryFraction?: number;
  readonly params?: PerfParams;
}

export function makePerfProfile(model: ModelSpec, hw: HardwareSpec, precision: PrecisionSpec, opts: ProfileOptions = {}): PerfProfile {
  const tp = opts.tp ?? 1;
  if (!Number.isInteger(tp) || tp < 1) throw new RangeError(`tp must be a positive integer, got ${tp}`);
  const params = opts.params ?? FITTED_PARAMS;
  const kvFormat = opts.kvFormat ?? precision.kv;
  const s = modelStats(model);
  const ep = opts.expertParallel === true && model.moe !== undefined;
  const bpw = precision.bytesPerWeight;

  // Streaming: under TP every device streams 1/tp of every matrix; under EP the attention and
  // dense parts are replicated (each device streams all of them) and the experts are split.
  const denseBytes = (ep ? s.denseReadParams : s.denseReadParams / tp) * bpw;
  const expertBytes = (s.routedExperts * s.expertParams * bpw) / tp;
  const k = s.activeRoutedExperts;
  const e = s.routedExperts;
  const logMiss = e === 0 ? 0 : k >= e ? -Infinity : Math.log(1 - k / e);

  const gemm = matrixRate(hw, precision.compute, params.fp4Efficiency);
  const attn = matrixRate(hw, kvFormat === "fp8" ? "fp8" : "bf16");
  const eta = params.computeEfficiency;
  const gemmFlopsPerMs = (gemm.tflops * 1e12 * gemm.efficiency * eta) / 1000;
  const attnFlopsPerMs = (attn.tflops * 1e12 * attn.efficiency * eta) / 1000;
  const bytesPerMs = (hw.memoryGBs * 1e9 * params.bandwidthEfficiency) / 1000;

  // Communication per pass. TP: two all-reduces per layer (after attention and after the FFN) of
  // hidden x activation bytes per token; a ring all-reduce sends 2(tp−1)/tp of the buffer per device.
  // EP: the MoE layers' all-reduce becomes an all-to-all dispatch + combine of k copies per token.
  let commFixedMs = 0;
  let commBytesPerToken = 0;
  if (tp > 1) {
    // a tree all-reduce: 2·log2(tp) steps, each a link hop plus the engine's own per-step latency
    const stepsUs = (hw.link.latencyUs + params.allReduceStepUs) * 2 * Math.log2(tp);
    const latencyMs = (params.allReduceLatencyUs + stepsUs) / 1000;
    const tokenBytes = model.hidden * ENGINE_SETTINGS.activationBytes;
    if (ep) {
      const moeLayers = s.moeLayers;
      // each device holds 1/tp of the pass's tokens; each token goes to k experts and back
      commFixedMs = 2 * moeLayers * latencyMs;
      commBytesPerToken = (moeLayers * 2 * k * tokenBytes * (tp - 1)) / tp / tp;
    } else {
      commFixedMs = 2 * model.layers * latencyMs;
      commBytesPerToken = (2 * model.layers * tokenBytes * 2 * (tp - 1)) / tp;
    }
  }
  const linkBytesPerMs = ((hw.link.bidirGBs / 2) * 1e9 * params.allReduceBandwidthEfficiency) / 1000;
  const commMsPerToken = commBytesPerToken / linkBytesPerMs;

  const mem = memoryPlan(model, hw, precision, {
    tp,
    kv: kvFormat,
    expertParallel: ep,
    ...(opts.kvMemoryFraction !== undefined ? { kvMemoryFraction: opts.kvMemoryFraction } : {}),
  });

  return {
    modelId: model.id,
    hardwareId: hw.id,
    precisionId: precision.id,
    kvFormat,
    tp,
    expertParallel: ep,
    layers: model.layers,
    denseBytes,
    expertBytes,
    logMiss,
    linearFlopsPerToken: s.linearFlopsPerToken / tp,
    denseFlopsPerToken: (2 * s.denseReadParams) / tp,
    expertFlopsPerToken: (2 * s.expertParams) / tp,
    experts: e,
    activeExperts: k,
    padTokens: params.gemmPadTokens,
    attnFlopsPerPairDecode: s.attnFlopsPerPairDecode / tp,
    attnFlopsPerPairPrefill: s.attnFlopsPerPairPrefill / tp,
    kvBytesPerToken: kvBytesPerToken(model, kvFormat) / kvShards(model, tp, ep),
    // written once and read once, BF16; under EP each device carries 1/tp of the tokens whole
    activationBytesPerToken:
      2 * ENGINE_SETTINGS.activationBytes * (ep ? (s.activationElementsReplicated + s.activationElementsSplit) / tp : s.activationElementsReplicated + s.activationElementsSplit / tp),
    gemmFlopsPerMs,
    attnFlopsPerMs,
    bytesPerMs,
    commFixedMs,
    commMsPerToken,
    commBytesPerToken,
    overheadMs: params.stepOverheadMs + (model.layers * params.layerOverheadUs) / 1000,
    sequenceOverheadMs: params.sequenceOverheadUs / 1000,
    prefillOverheadMs: params.prefillOverheadMs,
    maxTokensPerPass: ENGINE_SETTINGS.maxTokensPerPass,
    weightBytesPerDevice: mem.weightBytesPerDevice,
    kvCapacityTokens: mem.kvCapacityTokens,
    fits: mem.fits,
  };
}

/** Expected weight bytes one pass over `tokens` tokens streams, per device. */
export function weightBytesRead(p: PerfProfile, tokens: number): number {
  return p.denseBytes + p.expertBytes * (1 - Math.exp(tokens * p.logMiss));
}

/** GEMM FLOPs of one pass over `tokens` tokens including tile padding, per device. */
export function gemmFlops(p: PerfProfile, tokens: number): number {
  const touched = p.experts * (1 - Math.exp(tokens * p.logMiss));
  return (tokens + Math.min(tokens, p.padTokens)) * p.denseFlopsPerToken + (tokens * p.activeExperts + Math.min(tokens * p.activeExperts, p.padTokens * touched)) * p.expertFlopsPerToken;
}

/**
 * One forward pass over `tokens` tokens of `sequences` sequences with the given attention FLOPs and KV
 * bytes (per device). A pass over more tokens than sequences evaluates some prompt, and pays the prefill
 * overhead (a decoding sequence brings one token).
 */
export function passMs(p: PerfProfile, tokens: number, attnFlops: number, kvBytes: number, sequences: number): number {
  const lin = linearMs(p, tokens);
  const att = attentionMs(p, attnFlops, kvBytes);
  const prefill = tokens > sequences ? p.prefillOverheadMs : 0;
  return lin + att + (tokens * p.activationBytesPerToken) / p.bytesPerMs + p.commFixedMs + tokens * p.commMsPerToken + p.overheadMs + prefill + sequences * p.sequenceOverheadMs;
}

/**
 * The linear layers of one pass over `tokens` tokens (per device): the GEMMs,
 * tile padding included, or the weight reads they wait on, whichever takes
 * longer. With experts, a pass reads only the experts its tokens touch.
 */
function linearMs(p: PerfProfile, tokens: number): number {
  const miss = p.experts === 0 ? 0 : 1 - Math.exp(tokens * p.logMiss);
  const w = p.denseBytes + p.expertBytes * miss;
  const c = (tokens + Math.min(tokens, p.padTokens)) * p.denseFlopsPerToken + (tokens * p.activeExperts + Math.min(tokens * p.activeExperts, p.padTokens * p.experts * miss)) * p.expertFlopsPerToken;
  return Math.max(c / p.gemmFlopsPerMs, w / p.bytesPerMs);
}

/** Attention (per device): its FLOPs or the KV bytes it reads, whichever takes longer. */
function attentionMs(p: PerfProfile, attnFlops: number, kvBytes: number): number {
  return Math.max(attnFlops / p.attnFlopsPerMs, kvBytes / p.bytesPerMs);
}

/**
 * `passes` prefill passes of `chunk` tokens each, `tokens` in all, with the attention FLOPs and KV bytes
 * of them all; `sequenceSlots` is the sum over passes of the sequences each holds.
 */
function prefillPassesMs(p: PerfProfile, passes: number, chunk: number, tokens: number, attnFlops: number, kvBytes: number, sequenceSlots: number): number {
  const lin = passes * linearMs(p, chunk);
  const att = attentionMs(p, attnFlops, kvBytes);
  return lin + att + (tokens * p.activationBytesPerToken) / p.bytesPerMs + passes * (p.commFixedMs + p.overheadMs + p.prefillOverheadMs) + tokens * p.commMsPerToken + sequenceSlots * p.sequenceOverheadMs;
}

/**
 * One decode step: `batch` sequences each emit one token, attending to
 * `totalContextTokens` cached tokens between them (the sum of their lengths).
 */
export function decodeStepMs(p: PerfProfile, batch: number, totalContextTokens: number): number {
  if (batch <= 0) return 0;
  const lin = linearMs(p, batch);
  const att = attentionMs(p, totalContextTokens * p.attnFlopsPerPairDecode, totalContextTokens * p.kvBytesPerToken);
  return lin + att + (batch * p.activationBytesPerToken) / p.bytesPerMs + p.commFixedMs + batch * p.commMsPerToken + p.overheadMs + batch * p.sequenceOverheadMs;
}

/**
 * Prefill of one request alone: `tokens` new prompt tokens after `cachedTokens`
 * already in cache (a prefix hit), in chunks of at most maxTokensPerPass.
 */
export function prefillMs(p: PerfProfile, tokens: number, cachedTokens = 0): number {
  if (tokens <= 0) return 0;
  const passes = Math.ceil(tokens / p.maxTokensPerPass);
  const chunk = tokens / passes;
  // causal attention over the cached prefix and the new tokens themselves
  const attnFlops = p.attnFlopsPerPairPrefill * tokens * (cachedTokens + tokens / 2);
  // each chunk reads the KV written before it and writes its own
  const kvBytes = p.kvBytesPerToken * (passes * cachedTokens + (tokens * (passes - 1)) / 2 + tokens);
  // one sequence, in every pass
  return prefillPassesMs(p, passes, chunk, tokens, attnFlops, kvBytes, passes);
}

/**
 * Prefill of `sequences` prompts of `tokens` each, packed together into passes
 * of maxTokensPerPass (fractional passes: an amortised cost, smooth in its inputs).
 */
export function batchPrefillMs(p: PerfProfile, sequences: number, tokens: number, cachedTokens = 0): number {
  if (sequences <= 0 || tokens <= 0) return 0;
  const total = sequences * tokens;
  const passes = Math.max(1, total / p.maxTokensPerPass);
  const chunk = total / passes;
  const attnFlops = p.attnFlopsPerPairPrefill * total * (cachedTokens + tokens / 2);
  const kvBytes = p.kvBytesPerToken * sequences * (cachedTokens + tokens);
  // a prompt split across passes costs its per-sequence overhead in each
  const slots = sequences + passes - 1;
  return prefillPassesMs(p, passes, chunk, total, attnFlops, kvBytes, slots);
}

export interface ServingPoint {
  readonly batch: number;
  /** Time per output token at this batch (decode step at the mean context). */
  readonly tpotMs: number;
  /** Prefill time of one batch of prompts, amortised over its decode. */
  readonly batchPrefillMs: number;
  /** Output tokens per second of the replica in steady state, prefill included. */
  readonly tokensPerS: number;
  /** Output tokens per second while decoding only. */
  readonly decodeTokensPerS: number;
}

/**
 * Steady state of continuous batching with `batch` sequences of `input` prompt and
 * `output` generated tokens: every `output` steps the batch turns over, so one
 * cycle is a batch of prefills plus `output` decode steps at the mean context
 * (input + output/2 per sequence).
 */
export function servingPoint(p: PerfProfile, batch: number, input: number, output: number): ServingPoint {
  const tpot = decodeStepMs(p, batch, batch * (input + output / 2));
  const pre = batchPrefillMs(p, batch, input);
  const cycle = pre + output * tpot;
  return {
    batch,
    tpotMs: tpot,
    batchPrefillMs: pre,
    tokensPerS: cycle > 0 ? (batch * output * 1000) / cycle : 0,
    decodeTokensPerS: tpot > 0 ? (batch * 1000) / tpot : 0,
  };
}

/**
 * The largest batch, at most `cap`, whose decode step (each sequence
 * attending to `contextPerSequence` tokens) takes at most `tpotMs`; 0 where
 * not even one sequence's does. The step grows with the batch, so bisection.
 */
export function largestBatchWithin(p: PerfProfile, contextPerSequence: number, cap: number, tpotMs: number): number {
  const step = (b: number): number => decodeStepMs(p, b, b * contextPerSequence);
  if (step(1) > tpotMs) return 0;
  let lo = 1;
  let hi = Math.max(1, cap);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (step(mid) <= tpotMs) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Batch that fills the KV cache with sequences of input + output tokens, capped as engines do. */
export function maxBatch(p: PerfProfile, input: number, output: number, cap: number = ENGINE_SETTINGS.maxBatch): number {
  return maxBatchForKv(p.kvCapacityTokens, input + output, cap);
}

/** Which resource bounds a decode step: the larger of the linear-layer terms. */
export function decodeBound(p: PerfProfile, batch: number): "compute" | "memory" {
  return gemmFlops(p, batch) / p.gemmFlopsPerMs > weightBytesRead(p, batch) / p.bytesPerMs ? "compute" : "memory";
}
