/**
 * POST /v1/responses through the official openai client's `responses`
 * methods, against the local engine: text and item input, instructions,
 * streaming semantic events that add up to the whole response, a structured
 * answer, and the refusals (store, previous_response_id, tools).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";

describe("the Responses API", () => {
  let gw: RunningGateway;
  let client: OpenAI;
  before(async () => {
    gw = await startGateway(tinyFleet());
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => gw.close());

  it("answers text input with one output message, honest usage, and store: false", async () => {
    const r = await client.responses.create({ model: "tiny", input: "Say something.", instructions: "Be terse.", max_output_tokens: 12, temperature: 0 });
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
    const whole = await client.responses.create({ model: "tiny", input, max_output_tokens: 24, temperature: 0 });
    const stream = await client.responses.create({ model: "tiny", input, max_output_tokens: 24, temperature: 0, stream: true });
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
    const r = await client.responses.create({
      model: "tiny",
      input: "Answer in JSON.",
      max_output_tokens: 100,
      temperature: 0,
      text: { format: { type: "json_schema", name: "answer", strict: true, schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false } } },
    });
    assert.equal(r.status, "completed");
    assert.equal(typeof (JSON.parse(r.output_text) as { ok: unknown }).ok, "boolean");
  });

  it("refuses what it would not do, naming the field: store, previous_response_id, tools", async () => {
    const refused = async (body: Record<string, unknown>, param: string, message: RegExp): Promise<void> =>
      assert.rejects(client.responses.create({ model: "tiny", input: "x", ...body } as never), (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === param && message.test(err.message));
    await refused({ store: true }, "store", /store must be one of: false/);
    await refused({ previous_response_id: "resp_1" }, "previous_response_id", /responses are not stored, so none can be continued; send the conversation as input items/);
    await refused({ tools: [{ type: "function", name: "f", parameters: {} }] }, "tools", /tool calling is served on POST \/v1\/chat\/completions, not yet on this API/);
    await refused({ input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }, "input[0].content[0].type", /must be one of: input_text, output_text/);
    assert.equal(totalActive(gw.fleet), 0);
  });
});
