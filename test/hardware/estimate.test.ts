import { test } from "node:test";
import assert from "node:assert/strict";
import {
  UnknownNameError,
  decodeStepMs,
  estimate,
  findHardware,
  findModel,
  findPrecision,
  makePerfProfile,
  prefillMs,
  profileFor,
  smallestFittingTp,
} from "../../src/hardware/index.js";

test("estimate ties its figures together", () => {
  const e = estimate({ model: "llama-3.1-70b", hardware: "h100", tp: 2, precision: "fp8", inputTokens: 1000, outputTokens: 1000, batch: 64 });
  assert.equal(e.model, "llama-3.1-70b");
  assert.equal(e.kvPrecision, "fp8");
  assert.equal(e.kvBytesPerToken, 163_840);
  assert.ok(e.fits);
  assert.ok(Math.abs(e.tokensPerSPerDevice * 2 - e.tokensPerS) < 1e-9);
  assert.ok(e.tokensPerS < e.decodeTokensPerS); // prefill takes its share
  assert.ok(Math.abs(e.decodeTokensPerS - (64 * 1000) / e.tpotMs) < 1e-6);
  assert.ok(e.batchTtftMs > e.ttftMs);
  assert.ok(Math.abs(e.tokensPerJoule * e.joulesPerToken - 1) < 1e-12);
  assert.ok(e.powerWPerDevice > findHardware("h100").staticW && e.powerWPerDevice <= 700);
  assert.ok(Math.abs(e.usdPerMTok - e.deviceUsdPerMTok - e.energyUsdPerMTok) < 1e-12);
  // rent 2 x 2.50 USD/h over tokens per hour
  assert.ok(Math.abs(e.deviceUsdPerMTok - (5 * 1e6) / (e.tokensPerS * 3600)) < 1e-9);
  // the estimate uses the same fast path the simulator does
  const p = profileFor({ model: "llama-3.1-70b", hardware: "h100", tp: 2, precision: "fp8" });
  assert.equal(e.ttftMs, prefillMs(p, 1000));
  assert.equal(e.tpotMs, decodeStepMs(p, 64, 64 * 1500));
});

test("estimate picks the batch from KV capacity when none is given", () => {
  const e = estimate({ model: "llama-3.1-70b", hardware: "h200", precision: "fp8" });
  assert.equal(e.batch, e.kvMaxBatch);
  assert.ok(e.batch > 100);
  const over = estimate({ model: "llama-3.1-70b", hardware: "h200", precision: "fp8", batch: e.kvMaxBatch + 1 });
  assert.equal(over.fits, false);
});

test("unknown names raise an error that lists the known ones", () => {
  assert.throws(() => estimate({ model: "nope", hardware: "h100" }), (e: unknown) => e instanceof UnknownNameError && e.known.includes("llama-3.1-8b"));
  assert.throws(() => estimate({ model: "llama-3.1-8b", hardware: "h1000" }), (e: unknown) => e instanceof UnknownNameError && e.known.includes("lpddr-chip"));
  assert.throws(() => estimate({ model: "llama-3.1-8b", hardware: "h100", tp: 0 }), RangeError);
});

test("cost per user-month follows the usage profile", () => {
  const base = { model: "llama-3.1-8b", hardware: "h100", precision: "fp8", inputTokens: 500, outputTokens: 200, batch: 32 } as const;
  const a = estimate({ ...base, usage: { requestsPerDay: 10 } });
  const b = estimate({ ...base, usage: { requestsPerDay: 20 } });
  assert.ok(a.userMonth !== undefined && b.userMonth !== undefined);
  assert.equal(a.userMonth.requestsPerMonth, 300);
  assert.ok(Math.abs(b.userMonth.usd - 2 * a.userMonth.usd) < 1e-12);
  // the same tokens at the same rate cost the same whether counted per Mtok or per month
  const perMtok = (a.userMonth.usd / a.userMonth.outputTokensPerMonth) * 1e6;
  assert.ok(Math.abs(perMtok - a.usdPerMTok) / a.usdPerMTok < 1e-9);
});

test("smallest tensor-parallel degree that fits", () => {
  assert.equal(smallestFittingTp({ model: "llama-3.1-8b", hardware: "h100" }), 1);
  assert.equal(smallestFittingTp({ model: "llama-3.1-70b", hardware: "h100", precision: "bf16" }), 2);
  assert.equal(smallestFittingTp({ model: "llama-3.1-405b", hardware: "h100", precision: "bf16" }), undefined);
  assert.equal(smallestFittingTp({ model: "llama-3.1-405b", hardware: "h200", precision: "fp8" }), 4);
});

test("the hot path is cheap enough for the simulator", () => {
  const p = makePerfProfile(findModel("mixtral-8x7b"), findHardware("h100"), findPrecision("fp8"), { tp: 2 });
  let acc = 0;
  const n = 1_000_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) acc += decodeStepMs(p, 1 + (i & 255), 1000 * (1 + (i & 255))) + prefillMs(p, 1 + (i & 4095));
  const perCallNs = ((performance.now() - t0) * 1e6) / (2 * n);
  assert.ok(acc > 0);
  assert.ok(perCallNs < 1000, `${perCallNs.toFixed(0)} ns per call`);
});
