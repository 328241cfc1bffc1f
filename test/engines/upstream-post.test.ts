import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Pool } from "undici";
import { postStreaming, type Post } from "../../src/engines/upstream-post.js";

/**
 * The engine's upstream call, against a real HTTP server whose answer each
 * test scripts by path: every way a POST can end reaches the caller once.
 */
describe("postStreaming", () => {
  let server: Server;
  let pool: Pool;
  /** Answers still open (the stalled ones), and whether each one's client went away. */
  const open: { res: ServerResponse; closed: Promise<unknown> }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      const path = req.url ?? "/";
      if (path === "/stream") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: one\n\n");
        setImmediate(() => res.end("data: two\n\n"));
      } else if (path === "/refused") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(`{"error":{"message":"${"x".repeat(100_000)}"}}`);
      } else {
        // Stalls after its first bytes: only the caller can end it.
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: first\n\n");
        open.push({ res, closed: once(res, "close") });
      }
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });

  after(async () => {
    await pool.close();
    server.closeAllConnections();
    server.close();
  });

  const post = (path: string, signal = new AbortController().signal): Post => ({ path, headers: { "content-type": "application/json" }, body: "{}", signal });

  it("hands a 200 answer's bytes over in order, then resolves", async () => {
    let text = "";
    const outcome = await postStreaming(pool, post("/stream"), (b) => (text += b.toString("utf8")));
    assert.deepEqual(outcome, { statusCode: 200 });
    assert.equal(text, "data: one\n\ndata: two\n\n");
  });

  it("gives a refusal's status and body, the body cut at 64 KB, and hands over none of it", async () => {
    let handed = 0;
    const outcome = await postStreaming(pool, post("/refused"), () => handed++);
    assert.equal(outcome.statusCode, 400);
    assert.ok("text" in outcome && outcome.text.startsWith('{"error":{"message":"xxx'));
    assert.equal("text" in outcome && outcome.text.length, 64 * 1024);
    assert.equal(handed, 0);
  });

  it("rejects with what the reader threw, and drops the connection", async () => {
    const bad = new SyntaxError("not JSON");
    await assert.rejects(postStreaming(pool, post("/stall"), () => {
      throw bad;
    }), (err) => err === bad);
    await open.at(-1)!.closed;
  });

  it("rejects with the signal's reason when it aborts mid-answer, and drops the connection", async () => {
    const stop = new AbortController();
    const reason = new Error("client went away");
    const pending = postStreaming(pool, post("/stall", stop.signal), () => stop.abort(reason));
    await assert.rejects(pending, (err) => err === reason);
    await open.at(-1)!.closed;
  });

  it("rejects at once when the signal has already aborted", async () => {
    const stop = new AbortController();
    stop.abort(new Error("already gone"));
    await assert.rejects(postStreaming(pool, post("/stream", stop.signal), () => undefined), /already gone/);
  });

  it("rejects with undici's connection error when nothing listens", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, "close");
    const nowhere = new Pool(`http://127.0.0.1:${port}`);
    try {
      await assert.rejects(postStreaming(nowhere, post("/stream"), () => undefined), (err: NodeJS.ErrnoException) => err.code === "ECONNREFUSED");
    } finally {
      await nowhere.close();
    }
  });
});
