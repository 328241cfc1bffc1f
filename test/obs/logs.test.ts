import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TINY_MODEL } from "../helpers.js";
import { post, startObserved, type ObservedGateway } from "./harness.js";

const SECRET_KEY = "sk-live-DO-NOT-LOG-0123456789";
const SECRET_PROMPT = "my private prompt PRIVATE-7731";

describe("structured logs", () => {
  let engine: ObservedGateway;
  let front: ObservedGateway;

  before(async () => {
    // A Flotilla serving the tiny model, and a front gateway using it as a remote engine.
    engine = await startObserved({ models: [{ name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 2, context: 512 }] }] }, { logLevel: "info" });
    front = await startObserved({ models: [{ name: "m", replicas: [{ engine: "openai", url: engine.url, upstream_model: "tiny", context: 512 }] }] }, { logLevel: "trace" });
  });
  after(async () => {
    await front.close();
    await engine.close();
  });

  it("carry the request id the client sees, across hops to remote engines, one JSON object a line", async () => {
    const r = await post(front.url, "/v1/chat/completions", { model: "m", messages: [{ role: "user", content: SECRET_PROMPT }], max_tokens: 6, stream: true }, { "x-request-id": "trace-42", authorization: `Bearer ${SECRET_KEY}` });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-request-id"), "trace-42");
    for (const line of [...front.rawLogs, ...engine.rawLogs]) assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), "one line per record");

    const frontLines = front.logs.filter((l) => l.reqId === "trace-42");
    const finished = frontLines.find((l) => l.msg === "request finished");
    assert.ok(finished !== undefined, "the front logs the finished request");
    assert.equal(finished.status, "ok");
    assert.equal(finished.replica, "m/0");
    assert.equal(finished.model, "m");
    assert.equal(finished.attempts, 1);
    assert.equal(typeof finished.ttft_ms, "number");
    assert.equal(typeof finished.duration_ms, "number");
    assert.ok(engine.logs.some((l) => l.reqId === "trace-42" && l.msg === "request finished"), "the engine logs the same id");

    // Without an id from the client, the gateway makes one, returns it, and the engine gets it too.
    const r2 = await post(front.url, "/v1/completions", { model: "m", prompt: "hi", max_tokens: 4 });
    const id = r2.headers.get("x-request-id");
    assert.match(id ?? "", /^[0-9a-f-]{36}$/);
    assert.ok(front.logs.some((l) => l.reqId === id && l.msg === "request finished"));
    assert.ok(engine.logs.some((l) => l.reqId === id && l.msg === "request finished"));
  });

  it("never contain keys or prompts, even at trace level", async () => {
    await post(front.url, "/v1/completions", { model: "m", prompt: SECRET_PROMPT, max_tokens: 4 }, { authorization: `Bearer ${SECRET_KEY}` });
    // A bad request and a failed one too: error paths are where bodies tend to leak.
    await post(front.url, "/v1/completions", { model: "m", prompt: SECRET_PROMPT, max_tokens: -1 }, { authorization: `Bearer ${SECRET_KEY}` });
    await post(front.url, "/v1/completions", { model: "nope", prompt: SECRET_PROMPT }, { authorization: `Bearer ${SECRET_KEY}` });
    // Should anything log request headers, the credential is censored.
    front.app.log.info({ headers: { authorization: `Bearer ${SECRET_KEY}`, "x-api-key": SECRET_KEY } }, "headers");
    const all = [...front.rawLogs, ...engine.rawLogs].join("");
    assert.ok(front.rawLogs.length > 10);
    assert.ok(!all.includes(SECRET_KEY), "no key in the logs");
    assert.ok(!all.includes("PRIVATE-7731"), "no prompt in the logs");
    assert.ok(front.logs.some((l) => l.msg === "headers" && JSON.stringify(l).includes("[redacted]")));
  });

  it("log prompts only when switched on", async () => {
    const open = await startObserved({ models: [{ name: "m", replicas: [{ engine: "openai", url: engine.url, upstream_model: "tiny", context: 512 }] }] }, { logLevel: "info", observability: { logPrompts: true } });
    try {
      await post(open.url, "/v1/completions", { model: "m", prompt: SECRET_PROMPT, max_tokens: 4 }, { "x-request-id": "with-prompt", authorization: `Bearer ${SECRET_KEY}` });
      const line = open.logs.find((l) => l.msg === "prompt");
      assert.equal(line?.reqId, "with-prompt");
      assert.deepEqual(line?.prompt, { kind: "text", text: SECRET_PROMPT });
      assert.ok(!open.rawLogs.join("").includes(SECRET_KEY), "keys stay out even then");
    } finally {
      await open.close();
    }
  });
});
