/**
 * Token-exact continuation (issue 13, finding 2). A greedy answer is cut at
 * every token boundary and resumed; the spliced answer must equal the
 * uninterrupted one, byte for byte. The llama-2 vocabulary is what makes this
 * hard: "▁Fellow" after "Ca" must come back as " Fellow", which re-tokenising
 * the text loses. Local engine directly, a remote engine that is a second
 * Flotilla, and the dispatcher resuming on another replica.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { wallClock } from "../../src/core/clock.js";
import { FlotillaError } from "../../src/core/errors.js";
import type { ContinuationIds, GenerationRequest, GenerationResult, Prompt } from "../../src/core/request.js";
import type { ChunkIds, Engine, TextSink } from "../../src/engines/engine.js";
import { LocalEngine } from "../../src/engines/local.js";
import { OpenAIEngine } from "../../src/engines/openai.js";
import { Fleet, type Replica } from "../../src/fleet/fleet.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import { Dispatcher } from "../../src/gateway/dispatcher.js";
import { roundRobin } from "../../src/scheduler/policies.js";
import { LLAMA2_ABSENT, LLAMA2_TINY_MODEL, startGateway, type RunningGateway } from "../helpers.js";

const TINY_MODEL = LLAMA2_TINY_MODEL;
const MAX_TOKENS = 40;
const CHAT: Prompt = { kind: "chat", messages: [{ role: "user", content: "Tell me about Windows and fellows" }] };
const TEXT: Prompt = { kind: "text", text: "The fellows of Windows" };

interface Piece {
  readonly text: string;
  readonly tokens: number;
  readonly ids: ChunkIds | undefined;
}

async function generate(engine: Engine, prompt: Prompt, extra: Partial<GenerationRequest> = {}, maxTokens = MAX_TOKENS): Promise<{ pieces: Piece[]; text: string; result: GenerationResult }> {
  const pieces: Piece[] = [];
  const request: GenerationRequest = { id: "t", prompt, sampling: { maxTokens, temperature: 0 }, ...extra };
  const result = await engine.generate(request, (text, tokens, _e, ids) => pieces.push({ text, tokens, ids }), AbortSignal.timeout(30_000));
  return { pieces, text: pieces.map((p) => p.text).join(""), result };
}

/** Cuts `whole` after each piece and resumes from the ids; returns the boundaries whose splice differs. */
async function spliceEveryBoundary(engine: Engine, prompt: Prompt): Promise<{ boundaries: number; wrong: string[] }> {
  const whole = await generate(engine, prompt);
  const promptIds = whole.pieces[0]?.ids?.prompt;
  assert.ok(promptIds !== undefined && promptIds.length > 0, "the first piece brings the ids the model read");
  assert.ok(whole.pieces.length > 4, `a long enough answer to cut (${whole.pieces.length} pieces)`);
  const wrong: string[] = [];
  let boundaries = 0;
  for (let k = 1; k < whole.pieces.length; k++) {
    const head = whole.pieces.slice(0, k);
    const written = head.map((p) => p.text).join("");
    const tokens = head.reduce((n, p) => n + p.tokens, 0);
    const continuationIds: ContinuationIds = { prompt: promptIds, answer: head.flatMap((p) => p.ids!.ids) };
    const rest = await generate(engine, prompt, { continuation: written, continuationIds }, MAX_TOKENS - tokens);
    boundaries++;
    if (written + rest.text !== whole.text || rest.result.finishReason !== whole.result.finishReason) {
      wrong.push(`k=${k}: ${JSON.stringify(written)} + ${JSON.stringify(rest.text)} (${rest.result.finishReason})`);
    }
  }
  return { boundaries, wrong };
}

describe("token-exact continuation, llama-2 vocabulary", { skip: LLAMA2_ABSENT }, () => {
  let local: LocalEngine;
  let remote: RunningGateway;
  let remoteEngine: OpenAIEngine;

  before(async () => {
    local = new LocalEngine({ modelPath: TINY_MODEL, parallel: 1, contextSize: 512 });
    await local.start();
    remote = await startGateway({ models: [{ name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 1, context: 512 }] }] });
    remoteEngine = new OpenAIEngine({ url: remote.url, upstreamModel: "tiny", parallel: 1 });
    await remoteEngine.start();
  });

  after(async () => {
    await remoteEngine.close();
    await remote.close();
    await local.close();
  });

  for (const [name, prompt] of [["chat", CHAT], ["completion", TEXT]] as const) {
    test(`local ${name}: resuming from ids at every boundary gives the uninterrupted answer`, async () => {
      const { boundaries, wrong } = await spliceEveryBoundary(local, prompt);
      assert.deepEqual(wrong, [], `${wrong.length} of ${boundaries} boundaries spliced wrong`);
    });

    test(`remote ${name} (a second Flotilla): resuming from ids at every boundary gives the uninterrupted answer`, async () => {
      const { boundaries, wrong } = await spliceEveryBoundary(remoteEngine, prompt);
      assert.deepEqual(wrong, [], `${wrong.length} of ${boundaries} boundaries spliced wrong`);
    });
  }

  test("an id outside the vocabulary is a 400 naming prompt, and the server stays up", async () => {
    const res = await fetch(`${remote.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: [1, 999_999], max_tokens: 4 }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { param: string; message: string } };
    assert.equal(body.error.param, "prompt");
    assert.match(body.error.message, /vocabulary/);
    const ok = await fetch(`${remote.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: [1, 450, 1701], max_tokens: 4, temperature: 0, return_token_ids: true }),
    });
    assert.equal(ok.status, 200);
    const answer = (await ok.json()) as { choices: { text: string; token_ids: number[]; prompt_token_ids: number[] }[] };
    assert.deepEqual(answer.choices[0]!.prompt_token_ids, [1, 450, 1701], "ids are read exactly as given");
    assert.equal(answer.choices[0]!.token_ids.length, 4);
  });

  test("the dispatcher resumes on another replica from ids, at every boundary", async () => {
    const whole = await generate(local, CHAT);
    const failedOnce = new Set<string>();
    const replicas: Replica[] = [0, 1].map((i) => ({ id: `m/${i}`, model: "m", engine: dyingFirstAttempt(local, failedOnce), health: new ReplicaHealth(wallClock) }));
    const dispatcher = new Dispatcher(new Fleet([{ name: "m", replicas }]), roundRobin());
    const model = dispatcher.model("m");
    const wrong: string[] = [];
    for (let k = 1; k < whole.pieces.length; k++) {
      const id = `cut-${k}`;
      let text = "";
      const done = await dispatcher.run(model, { id, prompt: CHAT, sampling: { maxTokens: MAX_TOKENS, temperature: 0 } }, (t) => (text += t), AbortSignal.timeout(30_000));
      assert.ok(failedOnce.has(id), "the first attempt died");
      assert.equal(done.continuations, 1);
      if (text !== whole.text || done.finishReason !== whole.result.finishReason || done.usage.completionTokens !== whole.result.usage.completionTokens) {
        wrong.push(`k=${k}: ${JSON.stringify(text)} ${done.finishReason} ${done.usage.completionTokens}`);
      }
    }
    assert.deepEqual(wrong, []);

    /** Each request's first attempt dies after its k-th piece (k from the id), as a killed replica would. */
    function dyingFirstAttempt(inner: Engine, failed: Set<string>): Engine {
      return {
        kind: inner.kind,
        contextSize: inner.contextSize,
        start: () => inner.start(),
        isReady: () => inner.isReady(),
        load: () => inner.load(),
        countPromptTokens: (p, c) => inner.countPromptTokens(p, c),
        close: async () => undefined,
        async generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
          if (failed.has(request.id)) return inner.generate(request, onText, signal);
          failed.add(request.id);
          const cut = Number(request.id.slice(4));
          const stop = new AbortController();
          let seen = 0;
          const work = inner.generate(request, (t, n, e, ids) => {
            if (seen++ < cut) onText(t, n, e, ids);
            else stop.abort();
          }, AbortSignal.any([signal, stop.signal]));
          await work.catch(() => undefined);
          throw new FlotillaError("engine_unavailable", "killed");
        },
      };
    }
  });
});
