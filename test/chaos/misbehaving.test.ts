/**
 * All replicas but one misbehave, each in one of the fake's bad modes:
 * every request is still answered exactly, within the bad replicas' timeouts.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { expectedAnswer, startFakeUpstream, type FakeMode, type FakeUpstream, type RequestInfo } from "./fake-upstream.js";
import { assertExact, chatPrompt, frontOver, stream, textPrompt, type Front, type StreamResult } from "./harness.js";

const BAD: readonly FakeMode[] = ["hang-after-headers", "hang-before-headers", "http-500", "malformed-sse", "slow-first-token", "die-mid-stream"];

/** The issue's setting, scaled down for a test: timeouts of 1 s instead of 6, a slow first token of 600 ms against a 200 ms bound. */
const SERVER = { eject_after_failures: 3, eject_cooldown_ms: 5_000, eject_slow_first_token_ms: 200 };
const REPLICA = { timeout_ms: 1_000, parallel: 8 };

async function fakeIn(mode: FakeMode): Promise<FakeUpstream> {
  return startFakeUpstream({ mode, tokenDelayMs: 1, tokensPerChunk: 2, firstTokenMs: 600, afterPieces: 3 });
}

/** `n` requests, `concurrency` at a time, alternating chat and completions; each checked exactly, a failure reported with its trace. */
async function load(front: Front, fakes: readonly FakeUpstream[], n: number, concurrency: number, seed: number): Promise<{ results: StreamResult[]; failures: string[] }> {
  const results: StreamResult[] = [];
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const prompt = i % 2 === 0 ? chatPrompt(seed + i) : textPrompt(seed + i);
        const requestId = `chaos-${seed}-${i}`;
        const tried: RequestInfo[] = [];
        const onEnd = (info: RequestInfo): void => void (info.requestId === requestId && tried.push(info));
        for (const f of fakes) f.events.on("end", onEnd);
        const r = await stream(front.url, prompt, 40, { requestId });
        results.push(r);
        try {
          assertExact(r, expectedAnswer(prompt, 40), `request ${i}`);
        } catch (err) {
          const path = tried.map((t) => `${t.mode} (${t.outcome}, ${t.sent} pieces${t.written > 0 ? ` after ${t.written}` : ""})`).join(" -> ");
          failures.push(`${(err as Error).message.split("\n")[0]} after ${r.ms.toFixed(0)} ms; upstream attempts: ${path}`);
        } finally {
          for (const f of fakes) f.events.off("end", onEnd);
        }
      }
    }),
  );
  return { results, failures };
}

const quantile = (xs: readonly number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? NaN;

describe("all replicas but one misbehaving", () => {
  const fakes: FakeUpstream[] = [];
  const fronts: Front[] = [];
  after(async () => {
    await Promise.all(fronts.map((f) => f.close()));
    await Promise.all(fakes.map((f) => f.close()));
  });

  it("one bad replica (each mode, side by side) and one good: 16 requests each, every one exact", async () => {
    const outcomes = await Promise.all(
      BAD.map(async (mode, m) => {
        const pair = [await fakeIn(mode), await fakeIn("good")];
        fakes.push(...pair);
        const front = await frontOver(pair, { server: SERVER, replica: REPLICA });
        fronts.push(front);
        const { results, failures } = await load(front, pair, 16, 4, 5000 + 100 * m);
        return { mode, failures, p99: quantile(results.map((r) => r.ms), 0.99), badHits: pair[0]!.stats.requests };
      }),
    );
    for (const o of outcomes) {
      assert.deepEqual(o.failures, [], `${o.mode}: every request answered exactly`);
      assert.ok(o.badHits >= 1, `${o.mode}: the bad replica was tried`);
      // What this guards: a request on a hanging replica is bounded by the replica's 1 s timeouts, not left to the
      // request's own deadline (600 s). On 2 cores beside the rest of the suite hang-after-headers' p99 reached 3.4 s,
      // and 6.4 s with a second suite running, so the bound is ten timeouts. How fast it is belongs to bench/chaos.ts.
      assert.ok(o.p99 < 10_000, `${o.mode}: p99 ${o.p99.toFixed(0)} ms, within ten of the bad replica's timeouts`);
    }
  });

  it(
    "five bad replicas, one in each failing mode, and one good: 30 requests, every one exact",
    async (t) => {
      const six = [...(await Promise.all(BAD.filter((m) => m !== "slow-first-token").map(fakeIn))), await fakeIn("good")];
      fakes.push(...six);
      const front = await frontOver(six, { server: SERVER, replica: REPLICA });
      fronts.push(front);
      const { results, failures } = await load(front, six, 30, 6, 6000);
      const ms = results.map((r) => r.ms);
      t.diagnostic(`failed ${failures.length}/30; p50 ${quantile(ms, 0.5).toFixed(0)} ms, p99 ${quantile(ms, 0.99).toFixed(0)} ms`);
      for (const f of failures.slice(0, 5)) t.diagnostic(f);
      assert.deepEqual(failures, []);
    },
  );
});
