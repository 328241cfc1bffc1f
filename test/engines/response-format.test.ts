/**
 * response_format on chat completions: the local engine holds the answer to
 * JSON, or to a JSON schema, with llama.cpp's grammar, so an answer that
 * finishes with "stop" parses and validates; a schema keyword it cannot
 * enforce is a 400 naming it; a remote engine is sent the format as is (here
 * a second Flotilla, whose local engine enforces it).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import OpenAI from "openai";
import { totalActive } from "../helpers.js";
import { frontedSuite } from "../openai-suite.js";

const SCHEMA = {
  type: "object",
  properties: {
    ok: { type: "boolean" },
    colour: { enum: ["red", "green", "blue"] },
    // OpenAI strict mode's nullable field.
    note: { anyOf: [{ type: "null" }, { const: "none" }] },
  },
  required: ["ok", "colour", "note"],
  additionalProperties: false,
  title: "Answer",
} as const;

describe("response_format", () => {
  const s = frontedSuite({ metrics_interval_ms: 0 });

  const ask = (format: NonNullable<OpenAI.ChatCompletionCreateParams["response_format"]>) => ({
    messages: [{ role: "user" as const, content: "Answer in JSON." }],
    max_tokens: 200,
    temperature: 0,
    response_format: format,
  });

  it("json_schema: the local engine's answer parses and fits the schema, streamed or not", async () => {
    const format = { type: "json_schema" as const, json_schema: { name: "answer", schema: SCHEMA, strict: true } };
    const whole = await s.direct.chat.completions.create({ model: "tiny", ...ask(format) });
    assert.equal(whole.choices[0]!.finish_reason, "stop", whole.choices[0]!.message.content ?? "");
    const value = JSON.parse(whole.choices[0]!.message.content!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(value).sort(), ["colour", "note", "ok"]);
    assert.equal(typeof value.ok, "boolean");
    assert.ok(["red", "green", "blue"].includes(value.colour as string));
    assert.ok(value.note === null || value.note === "none");
    const stream = await s.direct.chat.completions.create({ model: "tiny", ...ask(format), stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(text, whole.choices[0]!.message.content, "streaming gives the same answer");
  });

  it("json_object: any JSON object", async () => {
    const r = await s.direct.chat.completions.create({ model: "tiny", ...ask({ type: "json_object" }), max_tokens: 400 });
    if (r.choices[0]!.finish_reason === "stop") assert.equal(typeof JSON.parse(r.choices[0]!.message.content!), "object");
    else assert.equal(r.choices[0]!.finish_reason, "length", "cut at max_tokens: may not parse, and says so");
  });

  it("a remote engine is sent the format: the answer through a second gateway is the upstream's", async () => {
    const format = { type: "json_schema" as const, json_schema: { name: "answer", schema: SCHEMA, strict: true } };
    const a = await s.direct.chat.completions.create({ model: "tiny", ...ask(format) });
    const b = await s.viaFront.chat.completions.create({ model: "remote-tiny", ...ask(format) });
    assert.equal(b.choices[0]!.message.content, a.choices[0]!.message.content);
  });

  it("a keyword the local engine cannot enforce is a 400 naming it; nothing is left running", async () => {
    const bad = { type: "object", properties: { age: { type: "integer", minimum: 0 } }, required: ["age"] };
    await assert.rejects(
      s.direct.chat.completions.create({ model: "tiny", ...ask({ type: "json_schema", json_schema: { name: "x", schema: bad } }) }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === "response_format" && /response_format\.json_schema\.schema\.properties\.age\.minimum: "minimum" cannot be enforced by the local engine/.test(err.message),
    );
    await assert.rejects(
      s.direct.chat.completions.create({ model: "tiny", ...ask({ type: "json_schema", json_schema: { name: "x", schema: { type: "string", format: "email" } } }) }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && /format "email" cannot be enforced/.test(err.message),
    );
    await assert.rejects(
      s.direct.chat.completions.create({ model: "tiny", ...ask({ type: "xml" } as never) }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === "response_format.type",
    );
    assert.equal(totalActive(s.upstream.fleet), 0);
  });
});
