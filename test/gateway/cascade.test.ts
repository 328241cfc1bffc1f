import { LLAMA2_ABSENT } from "../helpers.js";
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

describe("model cascades: light and heavy paths behind one alias", { skip: LLAMA2_ABSENT }, () => {
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

describe("model cascades: escalation on the light model's confidence", { skip: LLAMA2_ABSENT }, () => {
  // The tiny model is random: its mean token logprob is about -10. "strict"
  // wants better than -5, so it always escalates; "lenient" accepts -30.
  const file = {
    ...fleetFile,
    cascades: [
      { name: "strict", light: "small", heavy: "big", escalate: { min_mean_logprob: -5 } },
      { name: "lenient", light: "small", heavy: "big", escalate: { min_mean_logprob: -30 } },
    ],
  };
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;
  let client: OpenAI;
  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { config: file, gateway: { cascades: buildCascades(parseFleetConfig(file)) } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });
  const ask = { messages: [{ role: "user" as const, content: "Are you sure?" }], max_tokens: 6, temperature: 0 };

  it("an unsure light answer is redone by the heavy model; the client sees only the heavy answer, and both legs are metered", async () => {
    const r = (await client.chat.completions.create({ model: "strict", ...ask })) as Extended;
    assert.equal(r.model, "big");
    assert.deepEqual([r.x_flotilla.cascade_leg, r.x_flotilla.cascade_reason, r.x_flotilla.hardware], ["heavy", "low_confidence", "h100"]);
    assert.ok((r.x_flotilla.light_mean_logprob as number) < -5);
    const heavyAlone = (await client.chat.completions.create({ model: "big", ...ask })) as Extended;
    assert.equal(r.choices[0]!.message.content, heavyAlone.choices[0]!.message.content);
    // Both legs ran the same prompt on the same weights at temperature 0: the ledger has twice the tokens, and more than the heavy leg's cost.
    const row = (await gw.store.ledger({ tenantId: "anonymous" })).find((x) => `chatcmpl-${x.requestId}` === r.id)!;
    assert.equal(row.model, "strict", "admitted against the alias, which may run both legs");
    assert.equal(row.inputTokens, 2 * r.usage!.prompt_tokens);
    assert.equal(row.outputTokens, 2 * r.usage!.completion_tokens);
    assert.ok((r.x_flotilla.cost_usd as number) > (heavyAlone.x_flotilla.cost_usd as number), "the light leg is billed too");
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /flotilla_cascade_escalations_total\{model="strict",reason="low_confidence"\} 1/);
    // An escalation is counted as one, never as a failover of the healthy light replica.
    assert.doesNotMatch(metrics, /flotilla_failovers_total\{[^}]*\} [1-9]/);
  });

  it("streams the heavy answer after an escalation, and the light answer when it is confident enough", async () => {
    const heavyAlone = await client.chat.completions.create({ model: "big", ...ask });
    let text = "";
    let model = "";
    for await (const chunk of await client.chat.completions.create({ model: "strict", ...ask, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? "";
      model = chunk.model;
    }
    assert.deepEqual([model, text], ["big", heavyAlone.choices[0]!.message.content]);

    const kept = (await client.chat.completions.create({ model: "lenient", ...ask })) as Extended;
    assert.deepEqual([kept.model, kept.x_flotilla.cascade_leg, kept.x_flotilla.hardware], ["small", "light", "l40s"]);
    assert.ok((kept.x_flotilla.light_mean_logprob as number) > -30);
    assert.equal(kept.choices[0]!.logprobs, null, "scored for the cascade, not returned unasked");
    const row = (await gw.store.ledger({ tenantId: "anonymous" })).find((x) => `chatcmpl-${x.requestId}` === kept.id)!;
    assert.equal(row.outputTokens, kept.usage!.completion_tokens, "one leg, metered once");
  });
});
