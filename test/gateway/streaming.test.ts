import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { eventually, gateQueued, startGateway, tinyFleet, TINY_MODEL, totalActive, type RunningGateway } from "../helpers.js";

function curl(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("curl", ["-sS", "-N", ...args]);
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

describe("raw SSE and disconnects", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway(tinyFleet({ parallel: 2, context: 2048 }));
  });
  after(() => gw.close());

  it("streams OpenAI-shaped events to curl -N, ending in [DONE]", async () => {
    const body = JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 8, stream: true, stream_options: { include_usage: true } });
    const { code, out } = await curl(["-H", "content-type: application/json", "-d", body, `${gw.url}/v1/chat/completions`]);
    assert.equal(code, 0);
    const events = out.split("\n\n").filter((e) => e.length > 0);
    assert.ok(events.every((e) => e.startsWith("data: ")), "every event is a data line");
    assert.equal(events.at(-1), "data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string; choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage?: { completion_tokens: number } });
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason != null);
    assert.equal(finishes.length, 1, "one chunk carries the finish reason");
    const usage = chunks.at(-1)!;
    assert.deepEqual(usage.choices, []);
    const textChunks = chunks.filter((c) => (c.choices[0]?.delta.content ?? "").length > 0).length;
    assert.ok(usage.usage!.completion_tokens >= textChunks && usage.usage!.completion_tokens <= 8);
  });

  it("frees the engine slot at once when the client disconnects mid-stream", async () => {
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: "Tell me everything.", max_tokens: 1500, stream: true }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await reader.read(); // the first text is flowing
    assert.equal(totalActive(gw.fleet), 1, "the request holds one slot while it streams");
    controller.abort();
    await eventually(() => totalActive(gw.fleet) === 0, "the slot to be released", 2_000);
  });

  it("frees the slot when a non-streaming client gives up", async () => {
    const controller = new AbortController();
    const pending = fetch(`${gw.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: "Go on.", max_tokens: 1500 }),
      signal: controller.signal,
    }).catch((err: unknown) => err);
    await eventually(() => totalActive(gw.fleet) === 1, "the request to start", 2_000);
    controller.abort();
    assert.ok((await pending) instanceof Error);
    await eventually(() => totalActive(gw.fleet) === 0, "the slot to be released", 2_000);
  });

  it("still serves full requests afterwards", async () => {
    const { code, out } = await curl(["-H", "content-type: application/json", "-d", JSON.stringify({ model: "tiny", prompt: "x", max_tokens: 3 }), `${gw.url}/v1/completions`]);
    assert.equal(code, 0);
    assert.equal((JSON.parse(out) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
  });
});

describe("several replicas of one model", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway(tinyFleet({ count: 2, parallel: 1 }));
  });
  after(() => gw.close());

  it("share concurrent load, least-loaded first", async () => {
    const one = (): Promise<string> =>
      fetch(`${gw.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", prompt: "share", max_tokens: 40 }),
      }).then(async (res) => {
        assert.equal(res.status, 200);
        await res.arrayBuffer();
        return res.headers.get("x-flotilla-replica") ?? "";
      });
    const replicas = await Promise.all([one(), one(), one(), one()]);
    const counts = new Map<string, number>();
    for (const r of replicas) counts.set(r, (counts.get(r) ?? 0) + 1);
    assert.deepEqual([...counts.keys()].sort(), ["tiny/0", "tiny/1"]);
    assert.deepEqual([...counts.values()], [2, 2], "each replica took half");
    assert.equal(totalActive(gw.fleet), 0);
  });
});

describe("backpressure", () => {
  it("answers 429 with Retry-After once every slot and queue place is taken, and serves the rest", async () => {
    const gw = await startGateway({ models: [{ name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 1, max_queue: 1, context: 2048 }] }] });
    try {
      const send = (): Promise<Response> =>
        fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: "busy", max_tokens: 300 }) });
      const first = send();
      await eventually(() => totalActive(gw.fleet) === 1, "the first to run", 2_000);
      const second = send();
      // It waits at the gateway's fair-share queue, which has the replica's one queue place.
      await eventually(async () => (await gateQueued(gw.url, "tiny")) === 1, "the second to queue");
      const third = await send();
      assert.equal(third.status, 429);
      assert.ok(Number(third.headers.get("retry-after")) >= 1);
      assert.equal(((await third.json()) as { error: { code: string } }).error.code, "overloaded");
      assert.deepEqual([(await first).status, (await second).status], [200, 200]);
      assert.equal(totalActive(gw.fleet), 0);
    } finally {
      await gw.close();
    }
  });
});
