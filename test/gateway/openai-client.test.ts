import assert from "node:assert/strict";
import { describe, it } from "node:test";
import OpenAI from "openai";
import { totalActive } from "../helpers.js";
import { clientSuite } from "../openai-suite.js";

describe("the official openai client against the local engine", () => {
  const s = clientSuite();

  it("lists the served model", async () => {
    const models = await s.client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["tiny"]);
    const one = await s.client.models.retrieve("tiny");
    assert.equal(one.id, "tiny");
  });

  it("answers a chat completion with text and honest usage", async () => {
    const res = await s.client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say something." }],
      max_tokens: 12,
      temperature: 0,
    });
    const choice = res.choices[0]!;
    assert.equal(res.object, "chat.completion");
    assert.equal(choice.message.role, "assistant");
    assert.ok(choice.message.content !== null && choice.message.content.length > 0);
    assert.ok(res.usage !== undefined);
    assert.ok(res.usage.prompt_tokens > 5, `prompt_tokens ${res.usage.prompt_tokens} counts the chat template`);
    assert.ok(res.usage.completion_tokens >= 1 && res.usage.completion_tokens <= 12);
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
    assert.equal(choice.finish_reason, res.usage.completion_tokens === 12 ? "length" : "stop");
  });

  it("refuses a field it would ignore by name rather than answering without it; labels are accepted", async () => {
    await assert.rejects(
      s.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Weather?" }], max_tokens: 4, logit_bias: { "1": 5 } }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === "logit_bias" && /token biases are not applied/.test(err.message),
    );
    const res = await s.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 4, metadata: { app: "test" }, store: false, prompt_cache_key: "conversation-1", safety_identifier: "u1" });
    assert.equal(res.object, "chat.completion");
    assert.equal(totalActive(s.gw.fleet), 0);
  });

  it("takes back in the history the assistant message it returned, as apps append it", async () => {
    const first = await s.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
    const reply = first.choices[0]!.message;
    // The returned message as it is: with refusal, and annotations where the API sets them.
    const returned = { ...reply, refusal: null, annotations: [] } as OpenAI.ChatCompletionMessageParam;
    const again = await s.client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Hi" }, returned, { role: "user", content: "And?" }], max_tokens: 4 });
    assert.equal(again.object, "chat.completion");
  });

  it("streams exactly the text it returns without streaming, then usage", async () => {
    const request = { model: "tiny", messages: [{ role: "user" as const, content: "Count to ten." }], max_tokens: 24, temperature: 0 };
    const whole = await s.client.chat.completions.create(request);
    const stream = await s.client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let chunks = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      chunks++;
      const choice = chunk.choices[0];
      if (choice !== undefined) {
        text += choice.delta.content ?? "";
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, whole.choices[0]!.message.content);
    assert.ok(chunks > 3, `text arrived in ${chunks} chunks, not at once`);
    assert.equal(finish, whole.choices[0]!.finish_reason);
    assert.equal(usage?.completion_tokens, whole.usage?.completion_tokens);
    assert.equal(usage?.prompt_tokens, whole.usage?.prompt_tokens);
  });

  it("serves legacy completions, streaming and not", async () => {
    const whole = await s.client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 10, temperature: 0 });
    assert.equal(whole.object, "text_completion");
    const text = whole.choices[0]!.text;
    assert.ok(text.length > 0);
    assert.ok(whole.usage!.prompt_tokens >= 3);
    const stream = await s.client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 10, temperature: 0, stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    assert.equal(streamed, text);
  });

  it("honours stop sequences", async () => {
    const free = await s.client.completions.create({ model: "tiny", prompt: "abc", max_tokens: 20, temperature: 0 });
    const text = free.choices[0]!.text;
    const stop = text.slice(4, 6);
    assert.ok(stop.trim().length > 0, "the free-running text is long enough to pick a stop string from");
    const stopped = await s.client.completions.create({ model: "tiny", prompt: "abc", max_tokens: 20, temperature: 0, stop: [stop] });
    assert.equal(stopped.choices[0]!.finish_reason, "stop");
    assert.ok(!stopped.choices[0]!.text.includes(stop), "the stop string is not part of the answer");
    assert.ok(text.startsWith(stopped.choices[0]!.text));
  });

  it("leaves no engine slot busy after the requests", () => {
    assert.equal(totalActive(s.gw.fleet), 0);
  });
});
