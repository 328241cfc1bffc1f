import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { eventually, startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";

/**
 * Property: whatever bytes a client sends, the gateway answers with a status
 * below 500 and an OpenAI-shaped body, stays up, and leaves no slot busy.
 */
describe("fuzzing the HTTP API", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway(tinyFleet({ context: 256, parallel: 2 }), { bodyLimit: 16 * 1024 });
  });
  after(() => gw.close());

  const scalar = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
  const message = fc.record(
    { role: fc.oneof(fc.constantFrom("system", "user", "assistant", "developer", "tool"), fc.string()), content: fc.oneof(fc.string({ maxLength: 200 }), scalar, fc.array(fc.record({ type: fc.oneof(fc.constant("text"), fc.string()), text: scalar }), { maxLength: 3 })) },
    { requiredKeys: [] },
  );
  const field = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 4, arbitrary: arb }, { weight: 1, arbitrary: fc.jsonValue() });
  // Mostly well-formed bodies with a few fields wrong, so the fuzzer reaches past the first check.
  const nearlyValid = fc.record(
    {
      model: field(fc.oneof(fc.constant("tiny"), fc.string())),
      messages: field(fc.array(message, { maxLength: 4 })),
      prompt: field(fc.oneof(fc.string({ maxLength: 200 }), fc.array(fc.string(), { maxLength: 2 }))),
      max_tokens: field(fc.oneof(fc.integer({ min: -5, max: 40 }), fc.integer())),
      temperature: field(fc.double({ min: -1, max: 3, noNaN: true })),
      top_p: field(fc.double({ min: -1, max: 2, noNaN: true })),
      stream: field(fc.boolean()),
      stream_options: field(fc.record({ include_usage: fc.boolean() })),
      stop: field(fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 6 }))),
      n: field(fc.integer({ min: 0, max: 3 })),
      seed: field(fc.integer()),
      continue_final_message: field(fc.boolean()),
    },
    { requiredKeys: [] },
  );
  const rawBody = fc.oneof(
    { weight: 6, arbitrary: nearlyValid.map((v) => JSON.stringify(v)) },
    { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
    { weight: 1, arbitrary: nearlyValid.map((v) => JSON.stringify(v)).chain((s) => fc.nat(s.length).map((cut) => s.slice(0, cut))) },
  );

  it("never answers 5xx, always in OpenAI's error shape, and leaks no slot", async () => {
    await fc.assert(
      fc.asyncProperty(rawBody, fc.constantFrom("/v1/chat/completions", "/v1/completions"), async (body, path) => {
        const res = await fetch(`${gw.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
        const text = await res.text();
        assert.ok(res.status < 500, `status ${res.status} for ${body}: ${text.slice(0, 300)}`);
        if (res.status >= 400) {
          const err = (JSON.parse(text) as { error: { message: unknown; type: unknown } }).error;
          assert.equal(typeof err.message, "string");
          assert.equal(typeof err.type, "string");
        } else if (res.headers.get("content-type")?.startsWith("text/event-stream")) {
          assert.ok(text.endsWith("data: [DONE]\n\n"));
          assert.doesNotMatch(text, /"error"/);
        }
      }),
      { numRuns: 300, seed: Number(process.env.FUZZ_SEED ?? 20261123) },
    );
    await eventually(() => totalActive(gw.fleet) === 0, "every slot to be free", 2_000);
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  });
});
