/**
 * The chaos tests' common parts: fake upstreams behind an in-process gateway
 * (remote `openai` engines), a raw SSE client that reports everything a
 * stream carried, and one assertion that an answer is exactly right.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import type { Fleet } from "../../src/fleet/fleet.js";
import { createGatewayWithShutdown, type GatewayOptions } from "../../src/gateway/server.js";
import { answerIds, chatBasis, MARK, MIN_PIECES, type Expected, type FakeMessage, type FakePrompt, type FakeUpstream, type FakeUpstreamOptions, startFakeUpstream } from "./fake-upstream.js";
import type { FastifyInstance } from "fastify";

export interface Front {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly fleet: Fleet;
  shutdown(graceMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFakes(n: number, opts: FakeUpstreamOptions = {}): Promise<FakeUpstream[]> {
  return Promise.all(Array.from({ length: n }, () => startFakeUpstream(opts)));
}

/**
 * A gateway whose model "m" is served by `fakes` as remote engines. `server`
 * takes fleet-file server keys (eject_*, ready_wait_ms), `replica`
 * per-replica keys (timeout_ms, parallel, ...), `gateway` createGateway
 * options (policy, ...).
 */
export async function frontOver(
  fakes: readonly { url: string }[],
  opts: { server?: Record<string, unknown>; replica?: Record<string, unknown>; gateway?: Omit<GatewayOptions, "fleet"> } = {},
): Promise<Front> {
  const config = parseFleetConfig({
    server: opts.server ?? {},
    models: [{ name: "m", replicas: fakes.map((f) => ({ engine: "openai", url: f.url, upstream_model: "fake", probe_interval_ms: 100, timeout_ms: 5_000, ...opts.replica })) }],
  });
  const fleet = buildFleet(config, { baseDir: ".", env: {} });
  await fleet.start(() => undefined);
  const slow = config.server.eject_slow_first_token_ms;
  // As `flotilla serve` does: these server keys are gateway options, not the fleet's.
  const gw = createGatewayWithShutdown({
    logLevel: "silent",
    requestTimeoutMs: 30_000,
    readyWaitMs: config.server.ready_wait_ms,
    ...(slow === undefined ? {} : { slowFirstTokenMs: slow }),
    ...opts.gateway,
    fleet,
  });
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    const closing = gw.app.close();
    // The test's own fetch keeps idle connections for 4 s; closing waits for them otherwise.
    gw.app.server.closeAllConnections();
    await closing;
  };
  return { url, app: gw.app, fleet, shutdown: gw.shutdown, close };
}

/** A conversation's long first message: its start spans the prefix owner's two 256-character blocks on every turn. */
export const opening = (c: number): string => `Conversation ${c}. ${"Here is the background for this conversation, repeated for length. ".repeat(10)}`;

/** One non-streaming chat turn to model "m" through `front`: the replica that answered (x-flotilla-replica) and the answer. */
export async function ask(front: Front, messages: readonly FakeMessage[], maxTokens = 8): Promise<{ replica: string; text: string }> {
  const res = await fetch(`${front.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages, max_tokens: maxTokens }) });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return { replica: res.headers.get("x-flotilla-replica") ?? "", text: body.choices[0]!.message.content };
}

/** Deterministic prompts with answers of at least `minPieces` pieces, so a kill at piece k lands mid-answer. */
export function chatPrompt(i: number, minPieces = MIN_PIECES): FakeMessage[] {
  for (let j = i; ; j += 1000) {
    const messages = [{ role: "user", content: `Question ${j}: tell me about the fleet.` }];
    if (answerIds(chatBasis(messages)).length >= minPieces) return messages;
  }
}

export function textPrompt(i: number, minPieces = MIN_PIECES): string {
  for (let j = i; ; j += 1000) {
    const prompt = `Story ${j}:${MARK}`;
    if (answerIds(prompt).length >= minPieces) return prompt;
  }
}

/** The body a client sends for `prompt`, streaming with one usage chunk. */
export function requestBody(prompt: FakePrompt, maxTokens: number | undefined, stream = true): Record<string, unknown> {
  const base = typeof prompt === "string" ? { model: "m", prompt } : { model: "m", messages: prompt };
  return {
    ...base,
    ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  };
}

export interface StreamResult {
  readonly status: number;
  readonly raw: string;
  readonly text: string;
  readonly finishReasons: string[];
  readonly usageChunks: { completion_tokens: number; prompt_tokens: number }[];
  readonly errors: unknown[];
  /** Every event parsed, and whether the stream ended with [DONE] after the last. */
  readonly done: boolean;
  readonly servedBy: { replica: string; attempts: number; continuations: number } | undefined;
  readonly ms: number;
}

type Chunk = {
  error?: unknown;
  choices?: { delta?: { content?: string }; text?: string; finish_reason?: string | null }[];
  usage?: { completion_tokens: number; prompt_tokens: number };
  x_flotilla?: { replica: string; attempts: number; continuations: number };
};

/** Reads a whole SSE body into what it carried. Every `data:` line must be JSON or [DONE]. */
export function parseSse(status: number, raw: string, ms: number): StreamResult {
  let text = "";
  const finishReasons: string[] = [];
  const usageChunks: StreamResult["usageChunks"] = [];
  const errors: unknown[] = [];
  let servedBy: StreamResult["servedBy"];
  const events = raw.split("\n\n");
  assert.equal(events.at(-1), "", "the stream ends with a blank line");
  let done = false;
  for (const event of events.slice(0, -1)) {
    assert.ok(!done, "nothing after [DONE]");
    assert.ok(event.startsWith("data: "), `an SSE data event: ${JSON.stringify(event.slice(0, 80))}`);
    const data = event.slice(6);
    if (data === "[DONE]") {
      done = true;
      continue;
    }
    const chunk = JSON.parse(data) as Chunk;
    if (chunk.error !== undefined) errors.push(chunk.error);
    const choice = chunk.choices?.[0];
    text += choice?.delta?.content ?? choice?.text ?? "";
    if (choice?.finish_reason != null) finishReasons.push(choice.finish_reason);
    if (chunk.usage != null) usageChunks.push(chunk.usage);
    if (chunk.x_flotilla !== undefined) servedBy = chunk.x_flotilla;
  }
  return { status, raw, text, finishReasons, usageChunks, errors, done, servedBy, ms };
}

/**
 * One streaming request. The client may leave early: `abortAfterChunks` after
 * that many SSE events (0: once the headers arrive), `abortAfterMs` after that
 * long (also while it waits in a queue, before any header); it then returns
 * what it had, with status 0 if no header had come. `requestId` is sent as
 * x-request-id, which the gateway passes on to the upstreams it tries.
 */
export async function stream(url: string, prompt: FakePrompt, maxTokens: number | undefined, opts: { abortAfterChunks?: number; abortAfterMs?: number; requestId?: string } = {}): Promise<StreamResult> {
  const t = performance.now();
  const path = typeof prompt === "string" ? "/v1/completions" : "/v1/chat/completions";
  const abort = new AbortController();
  const timer = opts.abortAfterMs === undefined ? undefined : setTimeout(() => abort.abort(), opts.abortAfterMs);
  let status = 0;
  let raw = "";
  try {
    const headers = { "content-type": "application/json", ...(opts.requestId === undefined ? {} : { "x-request-id": opts.requestId }) };
    const res = await fetch(`${url}${path}`, { method: "POST", headers, body: JSON.stringify(requestBody(prompt, maxTokens)), signal: abort.signal });
    status = res.status;
    if (opts.abortAfterChunks === undefined) {
      raw = await res.text();
      clearTimeout(timer);
      return parseStatus(res, raw, t);
    }
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    while ((raw.match(/\n\n/g)?.length ?? 0) < opts.abortAfterChunks) {
      const { value, done } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    abort.abort();
    await reader.cancel().catch(() => undefined);
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
  }
  return { status, raw, text: "", finishReasons: [], usageChunks: [], errors: [], done: false, servedBy: undefined, ms: performance.now() - t };
}

function parseStatus(res: Response, raw: string, t: number): StreamResult {
  const ms = performance.now() - t;
  if (res.status !== 200) return { status: res.status, raw, text: "", finishReasons: [], usageChunks: [], errors: [raw], done: false, servedBy: undefined, ms };
  return parseSse(res.status, raw, ms);
}

/** The answer arrived whole and exact: text byte for byte, one finish reason, one usage chunk, [DONE], no error. */
export function assertExact(r: StreamResult, expected: Expected, what = "answer"): void {
  assert.equal(r.status, 200, `${what}: status ${r.status}: ${r.raw.slice(0, 300)}`);
  assert.deepEqual(r.errors, [], `${what}: no error event: ${JSON.stringify(r.errors).slice(0, 300)}`);
  assert.equal(r.text, expected.text, `${what}: text`);
  assert.deepEqual(r.finishReasons, [expected.finishReason], `${what}: one finish reason`);
  assert.equal(r.usageChunks.length, 1, `${what}: exactly one usage chunk`);
  assert.equal(r.usageChunks[0]!.completion_tokens, expected.completionTokens, `${what}: completion_tokens`);
  assert.ok(r.done, `${what}: ends with [DONE]`);
}

/** Requests running or queued on the gateway's replicas, read from /admin/replicas as an operator would. */
export async function adminLoad(url: string): Promise<{ active: number; queued: number }> {
  const { data } = (await (await fetch(`${url}/admin/replicas`)).json()) as { data: { active: number; queued: number }[] };
  return data.reduce((n, r) => ({ active: n.active + r.active, queued: n.queued + r.queued }), { active: 0, queued: 0 });
}

/**
 * Arms a one-shot crash on every fake: the first to stream its `pieces`th
 * piece drops all its connections; the others are disarmed. Resolves with the
 * fake that crashed.
 */
export async function killServingAfter(fakes: readonly FakeUpstream[], pieces: number): Promise<FakeUpstream> {
  const struck = await Promise.race(fakes.map((f) => f.killAfter(pieces).then(() => f)));
  for (const f of fakes) f.disarm();
  return struck;
}
