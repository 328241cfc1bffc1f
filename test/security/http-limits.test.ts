/**
 * Clients that send too much, or too slowly: the answer must reach them
 * (413 to a client still writing, 408 to one that stalls), the socket must
 * be freed, and a long streamed answer must not be mistaken for a slow
 * request.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import OpenAI from "openai";
import { eventually } from "../helpers.js";
import { securedGateway, type SecuredGateway } from "./harness.js";

const LIMIT = 64 * 1024;
// Large enough that the client is still writing when the answer comes: at 8 MiB the old server's close was an EPIPE.
const BIG = 8 * 1024 * 1024;

describe("a body over the limit", () => {
  let g: SecuredGateway;
  before(async () => {
    g = await securedGateway("open", { bodyLimit: LIMIT });
  });
  after(() => g.close());

  it("Node's http client, writing the whole body first, reads the 413 and never sees a broken pipe", async () => {
    const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(BIG) }] });
    const { status, text, error } = await new Promise<{ status: number; text: string; error: string | undefined }>((resolve) => {
      let status = 0;
      let text = "";
      let error: string | undefined;
      const req = httpRequest(`${g.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        status = res.statusCode ?? 0;
        res.setEncoding("utf8").on("data", (d: string) => (text += d));
      });
      // An EPIPE may come after the answer: wait for the request's whole life to end.
      req.on("error", (e) => (error = e.message));
      req.on("close", () => resolve({ status, text, error }));
      req.end(body);
    });
    assert.equal(error, undefined);
    assert.equal(status, 413);
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, "body_too_large");
    assert.equal(g.upstream.generations, 0);
  });

  it("the official openai SDK gets an APIError with status 413, not a connection error", async () => {
    const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const err = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x".repeat(BIG) }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof OpenAI.APIError, `expected an APIError, got ${String(err)}`);
    assert.equal(err.status, 413);
  });

  it("curl with Expect: 100-continue gets the 413 without sending the body", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flotilla-big-"));
    try {
      const file = join(dir, "body.json");
      writeFileSync(file, JSON.stringify({ model: "m", prompt: "x".repeat(BIG) }));
      const { stdout } = await promisify(execFile)("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-H", "content-type: application/json", "-H", "Expect: 100-continue", "--data-binary", `@${file}`, `${g.url}/v1/completions`]);
      const [code, uploaded] = stdout.split(" ");
      assert.equal(code, "413");
      assert.equal(uploaded, "0", `curl uploaded ${uploaded} bytes of a refused body`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Opens a connection, sends headers promising a body and part of it, then stalls. */
function stall(port: number): { socket: Socket; answer: Promise<string> } {
  const socket = connect(port, "127.0.0.1");
  const answer = new Promise<string>((resolve) => {
    let text = "";
    socket.on("data", (d) => (text += d.toString()));
    socket.on("close", () => resolve(text));
    socket.on("error", () => {});
  });
  socket.write('POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model": "m", ');
  return { socket, answer };
}

describe("a client that stalls", () => {
  let g: SecuredGateway;
  before(async () => {
    g = await securedGateway("open", { bodyTimeoutMs: 300 });
  });
  after(() => g.close());

  it("gets 408 and its socket is freed; 30 of them hold nothing", async () => {
    const stalled = Array.from({ length: 30 }, () => stall(g.port));
    const answers = await Promise.all(stalled.map((s) => s.answer));
    for (const a of answers) {
      assert.match(a, /^HTTP\/1\.1 408 /);
      assert.match(a, /"code":"request_timeout"/);
    }
    const connections = (): Promise<number> => new Promise((r) => g.gateway.app.server.getConnections((_e, n) => r(n)));
    let open = -1;
    await eventually(() => {
      void connections().then((n) => (open = n));
      return open === 0;
    }, "stalled connections to close", 5_000);
    assert.equal(g.upstream.generations, 0);
  });
});

describe("a long streamed answer", () => {
  it("is not cut by the request timeout: only receiving the request is timed", async () => {
    // An upstream that takes ~1.2 s to stream, four times the gateway's body timeout.
    const upstream = createHttpServer((req, res) => {
      if (req.method === "GET") return void res.end("ok");
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      let n = 0;
      const tick = setInterval(() => {
        if (++n <= 6) return void res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: `t${n} `, finish_reason: null }] })}\n\n`);
        clearInterval(tick);
        res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "", finish_reason: "stop" }], usage: { prompt_tokens: 2, completion_tokens: 6 } })}\n\ndata: [DONE]\n\n`);
      }, 200);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const g = await securedGateway("open", { bodyTimeoutMs: 300 }, `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    try {
      const res = await fetch(`${g.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m", prompt: "hi", stream: true }),
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /t1 [\s\S]*t6 [\s\S]*"finish_reason":"stop"[\s\S]*data: \[DONE\]/);
    } finally {
      await g.close();
      upstream.close();
    }
  });
});
