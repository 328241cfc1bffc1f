/** Hand-computed values for each formula of the performance, energy and cost model. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ENGINE_SETTINGS,
  FITTED_PARAMS,
  GIB,
  batchPrefillMs,
  decodeStepEnergy,
  decodeStepJoules,
  prefillJoules,
  decodeStepMs,
  deviceUsdPerHour,
  findModel,
  findPrecision,
  kvBytesPerToken,
  kvShards,
  makeEnergyProfile,
  makePerfProfile,
  maxBatchForKv,
  memoryPlan,
  passMs,
  pjPerFlop,
  prefillMs,
  servingPoint,
  usdPerMTok,
  userMonthCost,
  weightBytesRead,
} from "../../src/hardware/index.js";
import type { ModelSpec } from "../../src/hardware/index.js";
import { IDEAL, ROUND_HW, TINY } from "./fixtures.js";

const close = (a: number, b: number, rel = 1e-9): void => assert.ok(Math.abs(a - b) <= rel * Math.abs(b) + 1e-15, `${a} != ${b}`);
const BF16 = findPrecision("bf16");

test("KV bytes per token: GQA and latent attention", () => {
  // GQA: 2 (K, V) x 8 KV heads x 128 x 80 layers x 1 byte (FP8) = 163,840
  assert.equal(kvBytesPerToken(findModel("llama-3.1-70b"), "fp8"), 163_840);
  assert.equal(kvBytesPerToken(findModel("llama-3.1-70b"), "bf16"), 327_680);
  // MHA Llama-2-7B: 2 x 32 x 128 x 32 x 2 = 524,288 (0.5 MiB per token)
  assert.equal(kvBytesPerToken(findModel("llama-2-7b"), "bf16"), 524_288);
  // MLA DeepSeek-V3: (512 latent + 64 rope) x 61 layers x 2 bytes = 70,272
  assert.equal(kvBytesPerToken(findModel("deepseek-v3"), "bf16"), 70_272);
  // tensor parallelism splits KV heads, at most kvHeads ways; a latent is not split
  assert.equal(kvShards(findModel("llama-3.1-70b"), 4), 4);
  assert.equal(kvShards(findModel("qwen3-30b-a3b"), 8), 4);
  assert.equal(kvShards(findModel("deepseek-v3"), 8), 1);
});

test("KV capacity and max batch after weights", () => {
  // 16 GiB, 4% reserve, weights 32,456,704 x 2 B; KV gets 90% of the rest; 2,048 B per token
  const plan = memoryPlan(TINY, ROUND_HW, BF16, { tp: 1, kv: "bf16" });
  const weights = 32_456_704 * 2;
  assert.equal(plan.weightBytesPerDevice, weights);
  const budget = (16 * GIB * 0.96 - weights) * 0.9;
  close(plan.kvBudgetBytesPerDevice, budget);
  assert.equal(plan.kvCapacityTokens, Math.floor(budget / 2048));
  assert.equal(maxBatchForKv(10_000, 2000), 5);
  assert.equal(maxBatchForKv(1e9, 2000), ENGINE_SETTINGS.maxBatch);
  // Llama-3.1-70B FP8 does not leave room on one 80 GiB device at BF16
  assert.equal(memoryPlan(findModel("llama-3.1-70b"), { ...ROUND_HW, memoryGiB: 80 }, BF16, { tp: 1, kv: "bf16" }).fits, false);
});

test("decode step on the ideal roofline, by hand", () => {
  const p = makePerfProfile(TINY, ROUND_HW, BF16, { params: IDEAL });
  // weights 31,432,704 x 2 B = 62,865,408 B at 1 TB/s = 62.865408 us
  // KV: 1,000 cached tokens x 2,048 B = 2,048,000 B = 2.048 us (attention FLOPs 8,192 x 1,000 = 0.08 us)
  // activations: (6 x 1024 x 2 + (2,560 + 12,288) x 2) = 41,984 elements x 4 B = 167,936 B = 0.167936 us
  // linear FLOPs 62.9 MFLOP at 100 TFLOPS = 0.63 us < 62.9 us: memory-bound
  close(decodeStepMs(p, 1, 1000), (62_865_408 + 2_048_000 + 167_936) / 1e9);
  // batch 4 at 1,000 tokens each: weights once, KV and activations four times
  close(decodeStepMs(p, 4, 4000), (62_865_408 + 4 * 2_048_000 + 4 * 167_936) / 1e9);
  assert.equal(decodeStepMs(p, 0, 0), 0);
});

test("prefill on the ideal roofline, by hand", () => {
  const p = makePerfProfile(TINY, ROUND_HW, BF16, { params: IDEAL });
  // 1,000 tokens: linear 1,000 x 62,865,408 FLOP at 1e14/s = 0.62865408 ms (> 0.063 ms of weights)
  // attention 8,192 x 1,000 x 500 pairs = 4.096 GFLOP = 0.04096 ms (> 2.048 MB of KV written)
  // activations 1,000 x 167,936 B = 0.167936 ms
  close(prefillMs(p, 1000), 0.62865408 + 0.04096 + 0.167936);
  // 500 new tokens after 500 cached: attention pairs 500 x (500 + 250)
  close(prefillMs(p, 500, 500), 0.31432704 + (8192 * 500 * 750) / 1e11 + 0.083968);
  // a batch of 10 prompts packed together: 10x the linear and activation work, 10 causal triangles
  close(batchPrefillMs(p, 10, 100), (1000 * 62_865_408) / 1e11 + (8192 * 10 * 100 * 50) / 1e11 + 0.167936);
});

test("overheads, GEMM padding and tensor-parallel communication, by hand", () => {
  const params = { ...IDEAL, stepOverheadMs: 1, layerOverheadUs: 100, allReduceLatencyUs: 10, gemmPadTokens: 64 };
  const p1 = makePerfProfile(TINY, ROUND_HW, BF16, { params });
  // + 1 ms + 2 layers x 100 us
  close(decodeStepMs(p1, 1, 1000), (62_865_408 + 2_048_000 + 167_936) / 1e9 + 1.2);
  // compute-bound prefill pays min(1000, 64) rows of padding
  close(prefillMs(p1, 1000), (1064 * 62_865_408) / 1e11 + 0.04096 + 0.167936 + 1.2);

  const p2 = makePerfProfile(TINY, ROUND_HW, BF16, { params: { ...IDEAL, allReduceLatencyUs: 10 }, tp: 2 });
  // per token: 2 layers x 2 all-reduces x 1024 x 2 B x 2(tp-1)/tp = 8,192 B sent per device
  assert.equal(p2.commBytesPerToken, 8192);
  // link: 400 GB/s bidirectional -> 200 each way x 0.8 achieved = 160 GB/s
  close(p2.commMsPerToken, 8192 / 160e6);
  // latency: 4 all-reduces x (10 us + 1 us x 2 x log2(2)) = 48 us
  close(p2.commFixedMs, 0.048);
  // each device streams half the weights and half the KV heads; norms and residuals stay whole
  const act = (12_288 + 29_696 / 2) * 4;
  close(decodeStepMs(p2, 1, 1000), (62_865_408 / 2 + 2_048_000 / 2 + act) / 1e9 + 0.048 + 8192 / 160e6);
});

test("an engine's own overheads: per-sequence time, all-reduce steps and bandwidth, by hand", () => {
  const base = makePerfProfile(TINY, ROUND_HW, BF16, { params: IDEAL });
  const seq = makePerfProfile(TINY, ROUND_HW, BF16, { params: { ...IDEAL, sequenceOverheadUs: 50 } });
  // 50 us for each of the 4 sequences a decode step carries
  close(decodeStepMs(seq, 4, 4000) - decodeStepMs(base, 4, 4000), 0.2);
  // one prompt alone: one sequence in its one pass
  close(prefillMs(seq, 1000) - prefillMs(base, 1000), 0.05);
  // 10 prompts packed into one pass: 10 sequences
  close(batchPrefillMs(seq, 10, 100) - batchPrefillMs(base, 10, 100), 0.5);
  // a pass of 3 sequences (the simulator's mixed prefill/decode pass)
  close(passMs(seq, 300, 0, 0, 3) - passMs(base, 300, 0, 0, 3), 0.15);

  const slow = makePerfProfile(TINY, ROUND_HW, BF16, { params: { ...IDEAL, allReduceLatencyUs: 10, allReduceStepUs: 5, allReduceBandwidthEfficiency: 0.4 }, tp: 2 });
  // 4 all-reduces x (10 us + (1 us hop + 5 us step) x 2 x log2(2)) = 88 us
  close(slow.commFixedMs, 0.088);
  // 200 GB/s each way x 0.4 = 80 GB/s for the 8,192 B each token sends
  close(slow.commMsPerToken, 8192 / 80e6);
  // the step latency grows with log2(tp): 4 devices take twice the steps of 2
  const tp4 = makePerfProfile(TINY, ROUND_HW, BF16, { params: { ...IDEAL, allReduceStepUs: 5 }, tp: 4 });
  close(tp4.commFixedMs, (4 * (1 + 5) * 2 * 2) / 1000);
});

test("MoE streams the expected number of distinct experts", () => {
  const moe: ModelSpec = { ...TINY, id: "tiny-moe", ffn: 1024, moe: { experts: 8, activeExperts: 2, sharedExperts: 0, expertFfn: 1024, denseLayers: 0 } };
  const p = makePerfProfile(moe, ROUND_HW, BF16, { params: IDEAL });
  const expertBytes = 2 * 3 * 1024 * 1024 * 2; // 2 MoE layers x (gate, up, down of 1024 x 1024) x 2 B
  // 3 tokens, top-2 of 8: 8 x (1 - (6/8)^3) = 4.625 distinct experts expected
  close(weightBytesRead(p, 3), p.denseBytes + 4.625 * expertBytes);
  close(weightBytesRead(p, 1), p.denseBytes + 2 * expertBytes);
  assert.ok(weightBytesRead(p, 1000) < p.denseBytes + 8 * expertBytes + 1);
});

test("energy: data movement, arithmetic and static power, capped at TDP", () => {
  const p = makePerfProfile(TINY, ROUND_HW, BF16, { params: IDEAL });
  const e = makeEnergyProfile(p, ROUND_HW, BF16, IDEAL);
  // (3 pJ/bit DRAM + 4 on chip) x 8 = 56 pJ per byte; link 5 pJ/bit = 40 pJ per byte
  assert.equal(e.pjPerByteMemory, 56);
  assert.equal(e.pjPerByteLink, 40);
  // pJ/FLOP: 0.9 x (100 W - 20 W) / (100 TFLOPS x 1 x 1) = 0.72 pJ; FP8 at twice the rate: 0.36
  close(e.pjPerFlopGemm, 0.72);
  close(pjPerFlop(ROUND_HW, "fp8", IDEAL), 0.36);
  const step = decodeStepEnergy(p, e, 1, 1000);
  const bytes = 62_865_408 + 2_048_000 + 167_936;
  const dynamicJ = (bytes * 56 + 62_865_408 * 0.72 + 8192 * 1000 * 0.72) * 1e-12;
  const seconds = bytes / 1e12;
  close(step.joulesPerDevice, 20 * seconds + dynamicJ);
  close(step.powerW, 20 + dynamicJ / seconds);
  assert.equal(step.powerCapped, false);
  close(decodeStepJoules(p, e, 1, 1000), step.joulesPerDevice);
  // prefill of 1,000 tokens: 20 W over the pass, plus FLOPs and bytes (weights once, KV written, activations)
  const preS = prefillMs(p, 1000) / 1000;
  const preJ = 20 * preS + (62_865_408 * 1000 * 0.72 + 8192 * 1000 * 500 * 0.72 + (62_865_408 + 2_048_000 + 167_936_000) * 56) * 1e-12;
  close(prefillJoules(p, e, 1000), Math.min(100 * preS, preJ));
  // a device that could not move those bytes within its TDP is held at TDP
  const hot = makeEnergyProfile(p, { ...ROUND_HW, memoryPjPerBit: 100 }, BF16, IDEAL);
  const capped = decodeStepEnergy(p, hot, 1, 1000);
  assert.equal(capped.powerCapped, true);
  assert.equal(capped.powerW, 100);
});

test("cost: rent or amortised purchase plus energy", () => {
  // 35,040 USD over 4 years of 8,760 hours = 1 USD/h
  close(deviceUsdPerHour(ROUND_HW, { pricing: "purchase" }), 1);
  assert.equal(deviceUsdPerHour(ROUND_HW), 2);
  // 2 devices x 2 USD/h, 1,000 tok/s = 3.6 Mtok/h -> 1.111 USD/Mtok; 500 W x 0.10 USD/kWh = 0.05 USD/h
  const c = usdPerMTok(ROUND_HW, 2, 1000, 500, { usdPerKwh: 0.1 });
  close(c.deviceUsdPerMTok, 4 / 3.6);
  close(c.energyUsdPerMTok, 0.05 / 3.6);
  close(c.usdPerMTok, 4.05 / 3.6);
  // a user with 100 requests a day for 30 days on a replica serving 2 requests/s at 3.6 USD/h and 1 kW:
  // 3,000 requests x 0.5 s = 1,500 s -> 1.5 USD of device time and 1.5 MJ = 0.4167 kWh -> 0.0417 USD
  const u = userMonthCost({ requestsPerDay: 100 }, 500, 3.6, 1000, 2, 0.1);
  assert.equal(u.requestsPerMonth, 3000);
  close(u.joules, 1.5e6);
  close(u.usd, 1.5 + 0.1 / 2.4);
});

test("serving point: a cycle is one batch of prefills plus `output` decode steps", () => {
  const p = makePerfProfile(TINY, ROUND_HW, BF16, { params: FITTED_PARAMS });
  const sp = servingPoint(p, 8, 100, 50);
  const tpot = decodeStepMs(p, 8, 8 * (100 + 25));
  close(sp.tpotMs, tpot);
  close(sp.tokensPerS, (8 * 50 * 1000) / (batchPrefillMs(p, 8, 100) + 50 * tpot));
});
