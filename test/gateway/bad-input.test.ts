import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startGateway, tinyFleet, TINY_MODEL, totalActive, type RunningGateway } from "../helpers.js";

interface ErrorReply {
  status: number;
  headers: Headers;
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function post(url: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }): Promise<ErrorReply> {
  const res = await fetch(url, { method: "POST", headers, body });
  const json = (await res.json()) as { error: ErrorReply["error"] };
  return { status: res.status, headers: res.headers, error: json.error };
}

const chat = (over: Record<string, unknown>): string =>
  JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...over });

describe("every bad input gets a clear OpenAI-style error and changes nothing", () => {
  let gw: RunningGateway;
  let url: string;
  before(async () => {
    gw = await startGateway(tinyFleet({ context: 128 }), { bodyLimit: 64 * 1024 });
    url = `${gw.url}/v1/chat/completions`;
  });
  after(() => gw.close());

  const cases: { name: string; body: () => string; headers?: Record<string, string>; status: number; param?: string | null; code?: string; message: RegExp }[] = [
    { name: "malformed JSON", body: () => '{"model": "tiny", "messages": [', status: 400, code: "invalid_json", message: /not valid JSON/ },
    { name: "an empty body", body: () => "", status: 400, code: "invalid_json", message: /not valid JSON/ },
    { name: "a missing model", body: () => JSON.stringify({ messages: [{ role: "user", content: "hi" }] }), status: 400, param: "model", message: /model is required/ },
    { name: "missing messages", body: () => JSON.stringify({ model: "tiny" }), status: 400, param: "messages", message: /messages is required/ },
    { name: "empty messages", body: () => chat({ messages: [] }), status: 400, param: "messages", message: /fewer than 1/ },
    { name: "an unknown role", body: () => chat({ messages: [{ role: "wizard", content: "hi" }] }), status: 400, param: "messages[0].role", message: /one of: system, developer, user/ },
    { name: "a non-integer max_tokens", body: () => chat({ max_tokens: 2.5 }), status: 400, param: "max_tokens", message: /integer/ },
    { name: "temperature out of range", body: () => chat({ temperature: 7 }), status: 400, param: "temperature", message: /<= 2/ },
    { name: "n above 1", body: () => chat({ n: 3 }), status: 400, param: "n", message: /one choice per request/ },
    { name: "a string where a bool belongs", body: () => chat({ stream: "yes" }), status: 400, param: "stream", message: /boolean/ },
    { name: "an image content part", body: () => chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), status: 400, param: "messages[0].content[0].type", message: /must be "text"/ },
    { name: "a number as content", body: () => chat({ messages: [{ role: "user", content: 5 }] }), status: 400, param: "messages[0].content", message: /wrong type or shape/ },
    { name: "an unknown model", body: () => chat({ model: "gpt-9" }), status: 404, param: "model", code: "model_not_found", message: /"gpt-9" is not served here.*tiny/ },
    { name: "a prompt over the context window", body: () => chat({ messages: [{ role: "user", content: "word ".repeat(400) }] }), status: 400, param: "messages", code: "context_length_exceeded", message: /context window is \d+ tokens; the prompt is \d+ tokens/ },
    { name: "max_tokens past the context window", body: () => chat({ max_tokens: 1000 }), status: 400, code: "context_length_exceeded", message: /plus max_tokens 1000/ },
    { name: "a body over the limit", body: () => chat({ messages: [{ role: "user", content: "x".repeat(100 * 1024) }] }), status: 413, code: "body_too_large", message: /larger than this server accepts/ },
    { name: "legacy functions, which would otherwise be ignored", body: () => chat({ functions: [{ name: "f" }] }), status: 400, param: "functions", message: /functions is not supported by Flotilla: function calling is not served; use its successor, tools; remove it/ },
    { name: "an unknown response_format type", body: () => chat({ response_format: { type: "yaml" } }), status: 400, param: "response_format.type", message: /one of: text, json_object, json_schema/ },
    { name: "a json_schema response_format without its name", body: () => chat({ response_format: { type: "json_schema", json_schema: { schema: {} } } }), status: 400, param: "response_format.json_schema.name", message: /is required/ },
    { name: "a tool result that answers no call", body: () => chat({ messages: [{ role: "user", content: "hi" }, { role: "tool", tool_call_id: "c", content: "42" }] }), status: 400, param: "messages[1].tool_call_id", message: /"c" answers no tool call of an earlier assistant message/ },
    { name: "a field no API has", body: () => chat({ temprature: 0.5 }), status: 400, param: "temprature", message: /temprature is not supported by Flotilla; remove it/ },
    { name: "store: true", body: () => chat({ store: true }), status: 400, param: "store", message: /must be one of: false/ },
    { name: "a penalty out of range", body: () => chat({ frequency_penalty: 3 }), status: 400, param: "frequency_penalty", message: /<= 2/ },
    { name: "a text/plain body", body: () => chat({}), headers: { "content-type": "text/plain" }, status: 415, code: "unsupported_media_type", message: /Content-Type: application\/json/ },
    { name: "a form-encoded body", body: () => "model=tiny", headers: { "content-type": "application/x-www-form-urlencoded" }, status: 415, message: /Content-Type: application\/json/ },
  ];

  for (const c of cases) {
    it(`rejects ${c.name} with ${c.status}`, async () => {
      const reply = await post(url, c.body(), c.headers);
      assert.equal(reply.status, c.status, JSON.stringify(reply.error));
      assert.match(reply.error.message, c.message);
      assert.equal(reply.error.type, c.status === 404 || c.status < 500 ? "invalid_request_error" : reply.error.type);
      if (c.param !== undefined) assert.equal(reply.error.param, c.param);
      if (c.code !== undefined) assert.equal(reply.error.code, c.code);
      assert.ok(reply.headers.get("x-request-id"), "every reply names its request");
      assert.equal(totalActive(gw.fleet), 0, "no engine work was started or left behind");
    });
  }

  it("rejects a completions prompt over the context window, naming prompt", async () => {
    const reply = await post(`${gw.url}/v1/completions`, JSON.stringify({ model: "tiny", prompt: "word ".repeat(400) }));
    assert.equal(reply.status, 400);
    assert.equal(reply.error.code, "context_length_exceeded");
    assert.equal(reply.error.param, "prompt");
  });

  it("answers an unknown route with 404 in the same shape", async () => {
    const reply = await post(`${gw.url}/v1/images/generations`, "{}");
    assert.equal(reply.status, 404);
    assert.match(reply.error.message, /no route POST \/v1\/images\/generations/);
  });

  it("still serves after all of that", async () => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: chat({}) });
    assert.equal(res.status, 200);
  });
});

describe("a model with no ready replica", () => {
  let gw: RunningGateway;
  before(async () => {
    // Nothing listens on port 9 of loopback: the replica never becomes ready.
    gw = await startGateway({
      models: [
        { name: "remote", replicas: [{ engine: "openai", url: "http://127.0.0.1:9" }] },
        { name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, context: 128 }] },
      ],
    });
  });
  after(() => gw.close());

  it("gets 503 with Retry-After once its short wait for a replica is over", async () => {
    const started = performance.now();
    const reply = await post(`${gw.url}/v1/chat/completions`, chat({ model: "remote" }));
    assert.equal(reply.status, 503);
    assert.equal(reply.error.code, "no_ready_replica");
    assert.ok(Number(reply.headers.get("retry-after")) > 0);
    const waited = performance.now() - started;
    assert.ok(waited >= 950 && waited < 2_000, `answered after ${waited.toFixed(0)} ms (ready_wait_ms is 1000)`);
  });

  it("reports ready at /readyz while another model is ready, alive at /healthz", async () => {
    assert.equal((await fetch(`${gw.url}/readyz`)).status, 200);
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  });
});

describe("/readyz with nothing ready", () => {
  it("says 503", async () => {
    const gw = await startGateway({ models: [{ name: "remote", replicas: [{ engine: "openai", url: "http://127.0.0.1:9" }] }] });
    try {
      assert.equal((await fetch(`${gw.url}/readyz`)).status, 503);
      assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    } finally {
      await gw.close();
    }
  });
});
