/**
 * Tool calling on chat completions through the official openai client:
 * on the real local engine, a call that must be made (one tool by name,
 * or any) is held by llama.cpp's grammar to an offered tool and its
 * schema, streamed and not; a history with calls and their results is
 * read; and every bad request is a 400 naming its field. Through a remote
 * replica (a deterministic upstream that streams a call in pieces, as vLLM
 * does), the tools go out in OpenAI's shape, the pieces come back as
 * OpenAI's tool-call deltas, and a call that breaks a strict tool is a 502.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { curl, CURL_MISSING, startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";
import { clientSuite } from "../openai-suite.js";

type ToolDef = OpenAI.Chat.Completions.ChatCompletionTool;

// Enums and booleans: a random-weight model, held to them, always finishes a call well within max_tokens.
const weather: ToolDef = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo", "Lima"] }, celsius: { type: "boolean" } }, required: ["city", "celsius"], additionalProperties: false },
    strict: true,
  },
};
const clock: ToolDef = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["utc", "local"] } }, required: ["zone"] } } };
const ask: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];

/** The calls a stream's deltas add up to, as a client assembles them. */
async function assemble(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>): Promise<{ calls: { id: string; name: string; args: string }[]; finish: string | null }> {
  const calls: { id: string; name: string; args: string }[] = [];
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    for (const d of choice?.delta.tool_calls ?? []) {
      if (d.id !== undefined) calls[d.index] = { id: d.id, name: d.function?.name ?? "", args: "" };
      calls[d.index]!.args += d.function?.arguments ?? "";
    }
    finish = choice?.finish_reason ?? finish;
  }
  return { calls, finish };
}

describe("tool calls on the local engine", () => {
  const s = clientSuite(tinyFleet({ context: 1024 }));

  it("a tool named in tool_choice is called, with arguments that fit its schema, streamed as the same call", async () => {
    const request = { model: "tiny", messages: ask, tools: [weather, clock], tool_choice: { type: "function" as const, function: { name: "get_weather" } }, max_tokens: 60, temperature: 0 };
    const r = await s.client.chat.completions.create(request);
    const choice = r.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    const [call] = choice.message.tool_calls!;
    assert.ok(call !== undefined && call.type === "function");
    assert.match(call.id, /^call_[\w-]{16}$/);
    assert.equal(call.function.name, "get_weather");
    const args = JSON.parse(call.function.arguments) as { city: string; celsius: boolean };
    assert.ok(["Paris", "Oslo", "Lima"].includes(args.city) && typeof args.celsius === "boolean", call.function.arguments);
    const streamed = await assemble(await s.client.chat.completions.create({ ...request, stream: true }));
    assert.equal(streamed.finish, "tool_calls");
    assert.equal(streamed.calls.length, 1);
    assert.equal(streamed.calls[0]!.name, "get_weather");
    assert.deepEqual(JSON.parse(streamed.calls[0]!.args), args, "temperature 0: the stream's call is the same call");
    assert.equal(totalActive(s.gw.fleet), 0);
  });

  it("streams a call's tool-call deltas to curl -N", { skip: CURL_MISSING }, async () => {
    const body = JSON.stringify({ model: "tiny", messages: ask, tools: [weather], tool_choice: "required", max_tokens: 60, stream: true });
    const out = await curl(["-N", "-H", "content-type: application/json", "-d", body, `${s.gw.url}/v1/chat/completions`]);
    const chunks = out
      .split("\n\n")
      .filter((b) => b.startsWith("data: {"))
      .map((b) => JSON.parse(b.slice(6)) as OpenAI.Chat.Completions.ChatCompletionChunk);
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    assert.equal(deltas[0]?.function?.name, "get_weather");
    assert.match(deltas[0]?.id ?? "", /^call_/);
    const args = JSON.parse(deltas.map((d) => d.function?.arguments ?? "").join("")) as { city: string };
    assert.ok(["Paris", "Oslo", "Lima"].includes(args.city));
    assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, "tool_calls");
    assert.ok(out.endsWith("data: [DONE]\n\n"));
  });

  it("tool_choice required calls one of the tools offered; none answers in text", async () => {
    for (let i = 0; i < 3; i++) {
      const r: OpenAI.Chat.Completions.ChatCompletion = await s.client.chat.completions.create({ model: "tiny", messages: ask, tools: [weather, clock], tool_choice: "required", max_tokens: 60, seed: i });
      const call = r.choices[0]!.message.tool_calls?.[0];
      assert.equal(r.choices[0]!.finish_reason, "tool_calls");
      assert.ok(call?.type === "function" && ["get_weather", "get_time"].includes(call.function.name));
      const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
      assert.ok(call.function.name === "get_time" ? ["utc", "local"].includes(args.zone as string) : ["Paris", "Oslo", "Lima"].includes(args.city as string));
    }
    const none = await s.client.chat.completions.create({ model: "tiny", messages: ask, tools: [weather], tool_choice: "none", max_tokens: 8 });
    assert.equal(none.choices[0]!.message.tool_calls, undefined);
    assert.ok(["stop", "length"].includes(none.choices[0]!.finish_reason));
  });

  it("auto lets the model answer in text or call; a history with a call and its result is read", async () => {
    const r = await s.client.chat.completions.create({ model: "tiny", messages: ask, tools: [weather], max_tokens: 12 });
    const choice = r.choices[0]!;
    if (choice.finish_reason === "tool_calls") assert.equal(choice.message.tool_calls?.[0]?.type === "function" && choice.message.tool_calls[0].function.name, "get_weather");
    else assert.ok(typeof choice.message.content === "string" && choice.message.tool_calls === undefined);
    const history: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      ...ask,
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris","celsius":true}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "18 degrees and sunny" },
    ];
    const next = await s.client.chat.completions.create({ model: "tiny", messages: history, tools: [weather], tool_choice: "none", max_tokens: 8 });
    assert.equal(next.object, "chat.completion");
    assert.ok(next.usage!.prompt_tokens > 10);
  });

  it("refuses what it cannot do, naming the field", async () => {
    const refused = async (body: Record<string, unknown>, param: string, message: RegExp): Promise<void> =>
      assert.rejects(s.client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 8, ...body } as never), (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.param, param);
        assert.match(err.message, message);
        return true;
      });
    await refused({ tools: [weather], tool_choice: { type: "function", function: { name: "get_stock" } } }, "tool_choice", /"get_stock", which is not among the tools offered \(get_weather\)/);
    await refused({ tool_choice: "required" }, "tool_choice", /tool_choice needs tools/);
    await refused({ tools: [weather, weather] }, "tools[1].function.name", /offered twice/);
    await refused({ tools: [{ type: "function", function: { name: "bad name!" } }] }, "tools[0].function.name", /must match pattern/);
    const bounded = { type: "function", function: { name: "set", parameters: { type: "object", properties: { n: { type: "integer", minimum: 1 } } } } };
    await refused({ tools: [bounded], tool_choice: "required" }, "tools[0].function.parameters", /tools\[0\]\.function\.parameters\.properties\.n\.minimum: "minimum" cannot be enforced by the local engine/);
    await refused({ tools: [weather], response_format: { type: "json_object" } }, "response_format", /cannot hold an answer to response_format while the model may call tools/);
    await refused({ messages: [...ask, { role: "tool", content: "sunny" }] }, "messages[1].tool_call_id", /is required: a tool message is the result of one tool call/);
    await refused({ messages: [{ role: "user", content: "x", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }] }, "messages[0].tool_calls", /only an assistant message carries tool calls/);
    assert.equal(totalActive(s.gw.fleet), 0);
  });
});

describe("tool calls through a remote replica", () => {
  let upstream: Server;
  let front: RunningGateway;
  let client: OpenAI;
  let received: Record<string, unknown> | undefined;
  /** What the upstream's call says: its name and its arguments, streamed in three pieces. */
  let answer = { name: "get_weather", args: '{"city":"Oslo","celsius":false}' };

  before(async () => {
    upstream = createServer((req, res) => void serveUpstream(req, res));
    const serveUpstream = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      if (req.url === "/health") return void res.end("ok");
      if (req.method !== "POST") return void res.writeHead(404).end();
      let body = "";
      for await (const chunk of req) body += chunk;
      received = JSON.parse(body) as Record<string, unknown>;
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      const { name, args } = answer;
      const third = Math.ceil(args.length / 3);
      // The id alone first, then the name, as some servers send them: the call goes out with both.
      res.write(chunk({ role: "assistant", tool_calls: [{ index: 0, id: "call_up1", type: "function" }] }));
      res.write(chunk({ tool_calls: [{ index: 0, function: { name, arguments: "" } }] }));
      for (let i = 0; i < args.length; i += third) res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(i, i + third) } }] }));
      res.write(chunk({}, "tool_calls"));
      res.end(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 20, completion_tokens: 9 } })}\n\ndata: [DONE]\n\n`);
    };
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    front = await startGateway({ models: [{ name: "remote", replicas: [{ engine: "openai", url, upstream_model: "up", metrics_interval_ms: 0 }] }] });
    client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await front?.close();
    upstream?.close();
  });

  it("sends the tools and the history in OpenAI's shape, and returns the upstream's call whole and as deltas", async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      ...ask,
      { role: "assistant", content: null, tool_calls: [{ id: "call_0", type: "function", function: { name: "get_time", arguments: '{"zone":"utc"}' } }] },
      { role: "tool", tool_call_id: "call_0", content: "12:00" },
    ];
    const r = await client.chat.completions.create({ model: "remote", messages, tools: [weather, clock], tool_choice: "auto", parallel_tool_calls: false, max_tokens: 50 });
    assert.deepEqual(received?.tools, [weather, clock]);
    assert.equal(received?.tool_choice, "auto");
    assert.equal(received?.parallel_tool_calls, false);
    assert.deepEqual((received?.messages as unknown[]).slice(1), messages.slice(1), "the calls and their result go out as the client sent them");
    assert.equal(r.choices[0]!.finish_reason, "tool_calls");
    assert.deepEqual(r.choices[0]!.message.tool_calls, [{ id: "call_up1", type: "function", function: { name: "get_weather", arguments: answer.args } }]);
    assert.equal(r.usage?.completion_tokens, 9);
    const streamed = await assemble(await client.chat.completions.create({ model: "remote", messages: ask, tools: [weather], max_tokens: 50, stream: true }));
    assert.deepEqual(streamed, { calls: [{ id: "call_up1", name: "get_weather", args: answer.args }], finish: "tool_calls" });
  });

  it("a call that breaks a strict tool's schema, or calls a tool not offered, is the engine's failure: 502", async () => {
    const fails = async (args: string, name: string, message: RegExp): Promise<void> => {
      answer = { name, args };
      await assert.rejects(client.chat.completions.create({ model: "remote", messages: ask, tools: [weather], max_tokens: 50 }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.APIError && err.status === 502, String(err));
        assert.match(err.message, message);
        return true;
      });
    };
    await fails('{"city":"Rome","celsius":true}', "get_weather", /replica remote\/0 answered with a tool call that breaks the request's tools: \/city must be equal to one of the allowed values/);
    await fails("{}", "get_stock", /it called "get_stock", which is not among the tools offered/);
  });
});
