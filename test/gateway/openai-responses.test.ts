/**
 * POST /v1/responses through the official openai client's `responses`
 * methods, against the local engine: text and item input, instructions,
 * streaming semantic events that add up to the whole response, a structured
 * answer, a function call and its output, and the refusals (store,
 * previous_response_id, built-in tools, an output that answers no call).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import OpenAI from "openai";
import { totalActive } from "../helpers.js";
import { clientSuite } from "../openai-suite.js";

const weather: OpenAI.Responses.FunctionTool = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] } }, required: ["city"], additionalProperties: false },
  strict: true,
};

describe("the Responses API", () => {
  const s = clientSuite();

  it("answers text input with one output message, honest usage, and store: false", async () => {
    const r = await s.client.responses.create({ model: "tiny", input: "Say something.", instructions: "Be terse.", max_output_tokens: 12, temperature: 0 });
    assert.equal(r.object, "response");
    assert.match(r.id, /^resp_/);
    assert.equal(r.output.length, 1);
    const item = r.output[0]!;
    assert.ok(item.type === "message" && item.role === "assistant");
    assert.ok(r.output_text.length > 0, "the client's output_text joins the message's text");
    assert.equal((r as unknown as { store: unknown }).store, false, "nothing is stored, and the response says so");
    assert.ok(r.usage !== null && r.usage !== undefined);
    assert.ok(r.usage.input_tokens > 3 && r.usage.output_tokens >= 1 && r.usage.output_tokens <= 12);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    assert.equal(r.status, r.usage.output_tokens === 12 ? "incomplete" : "completed");
    if (r.status === "incomplete") assert.equal(r.incomplete_details?.reason, "max_output_tokens");
  });

  it("streams semantic events in order that add up to the same answer; item input with an earlier output item", async () => {
    const input: OpenAI.Responses.ResponseInput = [
      { role: "user", content: "Hello" },
      { type: "message", id: "msg_1", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Hi.", annotations: [] }] },
      { role: "user", content: [{ type: "input_text", text: "Count to ten." }] },
    ];
    const whole = await s.client.responses.create({ model: "tiny", input, max_output_tokens: 24, temperature: 0 });
    const stream = await s.client.responses.create({ model: "tiny", input, max_output_tokens: 24, temperature: 0, stream: true });
    const types: string[] = [];
    let deltas = "";
    let last = -1;
    let final: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      assert.ok(event.sequence_number > last, "sequence numbers rise");
      last = event.sequence_number;
      if (event.type === "response.output_text.delta") deltas += event.delta;
      if (event.type === "response.completed" || event.type === "response.incomplete") final = event.response;
    }
    assert.deepEqual(types.slice(0, 4), ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    assert.deepEqual(types.slice(-4, -1), ["response.output_text.done", "response.content_part.done", "response.output_item.done"]);
    assert.equal(deltas, whole.output_text, "the stream says what the whole response says");
    assert.ok(final !== undefined && final.usage?.output_tokens === whole.usage?.output_tokens);
  });

  it("text.format json_schema holds the answer to the schema", async () => {
    const r = await s.client.responses.create({
      model: "tiny",
      input: "Answer in JSON.",
      max_output_tokens: 100,
      temperature: 0,
      text: { format: { type: "json_schema", name: "answer", strict: true, schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false } } },
    });
    assert.equal(r.status, "completed");
    assert.equal(typeof (JSON.parse(r.output_text) as { ok: unknown }).ok, "boolean");
  });

  it("refuses what it would not do, naming the field: store, previous_response_id, built-in tools, a result of no call", async () => {
    const refused = async (body: Record<string, unknown>, param: string, message: RegExp): Promise<void> =>
      assert.rejects(s.client.responses.create({ model: "tiny", input: "x", ...body } as never), (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === param && message.test(err.message));
    await refused({ store: true }, "store", /store must be one of: false/);
    await refused({ previous_response_id: "resp_1" }, "previous_response_id", /responses are not stored, so none can be continued; send the conversation as input items/);
    await refused({ tools: [{ type: "web_search" }] }, "tools[0].type", /must be "function"/);
    await refused({ tools: [weather], tool_choice: { type: "function", name: "get_stock" } }, "tool_choice", /"get_stock", which is not among the tools offered \(get_weather\)/);
    await refused({ input: [{ type: "function_call_output", call_id: "call_9", output: "1" }] }, "input[0].call_id", /"call_9" answers no function_call item before it/);
    await refused({ input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }, "input[0].content[0].type", /must be one of: input_text, output_text/);
    assert.equal(totalActive(s.gw.fleet), 0);
  });

  it("calls a function tool: a function_call output item, streamed as argument deltas, and its output read back as history", async () => {
    const request = { model: "tiny", input: "Weather in Paris?", tools: [weather], tool_choice: { type: "function" as const, name: "get_weather" }, max_output_tokens: 60, temperature: 0 };
    const r = await s.client.responses.create(request);
    assert.equal(r.status, "completed");
    assert.deepEqual(r.tools.map((t) => t.type === "function" && t.name), ["get_weather"], "the response states the tools");
    const call = r.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === "function_call");
    assert.ok(call !== undefined, JSON.stringify(r.output));
    assert.equal(call.name, "get_weather");
    assert.match(call.call_id, /^call_/);
    const args = JSON.parse(call.arguments) as { city: string };
    assert.ok(["Paris", "Oslo"].includes(args.city));
    const types: string[] = [];
    let deltas = "";
    let done: OpenAI.Responses.Response | undefined;
    for await (const event of await s.client.responses.create({ ...request, stream: true })) {
      types.push(event.type);
      if (event.type === "response.function_call_arguments.delta") deltas += event.delta;
      if (event.type === "response.completed") done = event.response;
    }
    assert.deepEqual(types, ["response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done", "response.completed"]);
    assert.deepEqual(JSON.parse(deltas), args, "temperature 0: the stream's call is the same call");
    assert.equal(done?.output.length, 1);
    const next = await s.client.responses.create({
      model: "tiny",
      input: [{ role: "user", content: "Weather in Paris?" }, { type: "function_call", call_id: call.call_id, name: call.name, arguments: call.arguments }, { type: "function_call_output", call_id: call.call_id, output: "sunny" }],
      tools: [weather],
      tool_choice: "none",
      max_output_tokens: 8,
    });
    assert.equal(next.output[0]?.type, "message");
  });
});
