/**
 * A request joining a busy local engine starts at once: it does not wait
 * for the requests already generating to end. node-llama-cpp erases a
 * sequence's old tokens under the lock its decode loop holds while any
 * sequence decodes, so a request landing on a used sequence waited for
 * every running generation (engines/local.ts #renew). Event-ordered, not
 * timed: the new request's first token must come while the long ones still
 * run.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { GenerationRequest, Prompt } from "../../src/core/request.js";
import { LocalEngine } from "../../src/engines/local.js";
import { TINY_MODEL } from "../helpers.js";

let engine: LocalEngine;
before(async () => {
  engine = new LocalEngine({ modelPath: TINY_MODEL, parallel: 4, contextSize: 1024 });
  await engine.start();
});
after(async () => {
  await engine.close();
});

const text = (i: number): Prompt => ({ kind: "text", text: `Story ${i}: ${"the fleet of accelerators runs on and on. ".repeat(12)}` });
const request = (prompt: Prompt, maxTokens: number): GenerationRequest => ({ id: "t", prompt, sampling: { maxTokens, temperature: 0 } });

test("a request joining a busy engine gets its first token while the others still generate", async () => {
  // Every slot has served a request: each holds old tokens.
  await Promise.all([1, 2, 3, 4].map((i) => engine.generate(request(text(i), 4), () => undefined, AbortSignal.timeout(30_000))));
  let longDone = 0;
  let started = 0;
  let firstStarted: () => void = () => undefined;
  const going = new Promise<void>((r) => (firstStarted = r));
  const long = [10, 11].map((i) =>
    engine
      .generate(request(text(i), 400), () => {
        if (++started === 1) firstStarted();
      }, AbortSignal.timeout(60_000))
      .then((r) => {
        longDone++;
        return r;
      }),
  );
  await going;
  let doneAtFirstToken = -1;
  const joined = await engine.generate(request(text(20), 8), () => {
    if (doneAtFirstToken < 0) doneAtFirstToken = longDone;
  }, AbortSignal.timeout(60_000));
  const results = await Promise.all(long);
  assert.ok(joined.usage.completionTokens > 0);
  assert.ok(results.every((r) => r.usage.completionTokens > 100), "the long generations are long enough to be caught running");
  assert.equal(doneAtFirstToken, 0, "the new request's first token came before either long generation ended");
});
