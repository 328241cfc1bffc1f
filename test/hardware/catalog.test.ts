import { test } from "node:test";
import assert from "node:assert/strict";
import {
  UnknownNameError,
  allHardware,
  findHardware,
  findModel,
  findPrecision,
  knownHardware,
  lpddrChipProfile,
  matrixRate,
  modelSpecFromGguf,
  modelStats,
  precisionFromGgufFileType,
} from "../../src/hardware/index.js";
import { TINY } from "./fixtures.js";

const close = (a: number, b: number, rel = 1e-9): void => assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${a} != ${b}`);

test("precision bytes per weight follow the block layouts", () => {
  assert.equal(findPrecision("bf16").bytesPerWeight, 2);
  assert.equal(findPrecision("fp8").bytesPerWeight, 1);
  close(findPrecision("fp4").bytesPerWeight, 0.5625); // 4 bits + one 8-bit scale per 16 = 4.5 bits
  close(findPrecision("q8_0").bytesPerWeight, 34 / 32); // 32 int8 + fp16 scale
  close(findPrecision("q4_0").bytesPerWeight, 18 / 32); // 16 bytes of nibbles + fp16 scale
  close(findPrecision("q4_k").bytesPerWeight, 144 / 256);
  close(findPrecision("q6_k").bytesPerWeight, 210 / 256);
});

test("precision names: fp16 is bf16, GGUF spellings, errors list the known ones", () => {
  assert.equal(findPrecision("fp16").id, "bf16");
  assert.equal(findPrecision("FP16").id, "bf16");
  assert.equal(findPrecision("Q4_K_M").id, "q4_k_m");
  assert.equal(findPrecision("q4-k-m").id, "q4_k_m");
  assert.throws(
    () => findPrecision("int3"),
    (e: unknown) => e instanceof UnknownNameError && e.kind === "precision" && e.known.includes("fp8") && /fp8/.test(e.message),
  );
  assert.equal(precisionFromGgufFileType(15)?.id, "q4_k_m");
  assert.equal(precisionFromGgufFileType(1)?.id, "f16");
  assert.equal(precisionFromGgufFileType(999), undefined);
});

test("hardware catalog holds the issue's devices, each with a source and assumptions declared", () => {
  for (const id of ["h100", "h200", "b200", "a100", "mi300x", "tpu-v5e", "tpu-v5p", "tpu-v6e", "ironwood", "lpddr-chip", "cpu-epyc-9175f"]) {
    assert.ok(knownHardware().includes(id), id);
  }
  for (const h of allHardware()) {
    assert.ok(h.source.length > 0, h.id);
    assert.ok(h.peakTflops.bf16 > 0 && h.memoryGBs > 0 && h.memoryGiB > 0 && h.tdpW > h.staticW && h.staticW > 0, h.id);
    assert.ok(h.price.rentUsdPerHour > 0, h.id);
  }
  const h100 = findHardware("H100");
  assert.equal(h100.peakTflops.fp8, 1979);
  assert.equal(h100.memoryGBs, 3350);
  assert.equal(findHardware("tpu-v5e").price.purchaseUsd, undefined); // not sold
  assert.ok(findHardware("lpddr-chip").assumed.includes("memoryGBs"));
  assert.throws(() => findHardware("h900"), (e: unknown) => e instanceof UnknownNameError && e.known.includes("h200"));
});

test("the LPDDR chip is a parameterised profile", () => {
  const chip = lpddrChipProfile({ id: "lp2", bandwidthGBs: 500, capacityGiB: 64, tdpW: 50, purchaseUsd: 1000 });
  assert.equal(chip.memoryGBs, 500);
  assert.equal(chip.memoryGiB, 64);
  assert.equal(chip.tdpW, 50);
  assert.equal(chip.price.purchaseUsd, 1000);
  assert.equal(chip.memoryType, "LPDDR5X");
});

test("matrix rate falls back to the next unit the device has", () => {
  const a100 = findHardware("a100");
  assert.equal(matrixRate(a100, "fp8").format, "int8"); // W8A8 integer path
  assert.equal(matrixRate(a100, "bf16").tflops, 312);
  const h100 = findHardware("h100");
  assert.equal(matrixRate(h100, "fp4").format, "fp8");
  const b200 = findHardware("b200");
  const fp4 = matrixRate(b200, "fp4", 0.5);
  assert.equal(fp4.tflops, 9000);
  close(fp4.efficiency, 0.763 * 0.5); // unmeasured FP4: FP8's MAMF times the fitted factor
});

test("parameter counts of the fixture, by hand", () => {
  const s = modelStats(TINY);
  assert.equal(s.totalParams, 32_456_704);
  assert.equal(s.denseReadParams, 31_432_704);
  assert.equal(s.linearFlopsPerToken, 2 * 31_432_704);
  assert.equal(s.kvElementsPerToken, 2 * 2 * 128 * 2); // K and V, 2 KV heads of 128, 2 layers
  assert.equal(s.attnFlopsPerPairDecode, 4 * 8 * 128 * 2); // QK and AV, 8 heads of 128, 2 layers
});

test("catalog models match their published sizes", () => {
  const b = (id: string): { total: number; active: number } => {
    const s = modelStats(findModel(id));
    return { total: s.totalParams / 1e9, active: s.activeParams / 1e9 };
  };
  // Llama-2-70B: 80 x (150,994,944 attention + 704,643,072 FFN) + 2 x 262,144,000 tables
  // = 68,975,329,280: the published 68,976,648,192 less its 1,318,912 norm weights
  assert.equal(modelStats(findModel("llama-2-70b")).totalParams, 68_975_329_280);
  // Llama-3.1-8B: 32 x (41,943,040 + 176,160,768) + 2 x 525,336,576 = 8,029,995,008 (published 8,030,261,248 with norms)
  assert.equal(modelStats(findModel("llama-3.1-8b")).totalParams, 8_029_995_008);
  // Llama-3.1-70B: 80 x 855,638,016 + 2 x 1,050,673,152 = 70,552,387,584 (published 70,553,706,496 with norms)
  assert.equal(modelStats(findModel("llama-3.1-70b")).totalParams, 70_552_387_584);
  assert.ok(Math.abs(b("llama-3.1-405b").total - 405.8) < 0.5);
  assert.ok(Math.abs(b("qwen3-32b").total - 32.8) < 0.1);
  // MoE: Mixtral 46.7B total / 12.9B active; Qwen3-30B-A3B 30.5 / 3.3; DeepSeek-V3 671 / 37
  assert.ok(Math.abs(b("mixtral-8x7b").total - 46.7) < 0.1 && Math.abs(b("mixtral-8x7b").active - 12.9) < 0.1);
  assert.ok(Math.abs(b("qwen3-30b-a3b").total - 30.5) < 0.1 && Math.abs(b("qwen3-30b-a3b").active - 3.3) < 0.1);
  assert.ok(Math.abs(b("deepseek-v3").total - 671) < 1 && Math.abs(b("deepseek-v3").active - 37.4) < 0.5);
  assert.equal(findModel("Llama-3.3-70B-Instruct").id, "llama-3.1-70b");
  assert.throws(() => findModel("gpt-9"), (e: unknown) => e instanceof UnknownNameError && e.kind === "model" && e.known.includes("deepseek-v3"));
});

test("a name not known exactly is never taken for a nearby one: the near ones are suggested", () => {
  const cases: [string, () => unknown, RegExp][] = [
    // Llama 3 70B has an 8K window, 3.1 a 128K one: not the same model for the hardware model.
    ["llama-3-70b", () => findModel("llama-3-70b"), /unknown model "llama-3-70b" \(did you mean llama-3\.1-70b, llama-2-70b or llama-2-7b\?\); known: /],
    ["mixtral", () => findModel("mixtral"), /unknown model "mixtral" \(did you mean mixtral-8x7b or mixtral-8x22b\?\)/],
    ["h1000", () => findHardware("h1000"), /unknown hardware "h1000" \(did you mean h100, a100 or h200\?\)/],
    ["gpt-9", () => findModel("gpt-9"), /unknown model "gpt-9"; known: /],
  ];
  for (const [name, find, message] of cases) assert.throws(find, message, name);
  // Other spellings of one model, and releases of the same architecture, still resolve.
  assert.equal(findModel("llama2-70b").id, "llama-2-70b");
  assert.equal(findModel("DeepSeek-R1").id, "deepseek-v3");
  assert.equal(findHardware("H100-SXM").id, "h100");
});

test("modelSpecFromGguf reads flat dotted keys", () => {
  const spec = modelSpecFromGguf({
    "general.architecture": "llama",
    "general.name": "Meta Llama 3.1 8B Instruct",
    "llama.block_count": 32,
    "llama.embedding_length": 4096,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.feed_forward_length": 14336,
    "llama.context_length": 131072,
    "llama.vocab_size": 128256,
  });
  const ref = findModel("llama-3.1-8b");
  assert.equal(spec.id, "meta-llama-3.1-8b-instruct");
  assert.equal(modelStats(spec).totalParams, modelStats(ref).totalParams);
  assert.equal(spec.headDim, 128);
  assert.equal(spec.moe, undefined);
});

test("modelSpecFromGguf reads nested MoE and MLA metadata", () => {
  const mixtral = modelSpecFromGguf({
    general: { architecture: "llama", name: "Mixtral" },
    llama: {
      block_count: 32,
      embedding_length: 4096,
      feed_forward_length: 14336,
      context_length: 32768,
      expert_count: 8,
      expert_used_count: 2,
      attention: { head_count: 32, head_count_kv: 8 },
    },
    tokenizer: { ggml: { tokens: new Array<string>(32000).fill("x") } },
  });
  assert.deepEqual(mixtral.moe, { experts: 8, activeExperts: 2, sharedExperts: 0, expertFfn: 14336, denseLayers: 0 });
  assert.equal(modelStats(mixtral).totalParams, modelStats(findModel("mixtral-8x7b")).totalParams);

  const ds = modelSpecFromGguf({
    "general.architecture": "deepseek2",
    "deepseek2.block_count": 61,
    "deepseek2.embedding_length": 7168,
    "deepseek2.feed_forward_length": 18432,
    "deepseek2.expert_feed_forward_length": 2048,
    "deepseek2.expert_count": 256,
    "deepseek2.expert_used_count": 8,
    "deepseek2.expert_shared_count": 1,
    "deepseek2.leading_dense_block_count": 3,
    "deepseek2.attention.head_count": 128,
    "deepseek2.attention.head_count_kv": 128,
    "deepseek2.attention.key_length": 192,
    "deepseek2.attention.value_length": 128,
    "deepseek2.attention.q_lora_rank": 1536,
    "deepseek2.attention.kv_lora_rank": 512,
    "deepseek2.rope.dimension_count": 64,
    "deepseek2.context_length": 163840,
    "deepseek2.vocab_size": 129280,
  });
  assert.deepEqual(ds.mla, { qLoraRank: 1536, kvLoraRank: 512, ropeHeadDim: 64, nopeHeadDim: 128, vHeadDim: 128 });
  assert.equal(modelStats(ds).totalParams, modelStats(findModel("deepseek-v3")).totalParams);
  assert.equal(modelStats(ds).kvElementsPerToken, 61 * 576);
});

test("modelSpecFromGguf rejects metadata without the required keys", () => {
  assert.throws(() => modelSpecFromGguf({}), /general\.architecture/);
  assert.throws(() => modelSpecFromGguf({ "general.architecture": "llama" }), /llama\.block_count/);
});
