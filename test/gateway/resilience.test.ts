import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { createGatewayWithShutdown } from "../../src/gateway/server.js";
import { eventually, startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";
import { CLI } from "../paths.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** An upstream that says it is healthy and then misbehaves on real requests. */
async function badUpstream(onGenerate: Handler): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    req.resume();
    onGenerate(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const sse = (text: string): string => `data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: null }] })}\n\n`;

async function complete(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown>; ms: number; replica: string | null }> {
  const t = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ model: "m", prompt: "hello", max_tokens: 8, ...body }) });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, json, ms: performance.now() - t, replica: res.headers.get("x-flotilla-replica") };
}

async function replicaStates(url: string): Promise<Record<string, string>> {
  const { data } = (await (await fetch(`${url}/admin/replicas`)).json()) as { data: { id: string; state: string }[] };
  return Object.fromEntries(data.map((r) => [r.id, r.state]));
}

describe("misbehaving replicas are handled within their timeouts", () => {
  let good: RunningGateway;
  const bad: Server[] = [];
  before(async () => {
    good = await startGateway(tinyFleet({ name: "tiny", context: 1024 }));
  });
  after(async () => {
    await good.close();
    for (const s of bad) {
      s.closeAllConnections();
      s.close();
    }
  });

  async function frontWith(handler: Handler, timeoutMs = 400): Promise<RunningGateway> {
    const b = await badUpstream(handler);
    bad.push(b.server);
    return startGateway({
      models: [
        {
          name: "m",
          replicas: [
            { engine: "openai", url: b.url, upstream_model: "tiny", timeout_ms: timeoutMs },
            { engine: "openai", url: good.url, upstream_model: "tiny", timeout_ms: 10_000 },
          ],
        },
      ],
    });
  }

  /**
   * Sends requests until the bad replica has failed three times; every one
   * must succeed well before an upstream's default timeout (60 s): the bound
   * shows failover came after the bad replica's own short timeout, with room
   * for the good replica's answer on a loaded machine.
   */
  async function untilEjected(front: RunningGateway, hits: () => number, maxMs: number): Promise<void> {
    for (let i = 0; i < 60 && hits() < 3; i++) {
      const r = await complete(front.url, {});
      assert.equal(r.status, 200);
      assert.equal(r.replica, "m/1");
      assert.ok(r.ms < maxMs, `answered in ${r.ms.toFixed(0)} ms`);
    }
    assert.equal(hits(), 3);
    assert.equal((await replicaStates(front.url))["m/0"], "ejected", "three failures in a row eject it");
    for (let i = 0; i < 5; i++) assert.equal((await complete(front.url, {})).status, 200);
    assert.equal(hits(), 3, "an ejected replica gets no traffic");
    assert.equal(totalActive(front.fleet), 0);
  }

  it("one that accepts connections but never answers: failover after its timeout, then ejection", async () => {
    let hits = 0;
    const front = await frontWith(() => void hits++);
    try {
      await untilEjected(front, () => hits, 5_000);
    } finally {
      await front.close();
    }
  });

  it("one that returns 500s: every request still succeeds, and the replica is ejected", async () => {
    let hits = 0;
    const front = await frontWith((_req, res) => {
      hits++;
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom"}}');
    });
    try {
      await untilEjected(front, () => hits, 5_000);
    } finally {
      await front.close();
    }
  });

  it("an ejected replica still serves when it is the only one left (panic mode), rather than a 503", async () => {
    let hits = 0;
    const flaky = await badUpstream((_req, res) => {
      // Three failures (a transient fault), then healthy again.
      if (++hits <= 3) return void res.writeHead(500).end('{"error":{"message":"transient"}}');
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "back", finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`);
    });
    bad.push(flaky.server);
    const front = await startGateway({ models: [{ name: "m", replicas: [{ engine: "openai", url: flaky.url, upstream_model: "tiny" }] }] });
    try {
      // One request spends its three attempts on the only replica, with backoff between them, then fails.
      assert.equal((await complete(front.url, {})).status, 502);
      assert.equal(hits, 3);
      assert.equal((await replicaStates(front.url))["m/0"], "ejected");
      const r = await complete(front.url, {});
      assert.equal(r.status, 200);
      assert.equal((r.json.choices as { text: string }[])[0]!.text, "back");
      assert.equal((await replicaStates(front.url))["m/0"], "healthy", "its success closed the breaker");
    } finally {
      await front.close();
    }
  });

  it("one that stalls mid-stream: the answer is resumed on the other replica", async () => {
    let stalling = false;
    const front = await frontWith((_req, res) => {
      stalling = true;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(sse("Once"));
      res.write(sse(" upon")); // ...and nothing more, ever
    });
    try {
      // Route the first request to the staller: drain the good one for a moment.
      await fetch(`${front.url}/admin/drain`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: "m/1", wait_s: 0 }) });
      const pending = fetch(`${front.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "hello", max_tokens: 12, stream: true, stream_options: { include_usage: true } }) });
      await eventually(() => stalling, "the staller to take the request", 5_000);
      await fetch(`${front.url}/admin/resume`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: "m/1" }) });
      const res = await pending;
      const text = await res.text();
      const pieces = [...text.matchAll(/"text":("(?:[^"\\]|\\.)*")/g)].map((m) => JSON.parse(m[1]!) as string);
      assert.ok(pieces.join("").startsWith("Once upon"), "what was streamed stays streamed");
      assert.match(text, /"finish_reason":"length"/);
      assert.match(text, /"continuations":1/);
      assert.doesNotMatch(text, /"error"/);
      assert.equal(totalActive(front.fleet), 0);
    } finally {
      await front.close();
    }
  });

  it("one that is slow but within its timeout: served, not ejected", async () => {
    const front = await frontWith((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let n = 0;
      const tick = setInterval(() => {
        if (++n <= 3) return void res.write(sse(` t${n}`));
        clearInterval(tick);
        res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "", finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 3 } })}\n\ndata: [DONE]\n\n`);
      }, 100);
    }, 2_000);
    try {
      await fetch(`${front.url}/admin/drain`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: "m/1", wait_s: 0 }) });
      const r = await complete(front.url, {});
      assert.equal(r.status, 200);
      assert.equal((r.json.choices as { text: string }[])[0]!.text, " t1 t2 t3");
      assert.equal((await replicaStates(front.url))["m/0"], "healthy");
    } finally {
      await front.close();
    }
  });

  it("one that is much slower than eject_slow_first_token_ms: still served, then ejected as an outlier", async () => {
    const slow = await badUpstream((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "late", finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`);
      }, 150);
    });
    bad.push(slow.server);
    const fleet = buildFleet(
      parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: slow.url, upstream_model: "tiny" }, { engine: "openai", url: good.url, upstream_model: "tiny" }] }] }),
      { baseDir: ".", env: {} },
    );
    await fleet.start(() => undefined);
    const { app } = createGatewayWithShutdown({ fleet, logLevel: "silent", slowFirstTokenMs: 50 });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      await fetch(`${url}/admin/drain`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: "m/1", wait_s: 0 }) });
      for (let i = 0; i < 3; i++) {
        const r = await complete(url, {});
        assert.equal(r.status, 200, "a slow answer is still an answer");
        assert.equal((r.json.choices as { text: string }[])[0]!.text, "late");
      }
      assert.equal((await replicaStates(url))["m/0"], "ejected", "three slow first tokens in a row");
    } finally {
      await app.close();
    }
  });

  it("a request past its deadline gets 504 and frees its slot", async () => {
    const front = await frontWith(() => undefined, 60_000);
    try {
      await fetch(`${front.url}/admin/drain`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: "m/1", wait_s: 0 }) });
      const r = await complete(front.url, {}, { "x-flotilla-timeout-ms": "300" });
      assert.equal(r.status, 504);
      assert.match((r.json.error as { message: string }).message, /300 ms deadline/);
      assert.ok(r.ms < 1_000);
      assert.equal(totalActive(front.fleet), 0);
      const bad = await complete(front.url, {}, { "x-flotilla-timeout-ms": "soon" });
      assert.equal(bad.status, 400);
    } finally {
      await front.close();
    }
  });
});

describe("drain", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway(tinyFleet({ count: 2, parallel: 2, context: 4096 }));
  });
  after(() => gw.close());

  it("stops new traffic, lets in-flight work finish, then reports drained", async () => {
    // A long request lands on some replica; drain exactly that one.
    const long = fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: "long", max_tokens: 1500 }) });
    await eventually(() => totalActive(gw.fleet) === 1, "the long request to start", 2_000);
    const busy = gw.fleet.replicas().find((r) => r.engine.load().active === 1)!;
    const drain = fetch(`${gw.url}/admin/drain`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: busy.id, wait_s: 30 }) });
    await eventually(() => busy.health.draining, "the drain to begin", 1_000);
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: "x", max_tokens: 2 }) });
      assert.notEqual(r.headers.get("x-flotilla-replica"), busy.id, "no new work for a draining replica");
      await r.arrayBuffer();
    }
    const drained = (await (await drain).json()) as { state: string; active: number };
    assert.equal((await long).status, 200, "the in-flight request finished normally");
    assert.deepEqual({ state: drained.state, active: drained.active }, { state: "drained", active: 0 });
  });

  it("is driven by flotilla fleet drain/list/resume", async () => {
    const cli = (args: string[]): Promise<{ code: number | null; out: string; err: string }> =>
      new Promise((done) => {
        const child = spawn(process.execPath, [...CLI, "fleet", ...args, "--url", gw.url]);
        let out = "";
        let err = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (err += d.toString()));
        child.on("close", (code) => done({ code, out, err }));
      });
    assert.deepEqual(await cli(["drain", "tiny/1"]), { code: 0, out: "tiny/1: drained\n", err: "" });
    const list = await cli(["list"]);
    assert.match(list.out, /tiny\/0\s+tiny\s+local\s+(healthy|draining)/);
    assert.match(list.out, /tiny\/1\s+tiny\s+local\s+draining/);
    assert.equal((await cli(["resume", "tiny/1"])).out, "tiny/1: healthy\n");
    assert.equal((await cli(["resume", "tiny/0"])).out, "tiny/0: healthy\n");
    const unknown = await cli(["drain", "tiny/9"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /no replica "tiny\/9"; replicas: tiny\/0, tiny\/1/);
  });
});

describe("graceful shutdown", () => {
  it("refuses new requests with 503 and lets in-flight streams finish", async () => {
    const fleet = buildFleet(parseFleetConfig(tinyFleet({ parallel: 2, context: 4096 })), { baseDir: ".", env: {} });
    await fleet.start(() => undefined);
    const { app, shutdown } = createGatewayWithShutdown({ fleet, logLevel: "silent" });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", prompt: "story", max_tokens: 1200, stream: true }) });
    const body = res.text();
    await eventually(() => fleet.inFlight() === 1, "the stream to run", 2_000);
    const stopped = shutdown(30_000);
    const refused: Response | Error = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", connection: "close" }, body: JSON.stringify({ model: "tiny", prompt: "x" }) }).catch((e: unknown) => e as Error);
    // A refused connection is as good as a 503: either way no new work starts.
    if (!(refused instanceof Error)) {
      assert.equal(refused.status, 503);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "shutting_down");
    }
    const text = await body;
    assert.match(text, /"finish_reason":"length"/, "the in-flight stream ran to its end");
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    await stopped;
  });
});

