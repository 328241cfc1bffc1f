import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deviceUsdPerHour, findHardware, findModel, findPrecision, makeEnergyProfile, makePerfProfile, prefillMs } from "../../src/hardware/index.js";
import { predictTtftMs, routeConstants } from "../../src/scheduler/index.js";

const consts = (hw: string, model = "llama-3.1-8b") => {
  const h = findHardware(hw);
  const prec = findPrecision("bf16");
  const p = makePerfProfile(findModel(model), h, prec);
  return { p, c: routeConstants(p, makeEnergyProfile(p, h, prec), { usdPerHour: deviceUsdPerHour(h) }) };
};

describe("routeConstants", () => {
  it("derives positive, finite per-replica constants from the hardware model", () => {
    const { p, c } = consts("h100");
    for (const v of Object.values(c)) assert.ok(Number.isFinite(v) && v > 0, JSON.stringify(c));
    assert.equal(c.kvCapacityTokens, p.kvCapacityTokens);
    assert.equal(c.prefillMsPerToken, prefillMs(p, 2048) / 2048);
  });
  it("ranks hardware sensibly: a faster device prefills faster", () => {
    const a = consts("h100").c;
    const b = consts("a100-80gb").c;
    assert.ok(a.prefillMsPerToken < b.prefillMsPerToken, `${a.prefillMsPerToken} vs ${b.prefillMsPerToken}`);
  });
  it("feeds the TTFT prediction", () => {
    const { c } = consts("h100");
    const t = predictTtftMs({ index: 0, ready: true, active: 0, queued: 0, slots: 1, maxQueue: 1, contextSize: undefined, prefillMsPerToken: c.prefillMsPerToken }, { promptTokens: 2048, maxTokens: 1 });
    assert.ok(Math.abs(t! - c.prefillMsPerToken * 2048) < 1e-9);
  });
});
