/**
 * A gateway told to stop (what SIGTERM does) with answers running and more
 * queued, while a replica crashes during the drain: every admitted request
 * is answered exactly, and new ones are refused.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expectedAnswer } from "./fake-upstream.js";
import { assertExact, chatPrompt, frontOver, killServingAfter, startFakes, stream, textPrompt } from "./harness.js";
import { eventually, gateQueued } from "../helpers.js";

describe("drain under chaos", () => {
  it("16 streams on 4 slots: shutdown with 4 running and 12 queued, a replica crashing mid-drain; all 16 exact, late ones refused", async () => {
    // Answers long enough (15 ms a chunk) that the first four still run when the last of the sixteen arrives, however slow the machine.
    const fakes = await startFakes(2, { tokenDelayMs: 15, tokensPerChunk: 2 });
    const front = await frontOver(fakes, { replica: { parallel: 2 } });
    try {
      const prompts = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? chatPrompt(4000 + i, 30) : textPrompt(4000 + i, 30)));
      const pending = prompts.map((p) => stream(front.url, p, 100));
      await eventually(() => front.fleet.inFlight() === 4, "four streams to run", 10_000);
      await eventually(async () => (await gateQueued(front.url, "m")) === 12, "twelve requests to queue at the gateway", 10_000);

      const stopped = front.shutdown(20_000);
      // Crashes whichever replica first streams its 10th piece of an answer: its running answers resume elsewhere.
      const crashed = killServingAfter(fakes, 10);
      const late = await stream(front.url, textPrompt(4100), 10).catch((e: unknown) => e as Error);
      // A refused connection is as good as a 503: either way no new work starts.
      if (!(late instanceof Error)) assert.equal(late.status, 503, late.raw);

      const results = await Promise.all(pending);
      results.forEach((r, i) => assertExact(r, expectedAnswer(prompts[i]!, 100), `request ${i}`));
      await crashed;
      assert.ok(results.some((r) => (r.servedBy?.continuations ?? 0) > 0), "an answer was resumed during the drain");
      await stopped;
    } finally {
      await front.close().catch(() => undefined);
      await Promise.all(fakes.map((f) => f.close()));
    }
  });
});
