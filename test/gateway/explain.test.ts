import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { post, startObserved, type ObservedGateway } from "../obs/harness.js";
import { tinyFleet } from "../helpers.js";

const CHAT = { model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 3 };

interface Explained {
  chosen: string | null;
  ready: string[];
  scores: { replica: string; total: number; by: Record<string, number> }[];
  plugins_us: Record<string, number>;
  decision_us: number;
}

describe("explainable routing", () => {
  let open: ObservedGateway;
  let guarded: ObservedGateway;
  before(async () => {
    open = await startObserved(tinyFleet({ count: 2 }), { logLevel: "debug" });
    guarded = await startObserved(tinyFleet({ count: 1 }), { adminToken: "s3cret" });
  });
  after(async () => {
    await open?.close();
    await guarded?.close();
  });

  it("x-flotilla-explain: 1 from the operator returns each candidate's scores, the choice and each plugin's time", async () => {
    const res = await post(open.url, "/v1/chat/completions", CHAT, { "x-flotilla-explain": "1" });
    assert.equal(res.status, 200, res.text);
    const decisions = JSON.parse(res.headers.get("x-flotilla-explain") ?? "null") as Explained[];
    assert.equal(decisions.length, 1);
    const [d] = decisions;
    assert.equal(d!.chosen, res.headers.get("x-flotilla-replica"));
    assert.deepEqual(d!.ready.sort(), ["tiny/0", "tiny/1"]);
    assert.deepEqual(d!.scores.map((s) => s.replica).sort(), ["tiny/0", "tiny/1"]);
    for (const s of d!.scores) assert.ok(s.total >= 0 && s.by["least-loaded"]! >= 0 && s.by["least-loaded"]! <= 1);
    assert.deepEqual(Object.keys(d!.plugins_us), ["filter:ready", "filter:context-fits", "filter:has-capacity", "scorer:least-loaded", "pick"]);
    assert.ok(d!.decision_us > 0);
  });

  it("streams carry the header too, and without the header nothing is added", async () => {
    const streamed = await post(open.url, "/v1/chat/completions", { ...CHAT, stream: true }, { "x-flotilla-explain": "1" });
    assert.equal(streamed.status, 200);
    assert.equal((JSON.parse(streamed.headers.get("x-flotilla-explain")!) as Explained[])[0]!.chosen, streamed.headers.get("x-flotilla-replica"));
    const plain = await post(open.url, "/v1/chat/completions", CHAT);
    assert.equal(plain.headers.get("x-flotilla-explain"), null);
  });

  it("refuses it to a client without the admin token (403) and a malformed value (400), before any work", async () => {
    const denied = await post(guarded.url, "/v1/chat/completions", CHAT, { "x-flotilla-explain": "1" });
    assert.equal(denied.status, 403);
    assert.deepEqual((JSON.parse(denied.text) as { error: { type: string; param: string } }).error.param, "x-flotilla-explain");
    const allowed = await post(guarded.url, "/v1/chat/completions", CHAT, { "x-flotilla-explain": "1", authorization: "Bearer s3cret" });
    assert.equal(allowed.status, 200, allowed.text);
    assert.ok(allowed.headers.get("x-flotilla-explain")?.startsWith("[{"));
    const malformed = await post(open.url, "/v1/chat/completions", CHAT, { "x-flotilla-explain": "yes" });
    assert.equal(malformed.status, 400);
    assert.match(malformed.text, /x-flotilla-explain must be \\"1\\"/);
  });

  it("every decision is a debug log line and each plugin's time a /metrics histogram", async () => {
    await post(open.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 2 });
    const routed = open.logs.filter((l) => l.msg === "routed");
    assert.ok(routed.length >= 1);
    assert.ok((routed.at(-1)!.decision as Explained).scores.length === 2);
    const metrics = await (await fetch(`${open.url}/metrics`)).text();
    for (const plugin of ["filter:ready", "scorer:least-loaded", "pick"]) {
      assert.match(metrics, new RegExp(`flotilla_router_plugin_duration_seconds_count\\{policy="least-loaded",plugin="${plugin}"\\} [1-9]`));
    }
  });

  it("below debug, one decision in 16 is timed into the histogram", async () => {
    const timed = async (): Promise<number> => {
      const metrics = await (await fetch(`${guarded.url}/metrics`, { headers: { authorization: "Bearer s3cret" } })).text();
      return Number(/flotilla_router_plugin_duration_seconds_count\{policy="least-loaded",plugin="pick"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    };
    const before = await timed();
    for (let i = 0; i < 16; i++) assert.equal((await post(guarded.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 1 })).status, 200);
    assert.equal((await timed()) - before, 1, "16 decisions, one timed");
  });
});
