/**
 * The fake upstream keeps its contract: answers are a pure function of the
 * prompt, streamed in OpenAI's shapes, resumable from text or token ids, and
 * each misbehaviour mode misbehaves as documented.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { answerIds, chatBasis, expectedAnswer, MARK, PIECES, piecesText, startFakeUpstream, type FakeUpstream } from "./fake-upstream.js";
import { chatPrompt, parseSse, textPrompt } from "./harness.js";
import { script } from "../paths.js";

type Body = Record<string, unknown>;

async function post(url: string, path: string, body: Body, signal?: AbortSignal): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...(signal === undefined ? {} : { signal }) });
  return { status: res.status, text: await res.text() };
}

type RawChunk = { prompt_token_ids?: number[]; choices: { token_ids?: number[]; prompt_token_ids?: number[]; delta?: { content?: string }; text?: string }[]; usage?: { completion_tokens: number } };
const chunksOf = (raw: string): RawChunk[] =>
  raw
    .split("\n\n")
    .filter((e) => e.startsWith("data: {"))
    .map((e) => JSON.parse(e.slice(6)) as RawChunk);

describe("the fake upstream's answers", () => {
  it("are a pure function of the prompt, 20 to 60 pieces, cut by max_tokens as documented", () => {
    const p = chatPrompt(1);
    assert.deepEqual(expectedAnswer(p), expectedAnswer([...p]));
    const full = expectedAnswer(p);
    assert.equal(full.finishReason, "stop");
    assert.ok(full.completionTokens >= 20 && full.completionTokens <= 60);
    assert.equal(full.text, piecesText(full.ids));
    // The end token must fit: max_tokens equal to the answer's length is a cut.
    assert.equal(expectedAnswer(p, full.completionTokens).finishReason, "length");
    assert.equal(expectedAnswer(p, full.completionTokens + 1).finishReason, "stop");
    const cut = expectedAnswer(p, 7);
    assert.deepEqual([cut.completionTokens, cut.finishReason, cut.text], [7, "length", piecesText(full.ids.slice(0, 7))]);
    assert.notDeepEqual(expectedAnswer(chatPrompt(2)).ids, full.ids);
    // A completions prompt's basis ends at its last MARK: text after it is a continuation, not a new prompt.
    assert.equal(expectedAnswer(`abc${MARK}`).text, piecesText(answerIds(`abc${MARK}`)));
  });

  it("draw from a table of tricky pieces: multi-byte, ZWJ emoji, flags, line ends, quotes, SSE look-alikes", () => {
    for (const needle of ["é", "中文", "\u200d", "🇫🇷", "\r\n", "\n\n", '"', "\\", "data: [DONE]", "\n\ndata: x"]) {
      assert.ok(PIECES.some((p) => p.includes(needle)), `a piece holds ${JSON.stringify(needle)}`);
    }
    assert.ok(PIECES.every((p) => p.length > 0 && !p.includes(MARK)));
  });
});

describe("the fake upstream over HTTP", () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ tokensPerChunk: 3 });
  });
  after(() => up.close());

  it("streams chat in OpenAI chunks of K pieces, running usage, one usage chunk, [DONE]", async () => {
    const messages = chatPrompt(3);
    const expected = expectedAnswer(messages, 10);
    const { status, text } = await post(up.url, "/v1/chat/completions", { messages, max_tokens: 10, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
    assert.equal(status, 200);
    const r = parseSse(status, text, 0);
    assert.equal(r.text, expected.text);
    assert.deepEqual(r.finishReasons, ["length"]);
    assert.ok(r.done);
    const chunks = chunksOf(text);
    // role, 3 + 3 + 3 + 1 pieces, usage.
    assert.deepEqual(chunks.map((c) => c.usage?.completion_tokens), [0, 3, 6, 9, 10, 10]);
    assert.equal(chunks.at(-1)!.choices.length, 0);
  });

  it("streams completions, and answers whole when not streaming", async () => {
    const prompt = textPrompt(4);
    const expected = expectedAnswer(prompt, 12);
    const streamed = await post(up.url, "/v1/completions", { prompt, max_tokens: 12, stream: true });
    assert.equal(parseSse(200, streamed.text, 0).text, expected.text);
    const whole = JSON.parse((await post(up.url, "/v1/completions", { prompt, max_tokens: 12 })).text) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    assert.deepEqual([whole.choices[0]!.text, whole.choices[0]!.finish_reason, whole.usage.completion_tokens], [expected.text, "length", 12]);
  });

  it("continues a chat after its final assistant message, counting only new tokens", async () => {
    const messages = chatPrompt(5);
    const full = expectedAnswer(messages);
    const written = piecesText(full.ids.slice(0, 4));
    const { text } = await post(up.url, "/v1/chat/completions", {
      messages: [...messages, { role: "assistant", content: written }],
      continue_final_message: true,
      add_generation_prompt: false,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const r = parseSse(200, text, 0);
    assert.equal(r.text, piecesText(full.ids.slice(4, 9)));
    assert.equal(r.usageChunks[0]!.completion_tokens, 5);
    // Text that is not where the answer goes is refused, so a gateway that garbles a continuation is caught.
    const wrong = await post(up.url, "/v1/chat/completions", { messages: [...messages, { role: "assistant", content: written + "x" }], continue_final_message: true, add_generation_prompt: false });
    assert.equal(wrong.status, 400);
  });

  it("continues a completion from prompt + written text after the MARK", async () => {
    const prompt = textPrompt(6);
    const full = expectedAnswer(prompt);
    const { text } = await post(up.url, "/v1/completions", { prompt: prompt + piecesText(full.ids.slice(0, 6)), max_tokens: 100, stream: true });
    const r = parseSse(200, text, 0);
    assert.equal(r.text, piecesText(full.ids.slice(6)));
    assert.deepEqual(r.finishReasons, ["stop"]);
  });

  it("reports token ids with return_token_ids, and continues from prompt_token_ids + token_ids", async () => {
    const messages = chatPrompt(7);
    const full = expectedAnswer(messages);
    const first = await post(up.url, "/v1/chat/completions", { messages, max_tokens: 8, stream: true, return_token_ids: true });
    const chunks = chunksOf(first.text);
    const promptIds = chunks[0]!.prompt_token_ids!;
    assert.equal(Buffer.from(promptIds.map((id) => id - 100_000)).toString("utf8"), chatBasis(messages));
    const ids = chunks.flatMap((c) => c.choices[0]?.token_ids ?? []);
    assert.deepEqual(ids, full.ids.slice(0, 8));
    const rest = await post(up.url, "/v1/completions", { prompt: [...promptIds, ...ids], max_tokens: 100, stream: true, return_token_ids: true });
    const restChunks = chunksOf(rest.text);
    assert.deepEqual(restChunks[0]!.choices[0]!.prompt_token_ids, [...promptIds, ...ids], "completions carry prompt ids in the choice too");
    assert.equal(parseSse(200, rest.text, 0).text, piecesText(full.ids.slice(8)));
    assert.equal(up.stats.idContinuations, 1);
    const wrong = await post(up.url, "/v1/completions", { prompt: [...promptIds, ...ids.slice(0, -1), (ids.at(-1)! + 1) % PIECES.length] });
    assert.equal(wrong.status, 400);
  });
});

describe("the fake upstream's misbehaviour", () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ tokenDelayMs: 1 });
  });
  after(() => up.close());
  const chat = (signal?: AbortSignal) => fetch(`${up.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ messages: chatPrompt(8), stream: true }), ...(signal === undefined ? {} : { signal }) });

  it("http-500, and /health still 200", async () => {
    up.setMode("http-500");
    assert.equal((await chat()).status, 500);
    assert.equal((await fetch(`${up.url}/health`)).status, 200);
    up.setHealth(503);
    assert.equal((await fetch(`${up.url}/health`)).status, 503);
    up.setHealth(200);
  });

  it("hang-before-headers never answers; hang-after-headers sends 200 and nothing more", async () => {
    up.setMode("hang-before-headers");
    await assert.rejects(chat(AbortSignal.timeout(200)), /abort|timeout/i);
    up.setMode("hang-after-headers");
    const res = await chat(AbortSignal.timeout(300));
    assert.equal(res.status, 200);
    await assert.rejects(res.text(), /abort|timeout/i);
    await up.waitFor((s) => s.active === 0, 2_000, "the hung requests to close");
  });

  it("malformed-sse writes a line that is not JSON mid-stream", async () => {
    up.setMode("malformed-sse", { afterPieces: 2 });
    const text = await (await chat()).text();
    assert.match(text, /"content":"[^\n]*\n\ndata: [^\n]*\n\ndata: \{not json\n\ndata: \[DONE\]\n\n$/);
  });

  it("die-mid-stream cuts the connection after k pieces; slow-first-token waits before the first", async () => {
    up.setMode("die-mid-stream", { afterPieces: 4 });
    const res = await chat();
    await assert.rejects(res.text(), /terminated|other side closed|socket/i);
    up.setMode("slow-first-token", { firstTokenMs: 300 });
    const t = performance.now();
    const reader = (await chat()).body!.getReader();
    let got = "";
    while (!got.includes('"content":"') || got.split("\n\n").length < 3) got += new TextDecoder().decode((await reader.read()).value);
    assert.ok(performance.now() - t >= 290, `first piece after ${(performance.now() - t).toFixed(0)} ms`);
    await reader.cancel();
    up.setMode("good");
  });

  it("killAfter crashes every connection once, right after the chunk that reaches k pieces", async () => {
    const struck = up.killAfter(5);
    const res = await chat();
    await assert.rejects(res.text());
    assert.equal((await struck).sent, 5);
    assert.equal((await chat()).status, 200, "one-shot: the next request is served");
  });
});

describe("the fake upstream as a child process", () => {
  it("prints its ready line, serves, switches mode over HTTP, and dies on a signal", async () => {
    const child = spawn(process.execPath, [...script("test/chaos/fake-upstream.ts"), "--port", "0", "--tokens-per-chunk", "2"], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const [line] = (await once(child.stdout!, "data")) as [Buffer];
      const url = /listening on (\S+)/.exec(line.toString())![1]!;
      const prompt = textPrompt(9);
      const { text } = await post(url, "/v1/completions", { prompt, max_tokens: 9, stream: true });
      assert.equal(parseSse(200, text, 0).text, expectedAnswer(prompt, 9).text);
      assert.equal((await post(url, "/fake/mode", { mode: "http-500" })).status, 200);
      assert.equal((await post(url, "/v1/completions", { prompt })).status, 500);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
