/**
 * Clients that leave at random points — while queued, before the first
 * token, mid-answer — leak nothing: afterwards no slot is held, no request
 * waits, every upstream request was cancelled, and new requests are served
 * exactly on every slot.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { expectedAnswer, seededRandom, type FakeUpstream } from "./fake-upstream.js";
import { adminLoad, assertExact, chatPrompt, frontOver, startFakes, stream, textPrompt, type Front } from "./harness.js";
import { eventually, gateQueued, totalActive } from "../helpers.js";

describe("clients disconnecting at random points", () => {
  let fakes: FakeUpstream[];
  let front: Front;
  before(async () => {
    fakes = await startFakes(2, { tokenDelayMs: 2 });
    // Four slots in all, so a burst of twelve queues at the gateway too.
    front = await frontOver(fakes, { replica: { parallel: 2 } });
  });
  after(async () => {
    await front.close();
    await Promise.all(fakes.map((f) => f.close()));
  });

  it("48 requests, 12 at a time, three in four abandoned at seeded points: no slot leaked, next requests exact", async () => {
    const random = seededRandom(20261213);
    const prompt = (i: number) => (i % 2 === 0 ? chatPrompt(1000 + i, 30) : textPrompt(1000 + i, 30));
    const plans = Array.from({ length: 48 }, (_, i) => {
      const r = random();
      if (r < 0.25) return { i, leave: undefined };
      if (r < 0.6) return { i, leave: { abortAfterChunks: Math.floor(random() * 15) } };
      return { i, leave: { abortAfterMs: Math.floor(random() * 150) } };
    });
    let abandonedMidStream = 0;
    for (let wave = 0; wave < plans.length; wave += 12) {
      await Promise.all(
        plans.slice(wave, wave + 12).map(async ({ i, leave }) => {
          const r = await stream(front.url, prompt(i), 100, leave);
          if (leave === undefined) return assertExact(r, expectedAnswer(prompt(i), 100), `request ${i}, kept`);
          if (r.status === 200 && !r.done) abandonedMidStream++;
        }),
      );
    }
    assert.ok(abandonedMidStream > 0, "some clients left mid-answer");

    // The gateway lets go of everything: no slot held, nothing queued, every upstream request closed.
    await eventually(() => totalActive(front.fleet) === 0, "every replica slot to be free", 5_000);
    await eventually(async () => (await gateQueued(front.url, "m")) === 0, "the admission queue to be empty", 5_000);
    assert.deepEqual(await adminLoad(front.url), { active: 0, queued: 0 });
    for (const f of fakes) await f.waitFor((s) => s.active === 0, 5_000, "the upstream requests of leavers to be cancelled");
    const closedUpstream = fakes.reduce((n, f) => n + (f.stats.byOutcome.closed ?? 0), 0);
    assert.ok(closedUpstream > 0, "leaving cancelled the engine's work");

    // Every slot still works: eight at once on four slots, all exact.
    const next = Array.from({ length: 8 }, (_, i) => prompt(2000 + i));
    const results = await Promise.all(next.map((p) => stream(front.url, p, 40)));
    results.forEach((r, i) => assertExact(r, expectedAnswer(next[i]!, 40), `after, request ${i}`));
    await eventually(() => totalActive(front.fleet) === 0, "every replica slot to be free again", 5_000);
  });

  it("a client that leaves while its answer is being resumed on another replica leaks nothing either", async () => {
    const random = seededRandom(7);
    for (let i = 0; i < 6; i++) {
      const p = chatPrompt(3000 + i, 40);
      // A crash at piece 8 and a client that leaves somewhere around it: before, during or after the resume.
      const struck = Promise.race(fakes.map((f) => f.killAfter(8)));
      const r = await stream(front.url, p, 100, { abortAfterChunks: 6 + Math.floor(random() * 8) });
      assert.equal(r.status, 200);
      for (const f of fakes) f.disarm();
      void struck;
    }
    await eventually(() => totalActive(front.fleet) === 0, "every replica slot to be free", 5_000);
    for (const f of fakes) await f.waitFor((s) => s.active === 0, 5_000, "no upstream request left open");
    assertExact(await stream(front.url, textPrompt(3100), 30), expectedAnswer(textPrompt(3100), 30), "after");
  });
});
