/**
 * Replicas that die mid-answer, multi-token chunks cut by max_tokens, and a
 * replica restarting on its port while a request runs: every answer arrives
 * whole and exact, as the fake upstream's pure function says it must.
 */
import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import OpenAI from "openai";
import { expectedAnswer, startFakeUpstream, type FakeUpstream } from "./fake-upstream.js";
import { assertExact, chatPrompt, frontOver, killServingAfter, startFakes, stream, textPrompt, type Front } from "./harness.js";
import { eventually, totalActive } from "../helpers.js";

const admin = (url: string, op: "drain" | "resume", replica: string): Promise<Response> =>
  fetch(`${url}/admin/${op}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica, wait_s: 0 }) });

/** Resumes from token ids (upstreams that report them, as vLLM does with return_token_ids) and from text (those that do not). */
const RESUMES = [
  { name: "from token ids", tokenIds: true, count: (f: FakeUpstream) => f.stats.idContinuations },
  { name: "from text", tokenIds: false, count: (f: FakeUpstream) => f.stats.textContinuations },
] as const;

for (const resume of RESUMES) describe(`a replica killed mid-stream, resumed ${resume.name}`, () => {
  let fakes: FakeUpstream[] = [];
  let front: Front | undefined;
  afterEach(async () => {
    await front?.close();
    await Promise.all(fakes.map((f) => f.close()));
    front = undefined;
    fakes = [];
  });

  it("chat through the openai client: the other replica continues the same answer", async () => {
    fakes = await startFakes(2, { tokenDelayMs: 1, tokenIds: resume.tokenIds });
    front = await frontOver(fakes);
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "x", maxRetries: 0 });
    const messages = chatPrompt(100, 30);
    const expected = expectedAnswer(messages, 200);
    const killed = killServingAfter(fakes, 12);
    const s = await client.chat.completions.create({ model: "m", messages: messages.map((m) => ({ role: "user" as const, content: m.content })), max_tokens: 200, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null | undefined;
    const usages: OpenAI.CompletionUsage[] = [];
    let servedBy: { attempts: number; continuations: number } | undefined;
    for await (const chunk of s) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) {
        usages.push(chunk.usage);
        servedBy = (chunk as unknown as { x_flotilla: { attempts: number; continuations: number } }).x_flotilla;
      }
    }
    const victim = await killed;
    assert.equal(text, expected.text);
    assert.equal(finish, "stop");
    assert.equal(usages.length, 1);
    assert.equal(usages[0]!.completion_tokens, expected.completionTokens);
    assert.deepEqual({ attempts: servedBy?.attempts, continuations: servedBy?.continuations }, { attempts: 2, continuations: 1 });
    const survivor = fakes.find((f) => f !== victim)!;
    assert.equal(resume.count(survivor), 1, "the survivor was asked to continue, not to start over");
    assert.equal(totalActive(front.fleet), 0);
  });

  it("die-mid-stream replica, chat and completions: continued exactly on the other (first attempt forced onto the bad one)", async () => {
    const bad = await startFakeUpstream({ mode: "die-mid-stream", afterPieces: 5, tokensPerChunk: 2, tokenIds: resume.tokenIds });
    const good = await startFakeUpstream({ tokensPerChunk: 3, tokenIds: resume.tokenIds });
    fakes = [bad, good];
    front = await frontOver(fakes);
    for (const [i, prompt] of [chatPrompt(200, 30), textPrompt(201, 30)].entries()) {
      // A draining replica takes no new request but does take a resume: the first attempt must go to the bad one.
      await admin(front.url, "drain", "m/1");
      const pending = stream(front.url, prompt, 100);
      await bad.waitFor((s) => s.requests === i + 1, 5_000, "the bad replica to take the request");
      await admin(front.url, "resume", "m/1");
      const r = await pending;
      assertExact(r, expectedAnswer(prompt, 100), `prompt ${i}`);
      assert.deepEqual({ attempts: r.servedBy?.attempts, continuations: r.servedBy?.continuations }, { attempts: 2, continuations: 1 });
    }
    assert.equal(bad.stats.byOutcome.killed, 2);
    assert.equal(resume.count(good), 2);
  });

  it(
    "a chat without max_tokens, killed mid-stream: continued to its natural end",
    async () => {
      fakes = await startFakes(2, { tokenDelayMs: 1, tokenIds: resume.tokenIds });
      front = await frontOver(fakes);
      const messages = chatPrompt(150, 40);
      const killed = killServingAfter(fakes, 5);
      const r = await stream(front.url, messages, undefined);
      await killed;
      assertExact(r, expectedAnswer(messages));
    },
  );

  it("a non-streaming completion is continued the same way", async () => {
    fakes = await startFakes(2, { tokenDelayMs: 1, tokenIds: resume.tokenIds });
    front = await frontOver(fakes);
    const prompt = textPrompt(300, 30);
    const killed = killServingAfter(fakes, 9);
    const res = await fetch(`${front.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt, max_tokens: 200 }) });
    const body = (await res.json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number }; x_flotilla: { continuations: number } };
    await killed;
    const expected = expectedAnswer(prompt, 200);
    assert.deepEqual([body.choices[0]!.text, body.choices[0]!.finish_reason, body.usage.completion_tokens], [expected.text, expected.finishReason, expected.completionTokens]);
    assert.equal(body.x_flotilla.continuations, 1);
  });
});

describe("multi-token chunks cut by max_tokens", () => {
  const fakes: FakeUpstream[] = [];
  after(() => Promise.all(fakes.map((f) => f.close())));

  for (const k of [2, 3]) for (const resume of RESUMES) {
    it(`K=${k}: finish "length", completion_tokens == max_tokens, text exact; with and without a kill mid-stream (resumed ${resume.name})`, async () => {
      // The two replicas chunk differently (K and K+1), so a continuation also changes chunk boundaries.
      const pair = [await startFakeUpstream({ tokensPerChunk: k, tokenDelayMs: 1, tokenIds: resume.tokenIds }), await startFakeUpstream({ tokensPerChunk: k + 1, tokenDelayMs: 1, tokenIds: resume.tokenIds })];
      fakes.push(...pair);
      const front = await frontOver(pair);
      try {
        for (const [i, maxTokens] of [1, 2, 5, 10, 11, 17].entries()) {
          const prompt = i % 2 === 0 ? chatPrompt(400 + i, 30) : textPrompt(400 + i, 30);
          const expected = expectedAnswer(prompt, maxTokens);
          assert.equal(expected.finishReason, "length");
          assertExact(await stream(front.url, prompt, maxTokens), expected, `max_tokens ${maxTokens}`);
          if (maxTokens < 3) continue;
          // Killed after the chunk that reaches piece 2: mid-answer, mid-way through max_tokens.
          const killed = killServingAfter(pair, 2);
          const r = await stream(front.url, prompt, maxTokens);
          await killed;
          assertExact(r, expected, `max_tokens ${maxTokens}, killed`);
          assert.equal(r.servedBy?.continuations, 1);
        }
        assert.equal(resume.count(pair[0]!) + resume.count(pair[1]!), 4, "every kill was resumed this way");
        assert.equal(totalActive(front.fleet), 0);
      } finally {
        await front.close();
      }
    });
  }

  it("killed right after the chunk that reaches max_tokens (finish sent, usage and [DONE] not): still exact", async () => {
    const pair = await startFakes(2, { tokensPerChunk: 3, tokenDelayMs: 1 });
    fakes.push(...pair);
    const front = await frontOver(pair);
    try {
      const prompt = chatPrompt(500, 30);
      const killed = killServingAfter(pair, 10);
      const r = await stream(front.url, prompt, 10);
      await killed;
      assertExact(r, expectedAnswer(prompt, 10));
    } finally {
      await front.close();
    }
  });

  it("killed right after its last piece of an answer that stops: the other replica is asked for nothing more, and it is exact", async () => {
    const pair = await startFakes(2, { tokenDelayMs: 1 });
    fakes.push(...pair);
    const front = await frontOver(pair);
    try {
      const prompt = textPrompt(600);
      const expected = expectedAnswer(prompt, 500);
      assert.equal(expected.finishReason, "stop");
      const killed = killServingAfter(pair, expected.completionTokens);
      const r = await stream(front.url, prompt, 500);
      await killed;
      assertExact(r, expected);
    } finally {
      await front.close();
    }
  });
});

describe("a replica restarting during a request", () => {
  for (const resume of RESUMES) it(`the only replica is closed mid-answer and restarted on its port: the answer resumes on the new process (${resume.name})`, async () => {
    const first = await startFakeUpstream({ tokenDelayMs: 2, tokenIds: resume.tokenIds });
    const front = await frontOver([first]);
    let second: FakeUpstream | undefined;
    try {
      const prompt = chatPrompt(700, 30);
      const restarted = new Promise<FakeUpstream>((resolve, reject) => {
        const onChunk = (info: { sent: number }): void => {
          if (info.sent < 8) return;
          first.events.off("chunk", onChunk);
          void first
            .close()
            .then(() => startFakeUpstream({ port: first.port, tokenDelayMs: 2, tokenIds: resume.tokenIds }))
            .then(resolve, reject);
        };
        first.events.on("chunk", onChunk);
      });
      const r = await stream(front.url, prompt, 200);
      second = await restarted;
      assertExact(r, expectedAnswer(prompt, 200));
      assert.equal(r.servedBy?.continuations, 1);
      assert.equal(resume.count(second), 1, "the restarted process continued the answer");
      // And it is back in rotation for new work.
      assertExact(await stream(front.url, textPrompt(701), 50), expectedAnswer(textPrompt(701), 50), "after the restart");
      assert.equal(totalActive(front.fleet), 0);
    } finally {
      await front.close();
      await second?.close();
      await first.close().catch(() => undefined);
    }
  });

  it("one of two replicas restarts while both serve: every answer exact, and the restarted one serves again", async () => {
    const fakes = await startFakes(2, { tokenDelayMs: 2 });
    const front = await frontOver(fakes);
    let replacement: FakeUpstream | undefined;
    try {
      const prompts = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? chatPrompt(800 + i, 30) : textPrompt(800 + i, 30)));
      const victim = fakes[0]!;
      const restarted = victim.waitFor((s) => s.piecesSent >= 20, 5_000, "some answers under way").then(async () => {
        await victim.close();
        replacement = await startFakeUpstream({ port: victim.port, tokenDelayMs: 2 });
      });
      const results = await Promise.all(prompts.map((p) => stream(front.url, p, 100)));
      await restarted;
      results.forEach((r, i) => assertExact(r, expectedAnswer(prompts[i]!, 100), `prompt ${i}`));
      assert.ok(results.some((r) => (r.servedBy?.continuations ?? 0) > 0), "some answer was under way on the restarted replica");
      await eventually(() => front.fleet.replicas()[0]!.engine.isReady(), "the restarted replica to be probed ready", 5_000);
      // Concurrent, so least-loaded spreads them over both replicas.
      const after = await Promise.all(Array.from({ length: 6 }, (_, i) => stream(front.url, textPrompt(900 + i), 20)));
      after.forEach((r, i) => assertExact(r, expectedAnswer(textPrompt(900 + i), 20)));
      assert.ok(replacement!.stats.requests > 0, "the restarted replica takes work again");
    } finally {
      await front.close();
      await Promise.all([fakes[1]!.close(), replacement?.close(), fakes[0]!.close().catch(() => undefined)]);
    }
  });
});

describe("an answer held to response_format or free to call tools", () => {
  it("strict: an engine that ignored the schema fails the request (502, or the stream's error event); without strict its answer stands", async () => {
    // The fake upstream never enforces response_format: its answers are not JSON.
    const fake = await startFakeUpstream({});
    const front = await frontOver([fake]);
    try {
      const format = (strict: boolean) => ({ type: "json_schema", json_schema: { name: "reply", strict, schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } } });
      const post = (body: Record<string, unknown>) => fetch(`${front.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages: chatPrompt(400, 10), max_tokens: 1000, ...body }) });
      const whole = await post({ response_format: format(true) });
      assert.equal(whole.status, 502);
      assert.match(((await whole.json()) as { error: { message: string } }).error.message, /replica m\/0 answered outside response_format\.json_schema "reply": it is not JSON; its engine did not enforce the schema/);
      const streamed = await (await post({ response_format: format(true), stream: true })).text();
      assert.match(streamed, /"error":\{"message":"replica m\/0 answered outside response_format/);
      assert.ok(streamed.endsWith("data: [DONE]\n\n"));
      assert.equal((await post({ response_format: format(false) })).status, 200);
      assert.equal(totalActive(front.fleet), 0);
    } finally {
      await front.close();
      await fake.close();
    }
  });

  it("is not resumed half-written, nor is one that may call tools: the replica dying mid-answer ends it with a 502 that says so", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ response_format: { type: "json_object" } }, "held to response_format"],
      [{ tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }] }, "that may call tools"],
    ];
    for (const [extra, held] of cases) {
      const bad = await startFakeUpstream({ mode: "die-mid-stream", afterPieces: 5 });
      const good = await startFakeUpstream({});
      const front = await frontOver([bad, good]);
      try {
        await admin(front.url, "drain", "m/1");
        const body = { model: "m", messages: chatPrompt(300, 30), max_tokens: 100, ...extra };
        const pending = fetch(`${front.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        await bad.waitFor((s) => s.requests === 1, 5_000, "the bad replica to take the request");
        await admin(front.url, "resume", "m/1");
        const res = await pending;
        const error = ((await res.json()) as { error: { message: string } }).error;
        assert.equal(res.status, 502);
        assert.equal(error.message, `replica m/0 failed mid-answer, and an answer ${held} cannot be resumed where it stopped; send the request again`);
        assert.equal(good.stats.requests, 0, "no replica was asked to continue it");
        await eventually(() => totalActive(front.fleet) === 0, "every slot released", 5_000);
      } finally {
        await front.close();
        await Promise.all([bad.close(), good.close()]);
      }
    }
  });
});
