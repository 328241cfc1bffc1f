import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { tinyFleet, LLAMA2_ABSENT } from "../helpers.js";
import { clientSuite } from "../openai-suite.js";

/** OpenAI's logprobs from the local engine (real llama.cpp, scored by teacher forcing). */
describe("logprobs", { skip: LLAMA2_ABSENT }, () => {
  const s = clientSuite(tinyFleet({ context: 1024 }));

  const messages = [{ role: "user" as const, content: "How likely is each word?" }];

  it("chat: one entry per generated token; at temperature 0 each chosen token is the likeliest", async () => {
    const r = await s.client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0]!.logprobs!.content!;
    assert.equal(content.length, r.usage!.completion_tokens);
    for (const entry of content) {
      assert.ok(Number.isFinite(entry.logprob) && entry.logprob <= 0, `logprob ${entry.logprob}`);
      assert.equal(entry.top_logprobs.length, 3);
      const tops = entry.top_logprobs.map((t) => t.logprob);
      assert.deepEqual(tops, [...tops].sort((x, y) => y - x), "alternatives best first");
      // Greedy decoding picks the argmax, so the score must say it was the likeliest.
      assert.ok(Math.abs(entry.logprob - tops[0]!) < 1e-4, `chosen ${entry.logprob} vs best ${tops[0]}`);
      assert.deepEqual(entry.bytes, [...Buffer.from(entry.token, "utf8")]);
    }
    // A random-weight model is nearly uniform over its 32,000 tokens: ln(1/32000) = -10.37.
    const mean = content.reduce((n, e) => n + e.logprob, 0) / content.length;
    assert.ok(mean < -8 && mean > -11, `mean logprob ${mean}`);
  });

  it("streams the same logprobs with the last chunk, and leaves them out when not asked", async () => {
    const ask = { model: "tiny", messages, max_tokens: 10, temperature: 0 };
    const whole = await s.client.chat.completions.create({ ...ask, logprobs: true });
    const stream = await s.client.chat.completions.create({ ...ask, logprobs: true, stream: true });
    const streamed: number[] = [];
    let text = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      for (const e of chunk.choices[0]?.logprobs?.content ?? []) streamed.push(e.logprob);
    }
    assert.equal(text, whole.choices[0]!.message.content);
    assert.deepEqual(streamed, whole.choices[0]!.logprobs!.content!.map((e) => e.logprob));
    const plain = await s.client.chat.completions.create(ask);
    assert.equal(plain.choices[0]!.logprobs, null);
    assert.equal(plain.choices[0]!.message.content, whole.choices[0]!.message.content, "scoring does not change the answer");
  });

  it("completions: tokens, token_logprobs, top_logprobs and text_offset line up", async () => {
    const r = await s.client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    const n = r.usage!.completion_tokens;
    assert.deepEqual([lp.tokens!.length, lp.token_logprobs!.length, lp.top_logprobs!.length, lp.text_offset!.length], [n, n, n, n]);
    for (let i = 0; i < n; i++) {
      assert.equal(Object.keys(lp.top_logprobs![i]!).length <= 2, true);
      assert.ok(lp.token_logprobs![i]! <= 0);
      if (i > 0) assert.equal(lp.text_offset![i], lp.text_offset![i - 1]! + lp.tokens![i - 1]!.length);
    }
  });

  it("rejects top_logprobs without logprobs, and out-of-range values, naming the field", async () => {
    const bad = async (path: string, body: Record<string, unknown>, param: string): Promise<void> => {
      const res = await fetch(`${s.gw.url}/v1/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny", ...body }) });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: { param: string } }).error.param, param);
    };
    await bad("chat/completions", { messages, top_logprobs: 2 }, "top_logprobs");
    await bad("chat/completions", { messages, logprobs: true, top_logprobs: 21 }, "top_logprobs");
    await bad("completions", { prompt: "x", logprobs: 6 }, "logprobs");
  });
});
