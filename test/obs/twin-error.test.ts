/**
 * flotilla_twin_error_ratio: the hardware model's predicted / measured TTFT
 * and TPOT per replica. An engine whose timings are the model's shows about
 * 1; one that slows down pulls it below; a replica without hardware has no
 * series.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { servedTpotMs, servedTtftMs } from "../../src/hardware/index.js";
import { rateBookFromConfig } from "../../src/metering/config.js";
import { pacedUpstream, type PacedUpstream } from "../metering/paced-upstream.js";
import { post, startObserved, type ObservedGateway } from "./harness.js";

const PROMPT_TOKENS = 100;
const OUTPUT_TOKENS = 8;

/** The series of the twin error metric, by replica and metric. */
async function twinErrors(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^flotilla_twin_error_ratio\{replica="([^"]+)",metric="([^"]+)"\} (\S+)$/.exec(line);
    if (m !== null) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return out;
}

describe("flotilla_twin_error_ratio", () => {
  let engine: PacedUpstream;
  let plain: PacedUpstream;
  let gw: ObservedGateway;
  let predicted: { ttftMs: number; tpotMs: number };

  before(async () => {
    engine = await pacedUpstream({ firstMs: 0, everyMs: 0, tokens: OUTPUT_TOKENS, promptTokens: PROMPT_TOKENS });
    plain = await pacedUpstream({ firstMs: 1, everyMs: 1, tokens: OUTPUT_TOKENS, promptTokens: PROMPT_TOKENS });
    // An 8B model in BF16 on an M2 Ultra: about 140 ms to the first token of 100, 23 ms a token after.
    const config = {
      models: [
        { name: "m", replicas: [{ engine: "openai", url: engine.url, hardware: "m2-ultra", spec: "llama-3.1-8b", precision: "bf16", context: 4096 }] },
        { name: "plain", replicas: [{ engine: "openai", url: plain.url, context: 4096 }] },
      ],
    };
    const rates = await rateBookFromConfig(parseFleetConfig(config), process.cwd());
    const p = rates.replica("m/0")!.perf!;
    predicted = {
      ttftMs: servedTtftMs(p, { promptTokens: PROMPT_TOKENS, cachedTokens: 0, batch: 1 }),
      tpotMs: servedTpotMs(p, { promptTokens: PROMPT_TOKENS, outputTokens: OUTPUT_TOKENS, batch: 1 }),
    };
    Object.assign(engine.pace, { firstMs: Math.round(predicted.ttftMs), everyMs: Math.round(predicted.tpotMs) });
    gw = await startObserved(config, { hedge: false, observability: { perfProfile: (id) => rates.replica(id)?.perf } });
  });

  after(async () => {
    await gw?.close();
    engine?.close();
    plain?.close();
  });

  const serve = async (model: string, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const r = await post(gw.url, "/v1/completions", { model, prompt: "hello ".repeat(PROMPT_TOKENS), max_tokens: OUTPUT_TOKENS });
      assert.equal(r.status, 200, r.text);
    }
  };

  test("is about 1 while the engine runs at the model's pace, falls when it slows down, and exists only for replicas with hardware", async () => {
    assert.ok(predicted.ttftMs > 50 && predicted.tpotMs > 10, `predictions ${JSON.stringify(predicted)} are long enough to time`);
    await serve("m", 5);
    await serve("plain", 2);
    const matched = await twinErrors(gw.url);
    assert.deepEqual([...matched.keys()].sort(), ["m/0 tpot", "m/0 ttft"], "one series per metric, for the replica with hardware only");
    // Measured times carry the gateway's and the HTTP hop's own few milliseconds: a little under 1.
    // TPOT can come out a little over: it is the span from the first token to the last, and a first
    // token read ~10 ms late on a loaded machine shortens 7 gaps of ~23 ms by 6% (a clean-clone run: 1.057).
    for (const [metric, most] of [["ttft", 1.05], ["tpot", 1.15]] as const) {
      const v = matched.get(`m/0 ${metric}`)!;
      assert.ok(v > 0.75 && v <= most, `${metric} ratio ${v} at the model's pace`);
    }
    // The engine becomes twice as slow: the median moves to its newer requests.
    Object.assign(engine.pace, { firstMs: Math.round(2 * predicted.ttftMs), everyMs: Math.round(2 * predicted.tpotMs) });
    await serve("m", 7);
    const slowed = await twinErrors(gw.url);
    for (const metric of ["ttft", "tpot"]) {
      const v = slowed.get(`m/0 ${metric}`)!;
      assert.ok(v > 0.35 && v < 0.55, `${metric} ratio ${v} with an engine twice as slow`);
      // Relative to what it was: the gateway's own milliseconds, more on a loaded machine, pull both ratios down alike.
      assert.ok(v < 0.75 * matched.get(`m/0 ${metric}`)!, `${metric} moved away from 1: ${v} after ${matched.get(`m/0 ${metric}`)}`);
    }
  });
});
