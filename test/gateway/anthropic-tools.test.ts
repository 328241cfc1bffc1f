/**
 * Tool use through Anthropic's own SDK on the real local engine: a tool
 * the request names (tool_choice tool) or any tool (any) is used, its
 * input held to the tool's input_schema, as a tool_use block with
 * stop_reason tool_use, the same streamed (input_json_delta) as whole; a
 * history with tool_use and tool_result blocks is read; bad tool requests
 * are 400s naming the field.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Anthropic, { APIError } from "@anthropic-ai/sdk";
import { startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";

const weather: Anthropic.Tool = {
  name: "get_weather",
  description: "The weather in a city",
  input_schema: { type: "object", properties: { city: { enum: ["Paris", "Oslo", "Lima"] }, celsius: { type: "boolean" } }, required: ["city", "celsius"] },
};
const clock: Anthropic.Tool = { name: "get_time", input_schema: { type: "object", properties: { zone: { enum: ["utc", "local"] } }, required: ["zone"] } };
const ask: Anthropic.MessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];

describe("tool use through the Anthropic SDK", () => {
  let gw: RunningGateway;
  let client: Anthropic;
  before(async () => {
    gw = await startGateway(tinyFleet({ context: 1024 }));
    client = new Anthropic({ baseURL: gw.url, apiKey: "unused", maxRetries: 0 });
  });
  after(() => gw.close());

  it("uses the tool named in tool_choice, with input that fits its schema, the same streamed as whole", async () => {
    const params = { model: "tiny", max_tokens: 60, temperature: 0, messages: ask, tools: [weather, clock], tool_choice: { type: "tool" as const, name: "get_weather" } };
    const m = await client.messages.create(params as Anthropic.MessageCreateParamsNonStreaming);
    assert.equal(m.stop_reason, "tool_use");
    const use = m.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    assert.ok(use !== undefined, JSON.stringify(m.content));
    assert.match(use.id, /^toolu_[\w-]+$/);
    assert.equal(use.name, "get_weather");
    const input = use.input as { city: string; celsius: boolean };
    assert.ok(["Paris", "Oslo", "Lima"].includes(input.city) && typeof input.celsius === "boolean", JSON.stringify(input));
    const streamed = await client.messages.stream(params as Anthropic.MessageCreateParamsNonStreaming).finalMessage();
    assert.equal(streamed.stop_reason, "tool_use");
    const streamedUse = streamed.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    assert.deepEqual(streamedUse?.input, input, "the SDK assembles the same input from input_json_delta pieces");
    assert.equal(totalActive(gw.fleet), 0);
  });

  it("tool_choice any uses one of the tools; a history with tool_use and tool_result blocks is read", async () => {
    const m = await client.messages.create({ model: "tiny", max_tokens: 60, messages: ask, tools: [weather, clock], tool_choice: { type: "any" } });
    const use = m.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
    assert.ok(use !== undefined && ["get_weather", "get_time"].includes(use.name));
    const history: Anthropic.MessageParam[] = [
      ...ask,
      { role: "assistant", content: [{ type: "text", text: "Let me look." }, { type: "tool_use", id: use.id, name: use.name, input: use.input }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18 degrees and sunny" }, { type: "text", text: "And tomorrow?" }] },
    ];
    const next = await client.messages.create({ model: "tiny", max_tokens: 8, messages: history, tools: [weather, clock], tool_choice: { type: "none" } });
    assert.equal(next.type, "message");
    assert.ok(next.content.every((b) => b.type === "text"));
  });

  it("refuses bad tool requests with 400 invalid_request_error naming the field", async () => {
    const base = { model: "tiny", max_tokens: 8, messages: ask };
    const cases: [unknown, RegExp][] = [
      [{ ...base, tools: [weather], tool_choice: { type: "tool", name: "get_stock" } }, /^tool_choice\.name: "get_stock" is not among the tools offered \(get_weather\)/],
      [{ ...base, tool_choice: { type: "any" } }, /^tool_choice: needs tools/],
      [{ ...base, tools: [weather, weather] }, /^tools\[1\]\.name: "get_weather" is offered twice/],
      [{ ...base, tools: [{ name: "f", input_schema: { type: "string" } }] }, /^tools\[0\]\.input_schema\.type: must be "object"/],
      [{ ...base, messages: [...ask, { role: "assistant", content: "ok" }, { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_x", content: "1" }] }] }, /^messages\[2\]\.content\[0\]\.tool_use_id: "toolu_x" answers no tool_use block/],
      [{ ...base, messages: [{ role: "user", content: [{ type: "tool_use", id: "t", name: "f", input: {} }] }] }, /^messages\[0\]\.content\[0\]\.type: tool_use blocks are the assistant's/],
      [{ ...base, messages: [...ask, { role: "assistant", content: [{ type: "tool_use", id: "t", name: "get_weather", input: {} }] }] }, /^messages\[1\]\.content: a final assistant message that uses tools needs their tool_result/],
    ];
    for (const [body, message] of cases) {
      const err = await client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming).then(
        () => assert.fail(`answered: ${String(message)}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof APIError && err.status === 400, String(err));
      assert.match((err.error as { error: { message: string } }).error.message, message);
    }
  });
});
