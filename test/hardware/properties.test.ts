/** Properties of the performance model, over the catalog and random shapes (fast-check). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  allHardware,
  allModels,
  decodeStepMs,
  findPrecision,
  makePerfProfile,
  maxBatch,
  modelStats,
  prefillMs,
  servingPoint,
} from "../../src/hardware/index.js";
import type { HardwareSpec, ModelSpec, PerfProfile } from "../../src/hardware/index.js";

const MODELS = allModels();
const HARDWARE = allHardware();
const PRECISIONS = ["bf16", "fp8", "fp4", "q4_0", "q8_0"].map(findPrecision);

const config = fc.record({
  model: fc.constantFrom(...MODELS),
  hw: fc.constantFrom(...HARDWARE),
  precision: fc.constantFrom(...PRECISIONS),
  tp: fc.constantFrom(1, 2, 4, 8),
  expertParallel: fc.boolean(),
});

const RUNS = { numRuns: 150 };

test("more memory bandwidth never slows a decode step or a prefill", () => {
  fc.assert(
    fc.property(config, fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 32768 }), fc.double({ min: 1, max: 8, noNaN: true }), (c, batch, ctx, factor) => {
      const faster: HardwareSpec = { ...c.hw, memoryGBs: c.hw.memoryGBs * factor };
      const opts = { tp: c.tp, expertParallel: c.expertParallel };
      const a = makePerfProfile(c.model, c.hw, c.precision, opts);
      const b = makePerfProfile(c.model, faster, c.precision, opts);
      assert.ok(decodeStepMs(b, batch, batch * ctx) <= decodeStepMs(a, batch, batch * ctx) * (1 + 1e-12));
      assert.ok(prefillMs(b, ctx) <= prefillMs(a, ctx) * (1 + 1e-12));
    }),
    RUNS,
  );
});

test("more link bandwidth never slows a tensor-parallel step", () => {
  fc.assert(
    fc.property(config, fc.integer({ min: 1, max: 2048 }), fc.double({ min: 1, max: 8, noNaN: true }), (c, batch, factor) => {
      const faster: HardwareSpec = { ...c.hw, link: { ...c.hw.link, bidirGBs: c.hw.link.bidirGBs * factor } };
      const a = makePerfProfile(c.model, c.hw, c.precision, { tp: c.tp });
      const b = makePerfProfile(c.model, faster, c.precision, { tp: c.tp });
      assert.ok(decodeStepMs(b, batch, batch * 1000) <= decodeStepMs(a, batch, batch * 1000) * (1 + 1e-12));
    }),
    RUNS,
  );
});

const shape = fc.record({
  layers: fc.integer({ min: 1, max: 96 }),
  hiddenUnits: fc.integer({ min: 4, max: 128 }), // x 64
  heads: fc.constantFrom(8, 16, 32, 64),
  kvDiv: fc.constantFrom(1, 2, 4, 8),
  experts: fc.integer({ min: 2, max: 64 }),
  expertFfn: fc.integer({ min: 64, max: 16384 }),
  vocab: fc.integer({ min: 1000, max: 200000 }),
});

test("an MoE with every expert active equals the dense model of the same size", () => {
  const hw = HARDWARE[0] as HardwareSpec;
  fc.assert(
    fc.property(shape, fc.integer({ min: 1, max: 2048 }), fc.integer({ min: 1, max: 16384 }), fc.constantFrom(1, 2, 8), (s, batch, ctx, tp) => {
      const hidden = s.hiddenUnits * 64;
      const base = {
        id: "x",
        name: "x",
        layers: s.layers,
        hidden,
        heads: s.heads,
        kvHeads: s.heads / s.kvDiv,
        headDim: 128,
        vocab: s.vocab,
        tiedEmbeddings: false,
        gatedFfn: true,
        contextLength: 32768,
        source: "property",
      };
      const moe: ModelSpec = { ...base, ffn: s.expertFfn, moe: { experts: s.experts, activeExperts: s.experts, sharedExperts: 0, expertFfn: s.expertFfn, denseLayers: 0 } };
      const dense: ModelSpec = { ...base, ffn: s.experts * s.expertFfn };
      assert.equal(modelStats(moe).totalParams, modelStats(dense).totalParams);
      assert.equal(modelStats(moe).activeParams, modelStats(dense).activeParams);
      const bf16 = PRECISIONS[0]!;
      const pm = makePerfProfile(moe, hw, bf16, { tp });
      const pd = makePerfProfile(dense, hw, bf16, { tp });
      const near = (x: number, y: number): boolean => Math.abs(x - y) <= 1e-9 * Math.max(x, y);
      assert.ok(near(decodeStepMs(pm, batch, batch * ctx), decodeStepMs(pd, batch, batch * ctx)));
      assert.ok(near(prefillMs(pm, ctx), prefillMs(pd, ctx)));
      assert.equal(pm.kvCapacityTokens, pd.kvCapacityTokens);
    }),
    RUNS,
  );
});

function fits(p: PerfProfile, input: number, output: number): number {
  return p.fits ? maxBatch(p, input, output) : 0;
}

test("a larger batch never lowers throughput until the KV cache runs out", () => {
  fc.assert(
    fc.property(
      config,
      fc.integer({ min: 0, max: 20000 }),
      fc.integer({ min: 1, max: 4000 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (c, input, output, u, v) => {
        const p = makePerfProfile(c.model, c.hw, c.precision, { tp: c.tp, expertParallel: c.expertParallel });
        const top = fits(p, input, output);
        if (top < 2) return;
        const b1 = 1 + Math.floor(Math.min(u, v) * (top - 1));
        const b2 = 1 + Math.floor(Math.max(u, v) * (top - 1));
        const s1 = servingPoint(p, b1, input, output);
        const s2 = servingPoint(p, b2, input, output);
        assert.ok(s2.tokensPerS >= s1.tokensPerS * (1 - 1e-12), `${b1}: ${s1.tokensPerS} > ${b2}: ${s2.tokensPerS}`);
        assert.ok(s2.decodeTokensPerS >= s1.decodeTokensPerS * (1 - 1e-12));
      },
    ),
    RUNS,
  );
});

test("longer contexts and longer prompts never take less time", () => {
  fc.assert(
    fc.property(config, fc.integer({ min: 1, max: 512 }), fc.integer({ min: 1, max: 100000 }), fc.integer({ min: 0, max: 100000 }), (c, batch, a, b) => {
      const p = makePerfProfile(c.model, c.hw, c.precision, { tp: c.tp });
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      assert.ok(decodeStepMs(p, batch, lo) <= decodeStepMs(p, batch, hi));
      assert.ok(prefillMs(p, lo) <= prefillMs(p, hi));
      assert.ok(prefillMs(p, 100, lo) <= prefillMs(p, 100, hi));
    }),
    RUNS,
  );
});
