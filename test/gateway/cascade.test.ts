import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { buildCascades } from "../../src/fleet/build.js";
import { ConfigError, parseFleetConfig } from "../../src/fleet/config.js";
import { sqliteBackend, startTenantGateway, TINY_MODEL, type TenantGateway } from "../metering/harness.js";

/**
 * A model alias over two real llama.cpp models: "auto" answers with the
 * light model unless the request looks hard. Both models are the same tiny
 * file on different (priced) hardware, so which one served shows in the
 * response's model, its x_flotilla and the ledger.
 */
const fleetFile = {
  models: [
    { name: "small", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 2, context: 1024, hardware: "l40s" }] },
    { name: "big", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 2, context: 1024, hardware: "h100" }] },
  ],
  cascades: [{ name: "auto", light: "small", heavy: "big", escalate: { reasoning_effort: ["high"], min_prompt_tokens: 200, keywords: ["prove", "step by step"] } }],
};

type Extended = OpenAI.Chat.Completions.ChatCompletion & { x_flotilla: Record<string, string | number> };

describe("model cascades: light and heavy paths behind one alias", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;
  let client: OpenAI;

  before(async () => {
    db = await sqliteBackend.fresh();
    const config = parseFleetConfig(fleetFile);
    gw = await startTenantGateway(db.url, { config: fleetFile, gateway: { cascades: buildCascades(config) } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  const ask = async (content: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Extended> =>
    (await client.chat.completions.create({ model: "auto", messages: [{ role: "user", content }], max_tokens: 3, ...extra }, { headers })) as Extended;

  it("is listed as a model", async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    assert.deepEqual(ids.sort(), ["auto", "big", "small"]);
    assert.equal((await client.models.retrieve("auto")).id, "auto");
  });

  it("answers an easy request with the light model, and each escalation signal with the heavy one", async () => {
    const easy = await ask("What is the capital of France?");
    assert.equal(easy.model, "small");
    assert.equal(easy.x_flotilla.cascade_leg, "light");
    assert.equal(easy.x_flotilla.hardware, "l40s");

    const cases: [string, Promise<Extended>][] = [
      ["reasoning_effort", ask("What is the capital of France?", { reasoning_effort: "high" })],
      ["keyword", ask("Prove that there are infinitely many primes.")],
      ["prompt_length", ask("word ".repeat(300))],
      ["hint", ask("hi", {}, { "x-flotilla-cascade": "heavy" })],
    ];
    for (const [reason, pending] of cases) {
      const r = await pending;
      assert.equal(r.model, "big", reason);
      assert.deepEqual([r.x_flotilla.cascade_leg, r.x_flotilla.cascade_reason, r.x_flotilla.hardware], ["heavy", reason, "h100"]);
    }
    // A low effort, or a keyword inside another word, stays light.
    assert.equal((await ask("What is 2 + 2?", { reasoning_effort: "low" })).model, "small");
    assert.equal((await ask("Improve this sentence.")).model, "small", "'prove' inside 'improve' is not the keyword");
  });

  it("meters each request on the leg that served it, and counts escalations by reason", async () => {
    const light = await ask("plain question");
    const heavy = await ask("Explain step by step.");
    const rows = await gw.store.ledger({ tenantId: "anonymous" });
    const row = (id: string) => rows.find((r) => `chatcmpl-${r.requestId}` === id)!;
    assert.deepEqual([row(light.id).model, row(light.id).hardware], ["small", "l40s"]);
    assert.deepEqual([row(heavy.id).model, row(heavy.id).hardware], ["big", "h100"]);
    assert.ok(row(heavy.id).costNusd > 0 && row(light.id).costNusd > 0);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /flotilla_cascade_escalations_total\{model="auto",reason="keyword"\} [1-9]/);
  });

  it("rejects a bad cascade hint with 400 naming the header, and a fleet file whose cascade names an unknown model", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-flotilla-cascade": "medium" },
      body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { param: string } }).error.param, "x-flotilla-cascade");
    assert.throws(
      () => parseFleetConfig({ ...fleetFile, cascades: [{ name: "auto2", light: "smal", heavy: "big" }] }),
      (err: Error) => err instanceof ConfigError && /cascades\.0\.light: "smal" is not a model in this file/.test(err.message),
    );
    assert.throws(() => parseFleetConfig({ ...fleetFile, cascades: [{ name: "big", light: "small", heavy: "big" }] }), /cascades\.0\.name: "big" is already a model/);
  });
});
