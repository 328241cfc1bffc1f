/**
 * The physical limit (hardware/roofline.ts): passes at the datasheet's peak
 * bandwidth and FLOPS with no software time. Table cases worked by hand from
 * the catalog's figures, and the property the efficiency figures rest on: no
 * engine model, fitted or not, is faster than the limit.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { FITTED_PARAMS, decodeStepMs, findHardware, findModel, findPrecision, makePerfProfile, prefillMs, requestRooflineMs, rooflineProfile } from "../../src/hardware/index.js";

const h100 = findHardware("h100");
const bf16 = findPrecision("bf16");
const roof8b = rooflineProfile(findModel("llama-3.1-8b"), h100, bf16);

test("a batch-1 decode step at the limit streams the weights once at 3.35 TB/s", () => {
  // Llama-3.1-8B in BF16: ~15 GB of weights read per step (the input embedding is looked up, not streamed); H100 SXM: 3,350 GB/s peak (datasheet).
  const expected = roof8b.denseBytes / 3.35e9;
  const step = decodeStepMs(roof8b, 1, 100);
  assert.ok(step > expected && step < expected * 1.02, `${step} ms against ${expected} ms of weight reads`);
  assert.ok(step > 4.4 && step < 5, `${step} ms`);
});

test("a prompt at the limit is its FLOPs at the datasheet's 989 TFLOPS (BF16, dense)", () => {
  const w = { promptTokens: 1000, cachedTokens: 0, outputTokens: 0, batch: 1 };
  const linear = (1000 * roof8b.linearFlopsPerToken) / 989e9;
  const ms = requestRooflineMs(roof8b, w);
  assert.ok(ms >= linear && ms < linear * 1.1, `${ms} ms against ${linear} ms of GEMMs`);
  assert.equal(requestRooflineMs(roof8b, { ...w, cachedTokens: 1000 }), 0, "a prompt found whole in the prefix cache is no work");
  assert.ok(requestRooflineMs(roof8b, { ...w, cachedTokens: 600 }) < ms * 0.45, "only the uncached part is computed");
});

const cases: readonly { readonly name: string; readonly batch: number; readonly perTokenMs: [number, number] }[] = [
  // One sequence pays the whole weight read per token; 64 share it (KV of 64 x 1,100 tokens is ~9 GB more).
  { name: "alone", batch: 1, perTokenMs: [4.4, 4.7] },
  { name: "8 share each step", batch: 8, perTokenMs: [0.6, 0.7] },
  { name: "64 share each step", batch: 64, perTokenMs: [0.11, 0.14] },
];
for (const c of cases) {
  test(`decode per token at the limit, ${c.name}`, () => {
    const ms = requestRooflineMs(roof8b, { promptTokens: 1000, cachedTokens: 1000, outputTokens: 200, batch: c.batch }) / 200;
    assert.ok(ms >= c.perTokenMs[0] && ms <= c.perTokenMs[1], `${ms} ms per token at batch ${c.batch}`);
  });
}

test("no engine model is faster than the limit: fitted passes take longer at every batch, context and prompt", () => {
  for (const [model, hw, tp] of [["llama-3.1-8b", "h100", 1], ["llama-3.1-70b", "h200", 4], ["mixtral-8x7b", "b200", 2]] as const) {
    const m = findModel(model);
    const h = findHardware(hw);
    const roof = rooflineProfile(m, h, bf16, { tp });
    const fitted = makePerfProfile(m, h, bf16, { tp, params: FITTED_PARAMS });
    for (const batch of [1, 4, 32, 256]) {
      for (const ctx of [128, 4096]) assert.ok(decodeStepMs(roof, batch, batch * ctx) < decodeStepMs(fitted, batch, batch * ctx), `${model} ${hw} tp${tp} batch ${batch} ctx ${ctx}`);
    }
    for (const tokens of [16, 2048, 20000]) assert.ok(prefillMs(roof, tokens) < prefillMs(fitted, tokens), `${model} prefill ${tokens}`);
  }
});
