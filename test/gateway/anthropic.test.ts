/**
 * POST /v1/messages through Anthropic's own SDK and curl, on the real local
 * engine (and, for failover, fake remote upstreams): Anthropic's shapes,
 * events and errors over the same path as chat completions.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import Anthropic, { APIError } from "@anthropic-ai/sdk";
import { curl, CURL_MISSING, eventually, gateQueued, startGateway, tinyFleet, TINY_MODEL, totalActive, type RunningGateway } from "../helpers.js";
import { admin, sqliteBackend, startTenantGateway, tinyConfig, type TenantGateway } from "../metering/harness.js";
import { expectedAnswer, startFakeUpstream, type FakeUpstream } from "../chaos/fake-upstream.js";
import { chatPrompt, frontOver, type Front } from "../chaos/harness.js";

/**
 * The SDK's params, with the sampling fields this route serves: the SDK's
 * types for API version 2026-10-21 no longer list them, and it sends what it
 * is given.
 */
type Params = Anthropic.MessageCreateParamsNonStreaming & { temperature?: number; top_p?: number; top_k?: number };
const ask = (p: Params): Anthropic.MessageCreateParamsNonStreaming => p;

const clientFor = (url: string, opts: { apiKey?: string | null; authToken?: string } = {}): Anthropic =>
  new Anthropic({ baseURL: url, apiKey: opts.apiKey === undefined ? "unused" : opts.apiKey, ...(opts.authToken === undefined ? {} : { authToken: opts.authToken }), maxRetries: 0 });

const textOf = (m: Anthropic.Message): string => m.content.map((b) => (b.type === "text" ? b.text : "")).join("");

/** The prompt's whole length: Anthropic counts tokens read from a cache apart. */
const promptTokens = (u: Anthropic.Usage): number => u.input_tokens + (u.cache_read_input_tokens ?? 0);

/** The SDK's error for a refused request, with Anthropic's body. */
async function refusal(pending: Promise<unknown>): Promise<APIError> {
  const err = await pending.then(
    () => assert.fail("the request was answered"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof APIError, `an APIError: ${String(err)}`);
  assert.equal((err.error as { type: string }).type, "error", "Anthropic's error shape");
  return err;
}

describe("the official Anthropic SDK against the local engine", () => {
  let gw: RunningGateway;
  let client: Anthropic;
  before(async () => {
    gw = await startGateway(tinyFleet({ context: 2048 }));
    client = clientFor(gw.url);
  });
  after(() => gw.close());

  const user = (content: string): Anthropic.MessageParam[] => [{ role: "user", content }];

  it("answers a message with text, honest usage and Anthropic's headers", async () => {
    const { data: msg, response, request_id } = await client.messages.create(ask({ model: "tiny", max_tokens: 12, temperature: 0, system: "You are terse.", messages: user("Say something.") })).withResponse();
    assert.match(msg.id, /^msg_/);
    assert.deepEqual([msg.type, msg.role, msg.model], ["message", "assistant", "tiny"]);
    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0]!.type, "text");
    assert.ok(textOf(msg).length > 0);
    assert.ok(promptTokens(msg.usage) > 5, `input ${promptTokens(msg.usage)} counts the chat template and the system prompt`);
    assert.ok(msg.usage.output_tokens >= 1 && msg.usage.output_tokens <= 12);
    assert.equal(msg.stop_reason, msg.usage.output_tokens === 12 ? "max_tokens" : "end_turn");
    assert.equal(msg.stop_sequence, null);
    assert.equal(response.headers.get("anthropic-version"), "2026-10-21", "the version the SDK sent, echoed");
    assert.equal(response.headers.get("x-flotilla-replica"), "tiny/0");
    assert.equal(request_id, msg.id.slice("msg_".length), "the SDK reads the request id");
  });

  it("streams exactly the text it returns whole; finalMessage() agrees with create()", async () => {
    const request: Params = { model: "tiny", max_tokens: 24, temperature: 0, system: [{ type: "text", text: "Be brief." }], messages: [{ role: "user", content: [{ type: "text", text: "Count" }, { type: "text", text: " to ten." }] }] };
    const whole = await client.messages.create(ask(request));
    const stream = client.messages.stream(ask(request));
    const pieces: string[] = [];
    stream.on("text", (t) => pieces.push(t));
    const final = await stream.finalMessage();
    assert.equal(pieces.join(""), textOf(whole));
    assert.ok(pieces.length > 3, `text arrived in ${pieces.length} pieces, not at once`);
    assert.equal(textOf(final), textOf(whole));
    assert.deepEqual([final.stop_reason, final.stop_sequence], [whole.stop_reason, whole.stop_sequence]);
    assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
    assert.equal(promptTokens(final.usage), promptTokens(whole.usage));
  });

  it("ends at a stop sequence with stop_reason stop_sequence, naming it", async () => {
    const free = textOf(await client.messages.create(ask({ model: "tiny", max_tokens: 20, temperature: 0, messages: user("abc") })));
    const stop = free.slice(4, 6);
    assert.ok(stop.trim().length > 0, "the free-running text is long enough to pick a stop sequence from");
    for (const stream of [false, true]) {
      const request: Params = { model: "tiny", max_tokens: 20, temperature: 0, messages: user("abc"), stop_sequences: ["never-written", stop] };
      const msg = stream ? await client.messages.stream(ask(request)).finalMessage() : await client.messages.create(ask(request));
      assert.deepEqual([msg.stop_reason, msg.stop_sequence], ["stop_sequence", stop], `stream: ${stream}`);
      assert.ok(!textOf(msg).includes(stop), "the stop sequence is not part of the answer");
      assert.ok(free.startsWith(textOf(msg)));
    }
  });

  it("continues a final assistant message (prefill) rather than starting over", async () => {
    const pieces: string[] = [];
    const stream = client.messages.stream(ask({ model: "tiny", max_tokens: 16, temperature: 0, messages: user("Tell me a story.") }));
    stream.on("text", (t) => pieces.push(t));
    const free = textOf(await stream.finalMessage());
    // The first piece ends on a token boundary: the model reads the prefill as it wrote it.
    const prefill = pieces[0]!;
    const continued = await client.messages.create(ask({ model: "tiny", max_tokens: 8, temperature: 0, messages: [...user("Tell me a story."), { role: "assistant", content: prefill }] }));
    const rest = textOf(continued);
    assert.ok(rest.length > 0);
    assert.ok(free.startsWith(prefill + rest), `${JSON.stringify(prefill)} + ${JSON.stringify(rest)} continues ${JSON.stringify(free)}`);
  });

  it("passes top_k to the engine: top_k 1 samples as greedily as temperature 0", async () => {
    const greedy = textOf(await client.messages.create(ask({ model: "tiny", max_tokens: 24, temperature: 0, messages: user("Tell me a story.") })));
    const topK = textOf(await client.messages.create(ask({ model: "tiny", max_tokens: 24, temperature: 1, top_k: 1, messages: user("Tell me a story.") })));
    assert.equal(topK, greedy);
  });

  it("refuses what it cannot serve with 400 invalid_request_error naming the field", async () => {
    const base = { model: "tiny", max_tokens: 8, messages: user("hi") };
    const cases: [unknown, RegExp][] = [
      [{ model: "tiny", messages: user("hi") }, /^max_tokens: field required/],
      [{ ...base, messages: [...user("one"), ...user("two")] }, /^messages\[1\]\.role: roles must alternate/],
      [{ ...base, messages: [{ role: "assistant", content: "hi" }] }, /^messages\[0\]\.role: the first message must be the user's/],
      [{ ...base, messages: [{ role: "user", content: [{ type: "text", text: "Look:" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] }] }, /^messages\[0\]\.content\[1\]\.type: "image" blocks are not supported/],
      [{ ...base, frobnicate: true }, /^frobnicate: not a field this gateway takes; the request takes model, max_tokens, messages/],
      [{ ...base, metadata: { user_id: "u1", tier: "gold" } }, /^metadata\.tier: not a field/],
      [{ ...base, tools: [{ type: "web_search_20250305", name: "web_search" }] }, /^tools\[0\]\.type: "web_search_20250305": Anthropic's server tools are not served here/],
      [{ ...base, temperature: 1.5 }, /^temperature: must be a number from 0 to 1/],
    ];
    for (const [body, message] of cases) {
      const err = await refusal(client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming));
      assert.equal(err.status, 400, String(message));
      assert.equal(err.type, "invalid_request_error");
      assert.match(err.apiMessage ?? "", message);
    }
    const version = await refusal(client.messages.create(base, { headers: { "anthropic-version": "2020-01-01" } }));
    assert.equal(version.status, 400);
    assert.match(version.apiMessage ?? "", /^anthropic-version "2020-01-01" is not served here/);
  });

  it("answers an unknown model with 404 not_found_error listing the served ones", async () => {
    const err = await refusal(client.messages.create({ model: "claude-nope", max_tokens: 8, messages: user("hi") }));
    assert.equal(err.status, 404);
    assert.equal(err.type, "not_found_error");
    assert.match(err.apiMessage ?? "", /"claude-nope".*tiny/);
  });

  it("ends a stream that fails after it began with an error event (a deadline: timeout_error)", async () => {
    const pieces: string[] = [];
    const stream = client.messages.stream({ model: "tiny", max_tokens: 1900, messages: user("Go on and on.") }, { headers: { "x-flotilla-timeout-ms": "800" } });
    stream.on("text", (t) => pieces.push(t));
    const err = await refusal(stream.finalMessage());
    assert.ok(pieces.length > 0, "the answer had begun");
    assert.equal(err.type, "timeout_error");
    assert.match(err.apiMessage ?? "", /cancelled/);
    await eventually(() => totalActive(gw.fleet) === 0, "the slot to be released", 2_000);
  });

  it("streams Anthropic's named events to curl -N", { skip: CURL_MISSING }, async () => {
    const body = JSON.stringify({ model: "tiny", max_tokens: 8, stream: true, messages: user("hi"), metadata: { user_id: "session-7" } });
    const out = await curl(["-N", "-H", "content-type: application/json", "-H", "x-api-key: unused", "-H", "anthropic-version: 2023-06-01", "-d", body, `${gw.url}/v1/messages`]);
    const blocks = out.split("\n\n");
    assert.equal(blocks.pop(), "", "the stream ends with a blank line");
    const events = blocks.map((block) => {
      const m = /^event: ([a-z_]+)\ndata: (.*)$/.exec(block);
      assert.ok(m !== null, `an event line then a data line: ${JSON.stringify(block)}`);
      const data = JSON.parse(m[2]!) as { type: string; delta?: { text?: string; stop_reason?: string }; usage?: { output_tokens: number } };
      assert.equal(data.type, m[1], "the event name is its data's type");
      return data;
    });
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 3), ["message_start", "content_block_start", "ping"]);
    assert.deepEqual(types.slice(-3), ["content_block_stop", "message_delta", "message_stop"]);
    const deltas = events.slice(3, -3);
    assert.ok(deltas.length > 0 && deltas.every((e) => e.type === "content_block_delta"));
    const end = events.at(-2)!;
    assert.equal(end.delta?.stop_reason, end.usage?.output_tokens === 8 ? "max_tokens" : "end_turn");
    assert.ok(end.usage!.output_tokens >= deltas.length);
  });

  it("leaves no engine slot busy after the requests", () => {
    assert.equal(totalActive(gw.fleet), 0);
  });
});

describe("failover and continuation under /v1/messages (fake remote upstreams)", () => {
  let fakes: FakeUpstream[] = [];
  let front: Front | undefined;
  afterEach(async () => {
    await front?.close();
    await Promise.all(fakes.map((f) => f.close()));
    front = undefined;
    fakes = [];
  });

  const drain = (op: "drain" | "resume", replica: string): Promise<Response> =>
    fetch(`${front!.url}/admin/${op}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica, wait_s: 0 }) });

  it("a replica that dies mid-answer is replaced and the same stream goes on, exactly", async () => {
    const bad = await startFakeUpstream({ mode: "die-mid-stream", afterPieces: 5, tokensPerChunk: 2 });
    const good = await startFakeUpstream({ tokensPerChunk: 3 });
    fakes = [bad, good];
    front = await frontOver(fakes);
    const messages = chatPrompt(300, 30);
    // A draining replica takes no new request but does take a resume: the first attempt goes to the bad one.
    await drain("drain", "m/1");
    const stream = clientFor(front.url).messages.stream({ model: "m", max_tokens: 100, messages: messages.map((m) => ({ role: "user" as const, content: m.content })) });
    let servedBy: { attempts: number; continuations: number } | undefined;
    stream.on("streamEvent", (e) => {
      if (e.type === "message_delta") servedBy = (e as unknown as { x_flotilla: typeof servedBy }).x_flotilla;
    });
    await bad.waitFor((s) => s.requests === 1, 5_000, "the bad replica to take the request");
    await drain("resume", "m/1");
    const final = await stream.finalMessage();
    const expected = expectedAnswer(messages, 100);
    assert.equal(textOf(final), expected.text);
    assert.equal(final.stop_reason, "end_turn");
    assert.equal(final.usage.output_tokens, expected.completionTokens);
    assert.deepEqual({ attempts: servedBy?.attempts, continuations: servedBy?.continuations }, { attempts: 2, continuations: 1 });
  });

  it("an answer no replica can finish ends its stream with an error event", async () => {
    fakes = [await startFakeUpstream({ mode: "die-mid-stream", afterPieces: 3 })];
    front = await frontOver(fakes);
    const pieces: string[] = [];
    const stream = clientFor(front.url).messages.stream({ model: "m", max_tokens: 100, messages: chatPrompt(301, 30).map((m) => ({ role: "user" as const, content: m.content })) });
    stream.on("text", (t) => pieces.push(t));
    const err = await refusal(stream.finalMessage());
    assert.ok(pieces.length > 0, "the answer had begun");
    assert.ok(err.type === "api_error" || err.type === "overloaded_error", `type ${err.type}: ${err.apiMessage}`);
  });
});

describe("tenants, limits, capacity and the ledger under /v1/messages", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;
  const keys: Record<string, string> = {};

  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { config: tinyConfig({ hardware: "h100" }) });
    for (const [name, limits] of Object.entries({ team: {}, limited: { requests_per_minute: 1 } })) {
      assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name, ...limits })).status, 201);
      keys[name] = (await admin(gw.url, "POST", "/admin/keys", { tenant: name })).json.key as string;
    }
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  const hello: Params = { model: "tiny", max_tokens: 6, temperature: 0, messages: [{ role: "user", content: "Hello" }] };

  it("takes the key as x-api-key or Authorization, and writes one ledger row per message, endpoint messages", async () => {
    const viaApiKey = await clientFor(gw.url, { apiKey: keys.team! }).messages.create(ask(hello));
    const viaBearer = await clientFor(gw.url, { apiKey: null, authToken: keys.team! }).messages.stream(ask(hello)).finalMessage();
    const usage = await admin(gw.url, "GET", "/admin/usage?tenant=team&group_by=endpoint");
    assert.equal(usage.status, 200);
    const rows = usage.json.data as { endpoint: string; requests: number; input_tokens: number; output_tokens: number }[];
    assert.deepEqual(rows.map((r) => r.endpoint), ["messages"]);
    assert.equal(rows[0]!.requests, 2);
    assert.equal(rows[0]!.input_tokens, promptTokens(viaApiKey.usage) + promptTokens(viaBearer.usage));
    assert.equal(rows[0]!.output_tokens, viaApiKey.usage.output_tokens + viaBearer.usage.output_tokens);
    const ledger = await gw.store.ledger({ tenantId: "team" });
    assert.deepEqual(ledger.map((r) => [r.endpoint, r.status]), [["messages", "ok"], ["messages", "ok"]]);
  });

  it("answers a bad key with 401 authentication_error", async () => {
    const err = await refusal(clientFor(gw.url, { apiKey: `flt-${"A".repeat(43)}` }).messages.create(ask(hello)));
    assert.equal(err.status, 401);
    assert.equal(err.type, "authentication_error");
  });

  it("answers a tenant over its limit with 429 rate_limit_error and Retry-After", async () => {
    const limited = clientFor(gw.url, { apiKey: keys.limited! });
    await limited.messages.create(ask(hello));
    const err = await refusal(limited.messages.create(ask(hello)));
    assert.equal(err.status, 429);
    assert.equal(err.type, "rate_limit_error");
    assert.match(err.apiMessage ?? "", /requests_per_minute/);
    assert.ok(Number(err.headers?.get("retry-after")) >= 1);
  });
});

describe("a full fleet under /v1/messages", () => {
  it("answers 529 overloaded_error with Retry-After once every slot and queue place is taken", async () => {
    const gw = await startGateway({ models: [{ name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 1, max_queue: 1, context: 2048 }] }] });
    const client = clientFor(gw.url);
    const busy = (): Promise<Anthropic.Message> => client.messages.create({ model: "tiny", max_tokens: 300, messages: [{ role: "user", content: "busy" }] });
    try {
      const first = busy();
      await eventually(() => totalActive(gw.fleet) === 1, "the first to run", 2_000);
      const second = busy();
      await eventually(async () => (await gateQueued(gw.url, "tiny")) === 1, "the second to queue");
      const err = await refusal(busy());
      assert.equal(err.status, 529);
      assert.equal(err.type, "overloaded_error");
      assert.ok(Number(err.headers?.get("retry-after")) >= 1);
      for (const m of await Promise.all([first, second])) assert.equal(m.type, "message");
      assert.equal(totalActive(gw.fleet), 0);
    } finally {
      await gw.close();
    }
  });
});
