import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { ensureDefaultModel } from "../../src/gguf/default-model.js";
import { afterStreamed, eventually, startGateway, totalActive, type RunningGateway } from "../helpers.js";

/**
 * Two upstream Flotillas serve the built-in byte-level model (every byte one
 * token, so resuming after any text is exact); a front Flotilla routes to
 * both. Killing the upstream mid-answer must not change the answer.
 */
describe("mid-stream continuation when a replica dies", () => {
  let home: string;
  let upstreams: RunningGateway[];
  let front: RunningGateway;
  let client: OpenAI;
  let modelPath: string;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), "flotilla-failover-"));
    modelPath = (await ensureDefaultModel(home)).path;
    await startAll();
  });
  after(async () => {
    await front.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await rm(home, { recursive: true, force: true });
  });

  async function startAll(): Promise<void> {
    const fleet = { models: [{ name: "tiny", replicas: [{ engine: "local", path: modelPath, parallel: 2, context: 2048 }] }] };
    upstreams = await Promise.all([startGateway(fleet), startGateway(fleet)]);
    front = await startGateway({
      models: [{ name: "m", replicas: upstreams.map((u) => ({ engine: "openai", url: u.url, upstream_model: "tiny" })) }],
    });
    client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "x", maxRetries: 0 });
  }

  /** Cuts every connection of the upstream that is generating: to the front it is dead. */
  async function killBusyUpstream(afterTokens = 0): Promise<RunningGateway> {
    await eventually(() => upstreams.some((u) => totalActive(u.fleet) > 0), "an upstream to be generating", 5_000);
    const busy = upstreams.find((u) => totalActive(u.fleet) > 0)!;
    if (afterTokens > 0) await afterStreamed(busy.url, afterTokens);
    busy.app.server.closeAllConnections();
    return busy;
  }

  /** The long chat answer `reference("chat")` gives, streamed through the front with usage. */
  function storyStream() {
    return client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "Tell a long story." }],
      max_tokens: 400,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
  }

  async function reference(kind: "chat" | "text"): Promise<{ text: string; tokens: number }> {
    const direct = new OpenAI({ baseURL: `${upstreams[0]!.url}/v1`, apiKey: "x", maxRetries: 0 });
    if (kind === "chat") {
      const r = await direct.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Tell a long story." }], max_tokens: 400, temperature: 0 });
      return { text: r.choices[0]!.message.content!, tokens: r.usage!.completion_tokens };
    }
    const r = await direct.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 400, temperature: 0 });
    return { text: r.choices[0]!.text, tokens: r.usage!.completion_tokens };
  }

  it("continues a chat stream on the other replica with no text lost or repeated", async () => {
    const expected = await reference("chat");
    const stream = await storyStream();
    let text = "";
    let killed = false;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let usageChunk: OpenAI.ChatCompletionChunk | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) {
        usage = chunk.usage;
        usageChunk = chunk;
      }
      if (!killed && text.length > 40) {
        killed = true;
        await killBusyUpstream();
      }
    }
    assert.ok(killed);
    assert.equal(text, expected.text);
    assert.equal(finish, "length");
    assert.equal(usage?.completion_tokens, expected.tokens, "output is what was generated, once");
    assert.ok(usage!.prompt_tokens > 40, "the replayed text was input to the second replica");
    const servedBy = (usageChunk as unknown as { x_flotilla: { attempts: number; continuations: number } }).x_flotilla;
    assert.deepEqual({ attempts: servedBy.attempts, continuations: servedBy.continuations }, { attempts: 2, continuations: 1 });
    assert.equal(totalActive(front.fleet), 0);
  });

  it("hands the answer back to a replica that failed once and recovered, when the other fails too", async () => {
    await Promise.all([front.close(), ...upstreams.map((u) => u.close())]);
    await startAll();
    const expected = await reference("chat");
    const stream = await storyStream();
    let text = "";
    let first: RunningGateway | undefined;
    let second: RunningGateway | undefined;
    let servedBy: { attempts: number; continuations: number } | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) servedBy = (chunk as unknown as { x_flotilla: { attempts: number; continuations: number } }).x_flotilla;
      if (first === undefined && text.length > 40) {
        first = await killBusyUpstream();
        // Its server never went away: the front's probe finds it healthy again.
        const replica = front.fleet.replicas()[upstreams.indexOf(first)]!;
        await eventually(() => replica.engine.isReady(), "the first replica to be ready again", 10_000);
      } else if (first !== undefined && second === undefined && text.length > 120) {
        second = await killBusyUpstream();
      }
    }
    assert.ok(first !== undefined && second !== undefined && first !== second, "both replicas failed once during the answer");
    assert.equal(text, expected.text);
    assert.deepEqual({ attempts: servedBy?.attempts, continuations: servedBy?.continuations }, { attempts: 3, continuations: 2 });
    assert.equal(totalActive(front.fleet), 0);
  });

  it("continues a non-streaming completion the same way", async () => {
    await Promise.all([front.close(), ...upstreams.map((u) => u.close())]);
    await startAll();
    const expected = await reference("text");
    const pending = client.completions.create({ model: "m", prompt: "Once upon a time", max_tokens: 400, temperature: 0 });
    // Some text flows first, so the kill lands mid-answer: the second replica resumes it.
    await killBusyUpstream(20);
    const r = await pending;
    assert.equal(r.choices[0]!.text, expected.text);
    assert.equal(r.usage!.completion_tokens, expected.tokens);
    assert.equal((r as unknown as { x_flotilla: { attempts: number } }).x_flotilla.attempts, 2);
  });
});
