/**
 * served.ts predicts a served request as the simulator runs it: a request
 * alone on a replica takes, in the twin, exactly the TTFT and TPOT the
 * functions give; a prompt joining a busy replica waits for the pass under
 * way; the prefill overhead is paid by passes that evaluate prompt tokens
 * and by no decode step.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { FITTED_PARAMS, decodeStepMs, passMs, prefillMs, servedTpotMs, servedTtftMs } from "../../src/hardware/index.js";
import { resolveSimFleet } from "../../src/sim/fleet-file.js";
import { requestLatencies } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import type { Trace } from "../../src/sim/traces.js";

const ENGINE = { params: { ...FITTED_PARAMS, prefillOverheadMs: 2, sequenceOverheadUs: 100 }, overheadScale: {} };
const fleet = resolveSimFleet({ islands: [{ hardware: "h100", model: "llama-3.1-8b", precision: "bf16", tp: 1, count: 1, host_kv_gb: 0, profile: "p" }] }, "t", { loadProfile: () => ENGINE });
const p = fleet.islands[0]!.profile;

function lone(promptTokens: number, outputTokens: number): Trace {
  return { name: "lone", count: 1, arrivalMs: Float64Array.of(0), inputTokens: Int32Array.of(promptTokens), outputTokens: Int32Array.of(outputTokens), blockOffsets: new Int32Array(2), blockIds: new Int32Array(0), blockTokens: 0 };
}

test("a request alone on a replica: the twin's TTFT and TPOT are served.ts's", () => {
  for (const [promptTokens, outputTokens] of [[100, 50], [3000, 200]] as const) {
    const { ttft, tpot } = requestLatencies(simulate({ fleet, trace: lone(promptTokens, outputTokens) }));
    const r = { promptTokens, cachedTokens: 0, outputTokens, batch: 1 };
    assert.ok(Math.abs(ttft[0]! / servedTtftMs(p, r) - 1) < 1e-9, `TTFT ${ttft[0]} vs ${servedTtftMs(p, r)}`);
    // The twin's decode steps read the context as it grows; served.ts takes the mean context.
    assert.ok(Math.abs(tpot[0]! / servedTpotMs(p, r) - 1) < 0.01, `TPOT ${tpot[0]} vs ${servedTpotMs(p, r)}`);
  }
});

test("a prompt joining a busy replica waits for half a pass and shares its passes; others' prompts lengthen a decoder's tokens", () => {
  const alone = servedTtftMs(p, { promptTokens: 500, cachedTokens: 0, batch: 1 });
  const joining = servedTtftMs(p, { promptTokens: 500, cachedTokens: 0, batch: 8 });
  assert.ok(joining > alone + decodeStepMs(p, 7, 7 * 500) / 2 - 1e-9, `${joining} vs ${alone}`);
  assert.ok(servedTtftMs(p, { promptTokens: 500, cachedTokens: 400, batch: 1 }) < alone, "a cached prefix is not prefilled again");
  const decoding = decodeStepMs(p, 8, 8 * (500 + 50));
  assert.ok(servedTpotMs(p, { promptTokens: 500, outputTokens: 100, batch: 8 }) > decoding, "prompts that join add to the passes they ride in");
});

test("the prefill overhead is paid by passes with prompt tokens, not by decode steps", () => {
  const none = resolveSimFleet({ islands: [{ hardware: "h100", model: "llama-3.1-8b", precision: "bf16", tp: 1, count: 1, profile: "p" }] }, "t", {
    loadProfile: () => ({ ...ENGINE, params: { ...ENGINE.params, prefillOverheadMs: 0 } }),
  }).islands[0]!.profile;
  assert.ok(Math.abs(prefillMs(p, 300) - prefillMs(none, 300) - 2) < 1e-9);
  assert.ok(Math.abs(passMs(p, 4 + 300, 0, 0, 5) - passMs(none, 4 + 300, 0, 0, 5) - 2) < 1e-9, "a pass with a prompt chunk");
  assert.equal(passMs(p, 4, 0, 0, 4), passMs(none, 4, 0, 0, 4), "a pass of decode tokens only");
  assert.equal(decodeStepMs(p, 4, 4000), decodeStepMs(none, 4, 4000));
});
