import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { eventually, startGateway, tinyFleet, totalActive } from "../helpers.js";
import { frontedSuite } from "../openai-suite.js";

/** Flotilla B fronts Flotilla A through the `openai` engine: a real server on each side. */
describe("the openai engine against a second Flotilla", () => {
  const s = frontedSuite();

  it("returns what the upstream returns, under its own model name", async () => {
    const ask = { messages: [{ role: "user" as const, content: "Relay this." }], max_tokens: 16, temperature: 0 };
    const a = await s.direct.chat.completions.create({ model: "tiny", ...ask });
    const b = await s.viaFront.chat.completions.create({ model: "remote-tiny", ...ask });
    assert.equal(b.model, "remote-tiny");
    assert.equal(b.choices[0]!.message.content, a.choices[0]!.message.content);
    assert.equal(b.usage?.prompt_tokens, a.usage?.prompt_tokens);
    assert.equal(b.usage?.completion_tokens, a.usage?.completion_tokens);
  });

  it("asks the upstream for logprobs and passes them on, chat and completions", async () => {
    const ask = { messages: [{ role: "user" as const, content: "Score this." }], max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 };
    const a = await s.direct.chat.completions.create({ model: "tiny", ...ask });
    const b = await s.viaFront.chat.completions.create({ model: "remote-tiny", ...ask });
    const strip = (c: typeof a) => c.choices[0]!.logprobs!.content!.map((l) => [l.token, l.logprob, l.top_logprobs.map((t) => t.token)]);
    assert.equal(strip(b).length, b.usage?.completion_tokens);
    assert.deepEqual(strip(b), strip(a));
    const text = { prompt: "Score me", max_tokens: 6, temperature: 0, logprobs: 1 };
    const c = await s.direct.completions.create({ model: "tiny", ...text });
    const d = await s.viaFront.completions.create({ model: "remote-tiny", ...text });
    assert.deepEqual(d.choices[0]!.logprobs!.token_logprobs, c.choices[0]!.logprobs!.token_logprobs);
    assert.equal(d.choices[0]!.logprobs!.tokens!.length, d.usage?.completion_tokens);
  });

  it("applies OpenAI's penalties locally and passes them upstream", async () => {
    const ask = { messages: [{ role: "user" as const, content: "Say it again and again." }], max_tokens: 32, temperature: 0 };
    const plain = await s.direct.chat.completions.create({ model: "tiny", ...ask });
    const penalised = { ...ask, frequency_penalty: 2, presence_penalty: 2 };
    const a = await s.direct.chat.completions.create({ model: "tiny", ...penalised });
    const b = await s.viaFront.chat.completions.create({ model: "remote-tiny", ...penalised });
    assert.notEqual(a.choices[0]!.message.content, plain.choices[0]!.message.content, "the penalties change the answer");
    assert.equal(b.choices[0]!.message.content, a.choices[0]!.message.content, "the front's upstream got them");
  });

  it("streams completions through, token for token", async () => {
    const ask = { prompt: "Stream me", max_tokens: 20, temperature: 0 };
    const a = await s.direct.completions.create({ model: "tiny", ...ask });
    const stream = await s.viaFront.completions.create({ model: "remote-tiny", ...ask, stream: true });
    let text = "";
    let chunks = 0;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? "";
      chunks++;
    }
    assert.equal(text, a.choices[0]!.text);
    assert.ok(chunks > 3);
  });

  it("passes the upstream's context error on as 400 context_length_exceeded", async () => {
    const res = await fetch(`${s.front.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "remote-tiny", prompt: "word ".repeat(600), max_tokens: 4 }),
    });
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(res.status, 400);
    assert.equal(body.error.code, "context_length_exceeded");
    assert.equal(totalActive(s.front.fleet), 0);
  });

  it("cancels the upstream's work when the client disconnects mid-stream", async () => {
    const controller = new AbortController();
    const res = await fetch(`${s.front.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "remote-tiny", prompt: "Go on and on", max_tokens: 480, stream: true }),
      signal: controller.signal,
    });
    await res.body!.getReader().read();
    assert.equal(totalActive(s.upstream.fleet), 1, "the upstream is generating");
    controller.abort();
    await eventually(() => totalActive(s.front.fleet) === 0 && totalActive(s.upstream.fleet) === 0, "both slots to be free", 2_000);
  });

  it("sends the request id upstream", async () => {
    const res = await fetch(`${s.front.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace-me-42" },
      body: JSON.stringify({ model: "remote-tiny", prompt: "id", max_tokens: 2 }),
    });
    assert.equal(res.headers.get("x-request-id"), "trace-me-42");
    assert.equal(((await res.json()) as { id: string }).id, "cmpl-trace-me-42");
  });
});

describe("the openai engine when the upstream misbehaves", () => {
  let bad: Server;
  let badUrl: string;
  let mode: "500" | "truncated" = "500";
  before(async () => {
    bad = createServer((req, res) => {
      if (req.url === "/health") return void res.end("ok");
      if (mode === "500") {
        res.writeHead(500, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ error: { message: "CUDA error: an illegal memory access" } }));
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "partial", finish_reason: null }] })}\n\n`);
    });
    await new Promise<void>((r) => bad.listen(0, "127.0.0.1", r));
    badUrl = `http://127.0.0.1:${(bad.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => bad.close(() => r())));

  it("maps an upstream 500 to 502 with the upstream's message, before any text", async () => {
    mode = "500";
    const gw = await startGateway({ models: [{ name: "m", replicas: [{ engine: "openai", url: badUrl }] }] });
    try {
      const res = await fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "x" }) });
      const body = (await res.json()) as { error: { message: string; type: string } };
      assert.equal(res.status, 502);
      assert.match(body.error.message, /illegal memory access/);
      assert.equal(totalActive(gw.fleet), 0);
    } finally {
      await gw.close();
    }
  });

  it("ends a stream the upstream cut short with an error event, not a hang", async () => {
    mode = "truncated";
    const gw = await startGateway({ models: [{ name: "m", replicas: [{ engine: "openai", url: badUrl }] }] });
    try {
      const res = await fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "x", stream: true }) });
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.match(text, /"text":"partial"/);
      assert.match(text, /closed the stream before it finished/);
      assert.ok(text.endsWith("data: [DONE]\n\n"));
      assert.equal(totalActive(gw.fleet), 0);
    } finally {
      await gw.close();
    }
  });
});

describe("failover before the first token", () => {
  it("moves a request to another replica when its upstream has died", async () => {
    const [a, b] = await Promise.all([startGateway(tinyFleet()), startGateway(tinyFleet())]);
    const front = await startGateway({
      models: [{ name: "m", replicas: [{ engine: "openai", url: a.url, upstream_model: "tiny" }, { engine: "openai", url: b.url, upstream_model: "tiny" }] }],
    });
    try {
      assert.ok(front.fleet.replicas().every((r) => r.engine.isReady()));
      await a.close(); // replica m/0 still looks ready until a request finds it dead
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${front.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "x", max_tokens: 2 }) });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-flotilla-replica"), "m/1");
        await res.arrayBuffer();
      }
      await b.close();
      const res = await fetch(`${front.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "x", max_tokens: 2 }) });
      assert.equal(res.status, 503, "with every upstream gone it says unavailable, at once");
      assert.ok(Number(res.headers.get("retry-after")) > 0);
      assert.equal(totalActive(front.fleet), 0);
    } finally {
      await front.close();
    }
  });
});

describe("the openai engine against a strict server", () => {
  it("asks again without vLLM's extensions when the server refuses them by name, and stops sending them", async () => {
    const bodies: Record<string, unknown>[] = [];
    const strict: Server = createServer((req, res) => {
      let raw = "";
      req.on("data", (d: Buffer) => (raw += d.toString()));
      req.on("end", () => {
        if (req.url === "/health") return void res.end("ok");
        if (req.method === "GET") return void res.writeHead(404).end();
        const body = JSON.parse(raw) as Record<string, unknown>;
        bodies.push(body);
        // OpenAI's own answer to a field it does not know.
        if ("return_token_ids" in body || JSON.stringify(body.stream_options).includes("continuous_usage_stats")) {
          res.writeHead(400, { "content-type": "application/json" });
          return void res.end(JSON.stringify({ error: { message: "Unrecognized request argument supplied: return_token_ids", type: "invalid_request_error" } }));
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "fine", finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`);
      });
    });
    await new Promise<void>((r) => strict.listen(0, "127.0.0.1", r));
    const gw = await startGateway({ models: [{ name: "m", replicas: [{ engine: "openai", url: `http://127.0.0.1:${(strict.address() as AddressInfo).port}`, upstream_model: "gpt" }] }] });
    try {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "hi" }) });
        assert.equal(res.status, 200);
        assert.equal(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text, "fine");
      }
      assert.equal(bodies.length, 3, "one refusal, then one request each");
      assert.ok(!("return_token_ids" in bodies[2]!), "the second request no longer asks");
    } finally {
      await gw.close();
      strict.close();
    }
  });
});
