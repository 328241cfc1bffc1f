/**
 * A deterministic fake OpenAI-compatible upstream (plain node:http, no
 * dependencies), for chaos tests and benches: every answer is a pure
 * function of the prompt, so a test knows the exact text, finish_reason and
 * completion_tokens of any request before it sends it, however many replicas
 * died on the way.
 *
 * In process:   const up = await startFakeUpstream({ tokensPerChunk: 2 }); up.setMode("die-mid-stream"); ...
 * As a process: node --import tsx test/chaos/fake-upstream.ts --port N [--mode good] [--tokens-per-chunk K]
 *                 [--token-delay-ms D] [--first-token-ms MS] [--after-pieces k] [--model NAME] [--no-token-ids]
 *               prints "fake-upstream listening on http://127.0.0.1:N" once it serves, so a bench can
 *               kill -9 or SIGSTOP it. `POST /fake/mode {"mode": ...}` switches its mode at runtime,
 *               `GET /fake/stats` reports what it served.
 *
 * The answer (the contract tests rely on):
 * - The answer is derived from a *basis* string. Chat: the messages rendered as
 *   `<|role|>content` each, then `<|assistant|>`. Completions with a text prompt:
 *   the prompt up to and including its last MARK ("⟂", U+27C2), or the whole
 *   prompt when it holds none. No piece contains MARK, so whatever follows the
 *   last MARK is text already written (a continuation). Prompts that need text
 *   continuations (Flotilla resumes a completion as prompt + written text) must
 *   therefore end with MARK.
 * - sha256(basis) seeds a PRNG that draws the answer's length (MIN_PIECES..MAX_PIECES
 *   pieces) and each piece from PIECES. A piece is one token; its token id is its
 *   index in PIECES.
 * - With `max_tokens` m (chat: or `max_completion_tokens`; completions default to 16
 *   as OpenAI's and vLLM's do; chat has no default) and r pieces still to write:
 *   r < m writes all r and finishes "stop" (the end token fits); otherwise it writes
 *   m and finishes "length". completion_tokens is the number of pieces written.
 * - Continuations, all of which must be a piece-aligned prefix of the answer (else 400):
 *   chat with `continue_final_message: true` and a final assistant message (the basis
 *   is the messages before it); a completions text prompt with text after its last MARK;
 *   a completions prompt of token ids: ids >= PROMPT_ID_OFFSET are the basis's UTF-8
 *   bytes (byte + PROMPT_ID_OFFSET), the ids after them are answer pieces already written.
 *   Only the rest of the answer is streamed, and max_tokens counts only new pieces.
 * - `return_token_ids: true` (vLLM): the first chunk carries `prompt_token_ids`
 *   (basis bytes + PROMPT_ID_OFFSET, then the ids of any continuation), top-level
 *   (as vLLM's chat does; completions also carry it in the choice, as vLLM's
 *   completions do), and every chunk's choice carries `token_ids`. So a client can
 *   resume any answer on /v1/completions with prompt = prompt_token_ids + token_ids so far.
 * - usage.prompt_tokens is the length of prompt_token_ids. `stream_options.include_usage`
 *   adds one final usage chunk (choices: []); `continuous_usage_stats` adds the
 *   running usage to every chunk, as vLLM does. finish_reason rides on the last
 *   content chunk, as vLLM sends it.
 *
 * Modes (switchable at runtime; a request keeps the mode it arrived under):
 * good; hang-after-headers (200 and SSE headers, then nothing); hang-before-headers
 * (reads the request, never answers); http-500; malformed-sse (after `afterPieces`
 * pieces a `data: {not json` line, then [DONE]); slow-first-token (headers at once,
 * the first piece after `firstTokenMs`, default 5,000); die-mid-stream (destroys the
 * socket once the first chunk that reaches `afterPieces` pieces is flushed, unless that
 * chunk ends the answer; an answer with fewer pieces left is sent whole). GET /health answers `healthStatus` (200) in every mode.
 */
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** Ends every completions prompt whose answer may be resumed from text: what follows the last one was written by the model. */
export const MARK = "\u27c2";
/** Prompt token ids are the basis's UTF-8 bytes plus this; answer ids (piece indexes) are below it. */
export const PROMPT_ID_OFFSET = 100_000;
export const MIN_PIECES = 20;
export const MAX_PIECES = 60;
/** The context window /v1/models reports (vLLM's max_model_len): a resume from ids with no max_tokens of its own asks for the room left. */
export const MAX_MODEL_LEN = 1_000_000;

/**
 * The vocabulary. Ordinary words with leading spaces, multi-byte UTF-8, emoji
 * with zero-width joiners and skin tones, flags, line ends of every kind,
 * quotes and backslashes, and text that looks like SSE framing: whatever a
 * gateway might mangle when it parses, re-encodes or splits a stream.
 */
export const PIECES: readonly string[] = [
  " the",
  " fleet",
  " moves",
  " on",
  ",",
  ".",
  " token",
  " replica",
  " café",
  " naïve",
  " über",
  "é",
  "ü",
  " 中文",
  "字",
  " 日本語",
  " 👩‍👩‍👧",
  "🧑🏽‍🚀",
  " 🇫🇷",
  "🇯🇵",
  "\r\n",
  "\n\n",
  "\n",
  "\t",
  '"',
  "\\",
  '\\"',
  ' "quoted"',
  "data: [DONE]",
  "\n\ndata: x",
  "data:",
  "event: error\n",
  ": comment",
  " {",
  "}",
  "\u2028",
  " Ω≈ç√",
  " 1",
  "0",
  " <|im_end|>",
];

export type FakeMode = "good" | "hang-after-headers" | "hang-before-headers" | "http-500" | "malformed-sse" | "slow-first-token" | "die-mid-stream";
export const MODES: readonly FakeMode[] = ["good", "hang-after-headers", "hang-before-headers", "http-500", "malformed-sse", "slow-first-token", "die-mid-stream"];

export interface FakeMessage {
  readonly role: string;
  readonly content: string;
}

/** A client's prompt: a completions text prompt, or chat messages. */
export type FakePrompt = string | readonly FakeMessage[];

export interface Expected {
  /** The answer text exactly as a client must receive it. */
  readonly text: string;
  /** Token ids of the pieces written. */
  readonly ids: readonly number[];
  readonly finishReason: "stop" | "length";
  readonly completionTokens: number;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). Also for tests that need seeded random points. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The basis of a chat: every message, as a chat template would render it, then the assistant's turn. */
export function chatBasis(messages: readonly FakeMessage[]): string {
  return messages.map((m) => `<|${m.role}|>${m.content}`).join("") + "<|assistant|>";
}

/** A completions prompt split at its last MARK: the basis, and the text after it (written already). */
export function splitTextPrompt(prompt: string): { basis: string; written: string } {
  const at = prompt.lastIndexOf(MARK);
  return at < 0 ? { basis: prompt, written: "" } : { basis: prompt.slice(0, at + MARK.length), written: prompt.slice(at + MARK.length) };
}

/** The whole answer to a basis, as piece ids, before any max_tokens. */
export function answerIds(basis: string): number[] {
  const seed = createHash("sha256").update(basis, "utf8").digest().readUInt32BE(0);
  const random = seededRandom(seed);
  const n = MIN_PIECES + Math.floor(random() * (MAX_PIECES - MIN_PIECES + 1));
  return Array.from({ length: n }, () => Math.floor(random() * PIECES.length));
}

export const piecesText = (ids: readonly number[]): string => ids.map((id) => PIECES[id]!).join("");

/** The pieces written after `written` pieces of the answer, under max_tokens, and why it ends. */
function plan(full: readonly number[], written: number, maxTokens: number | undefined): { ids: number[]; finishReason: "stop" | "length" } {
  const remaining = full.length - written;
  if (maxTokens === undefined || remaining < maxTokens) return { ids: full.slice(written), finishReason: "stop" };
  return { ids: full.slice(written, written + maxTokens), finishReason: "length" };
}

/**
 * What a client must receive for `prompt` (chat messages, or a completions
 * prompt that ends with MARK) with `maxTokens`, through any number of
 * failovers and continuations.
 */
export function expectedAnswer(prompt: FakePrompt, maxTokens?: number): Expected {
  const basis = typeof prompt === "string" ? splitTextPrompt(prompt).basis : chatBasis(prompt);
  const { ids, finishReason } = plan(answerIds(basis), 0, maxTokens);
  return { text: piecesText(ids), ids, finishReason, completionTokens: ids.length };
}

/** The UTF-8 bytes of a basis as the fake's prompt token ids. */
export function basisIds(basis: string): number[] {
  return [...Buffer.from(basis, "utf8")].map((b) => b + PROMPT_ID_OFFSET);
}

// ---------------------------------------------------------------------------
// The server

export interface FakeUpstreamOptions {
  /** 0 (default): any free port. */
  readonly port?: number;
  readonly host?: string;
  readonly mode?: FakeMode;
  /** Pieces per SSE chunk (default 1). */
  readonly tokensPerChunk?: number;
  /** Between chunks, ms (default 0: the next chunk in the next turn of the event loop). */
  readonly tokenDelayMs?: number;
  /** slow-first-token: the first piece after this long (default 5,000 ms). */
  readonly firstTokenMs?: number;
  /** die-mid-stream and malformed-sse strike once this many pieces were sent (default 3). */
  readonly afterPieces?: number;
  /** The model name /v1/models lists and chunks carry (any requested name is accepted). Default "fake". */
  readonly model?: string;
  /** false: ignore return_token_ids, as llama-server and vLLM before 0.10.2 do, so clients must resume from text. Default true. */
  readonly tokenIds?: boolean;
}

export interface RequestInfo {
  /** 1, 2, ... in order of arrival at this server. */
  readonly seq: number;
  /** The x-request-id header it came with (Flotilla passes its request id on), if any. */
  readonly requestId: string | undefined;
  readonly endpoint: "chat" | "completion";
  readonly stream: boolean;
  readonly mode: FakeMode;
  /** How the request resumed an answer. */
  readonly continuation: "none" | "text" | "ids";
  /** Answer pieces already written before this request (its continuation). */
  readonly written: number;
  readonly maxTokens: number | undefined;
  /** Pieces sent so far. */
  sent: number;
  /** How it ended: done (whole answer sent), closed (the client went away), killed (this server cut it), malformed (a line not JSON, then [DONE]), rejected (4xx/5xx). */
  outcome?: "done" | "closed" | "killed" | "malformed" | "rejected";
}

export interface FakeStats {
  requests: number;
  /** Generation requests open now (arrived, not yet ended). */
  active: number;
  textContinuations: number;
  idContinuations: number;
  piecesSent: number;
  byOutcome: Record<string, number>;
}

export interface FakeUpstream {
  readonly url: string;
  readonly port: number;
  readonly stats: Readonly<FakeStats>;
  /** "request" (RequestInfo), "chunk" (RequestInfo, after each content chunk is written), "end" (RequestInfo). */
  readonly events: EventEmitter;
  get mode(): FakeMode;
  setMode(mode: FakeMode, opts?: { firstTokenMs?: number; afterPieces?: number; tokensPerChunk?: number; tokenDelayMs?: number }): void;
  /** What GET /health answers (200 unless told). */
  setHealth(status: number): void;
  /**
   * One-shot, in-process crash: the first time any stream reaches `pieces`
   * pieces sent, every connection of this server is destroyed as soon as
   * that chunk is flushed to the socket (the server keeps listening).
   * Resolves when it has struck.
   */
  killAfter(pieces: number): Promise<RequestInfo>;
  /** Withdraws a killAfter that has not struck (its promise never settles). */
  disarm(): void;
  /** Destroys every open connection now (a crash as the client sees it); keeps listening. */
  dropConnections(): void;
  /** Resolves once `check(stats)` holds, evaluated on every request, chunk and end; rejects after `timeoutMs`. */
  waitFor(check: (stats: Readonly<FakeStats>) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

class BadRequest extends Error {}

interface Job {
  readonly endpoint: "chat" | "completion";
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly continuousUsage: boolean;
  readonly returnIds: boolean;
  readonly continuation: "none" | "text" | "ids";
  readonly promptIds: readonly number[];
  readonly written: number;
  readonly maxTokens: number | undefined;
  /** The pieces to send and how the answer ends. */
  readonly ids: readonly number[];
  readonly finishReason: "stop" | "length";
}

type Body = Record<string, unknown>;

function contentOf(content: unknown, at: string): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p: { text?: unknown }) => (typeof p?.text === "string" ? p.text : "")).join("");
  throw new BadRequest(`${at}.content must be a string or a list of parts`);
}

function maxTokensOf(body: Body, endpoint: "chat" | "completion"): number | undefined {
  const given = body.max_completion_tokens ?? body.max_tokens;
  if (given == null) return endpoint === "completion" ? 16 : undefined;
  if (typeof given !== "number" || !Number.isInteger(given) || given < 1) throw new BadRequest(`max_tokens must be an integer >= 1, got ${JSON.stringify(given)}`);
  return given;
}

/** How many pieces of `full` the text `written` covers; it must end on a piece boundary. */
function writtenPieces(full: readonly number[], written: string): number {
  if (written.length === 0) return 0;
  let at = 0;
  for (let i = 0; i < full.length; i++) {
    const piece = PIECES[full[i]!]!;
    if (!written.startsWith(piece, at)) break;
    at += piece.length;
    if (at === written.length) return i + 1;
  }
  throw new BadRequest(`the text to continue (${JSON.stringify(written.slice(0, 80))}) is not a piece-aligned prefix of this prompt's answer`);
}

/** Turns a request body into what to send; a malformed or inconsistent one is a 400. */
function jobOf(endpoint: "chat" | "completion", body: Body, tokenIds: boolean): Job {
  const streamOptions = (body.stream_options ?? {}) as Body;
  const common = {
    endpoint,
    stream: body.stream === true,
    includeUsage: streamOptions.include_usage === true,
    continuousUsage: streamOptions.continuous_usage_stats === true,
    returnIds: tokenIds && body.return_token_ids === true,
    maxTokens: maxTokensOf(body, endpoint),
  };
  let basis: string;
  let full: number[];
  let written = 0;
  let continuation: Job["continuation"] = "none";
  if (endpoint === "chat") {
    if (!Array.isArray(body.messages) || body.messages.length === 0) throw new BadRequest("messages must be a non-empty list");
    const messages = (body.messages as Body[]).map((m, i) => ({ role: String(m.role), content: contentOf(m.content, `messages[${i}]`) }));
    let prefill = "";
    if (body.continue_final_message === true) {
      if (messages.at(-1)?.role !== "assistant") throw new BadRequest("continue_final_message needs a final assistant message");
      if (body.add_generation_prompt !== false) throw new BadRequest("continue_final_message needs add_generation_prompt: false");
      prefill = messages.pop()!.content;
    }
    basis = chatBasis(messages);
    full = answerIds(basis);
    written = writtenPieces(full, prefill);
    if (written > 0) continuation = "text";
  } else {
    let prompt = body.prompt;
    if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) prompt = prompt[0];
    if (typeof prompt === "string") {
      const split = splitTextPrompt(prompt);
      basis = split.basis;
      full = answerIds(basis);
      written = writtenPieces(full, split.written);
      if (written > 0) continuation = "text";
    } else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => Number.isInteger(x) && (x as number) >= 0)) {
      const ids = prompt as number[];
      const head = ids.findIndex((id) => id < PROMPT_ID_OFFSET);
      const basisEnd = head < 0 ? ids.length : head;
      if (ids.slice(basisEnd).some((id) => id >= PROMPT_ID_OFFSET)) throw new BadRequest("prompt ids: basis bytes (>= 100000) must all come before answer piece ids");
      basis = Buffer.from(ids.slice(0, basisEnd).map((id) => id - PROMPT_ID_OFFSET)).toString("utf8");
      full = answerIds(basis);
      const answer = ids.slice(basisEnd);
      if (answer.length > full.length || answer.some((id, i) => id !== full[i])) throw new BadRequest("prompt ids: the answer ids are not a prefix of this prompt's answer");
      written = answer.length;
      if (written > 0) continuation = "ids";
    } else {
      throw new BadRequest("prompt must be a string or a list of token ids");
    }
  }
  const { ids, finishReason } = plan(full, written, common.maxTokens);
  return { ...common, continuation, written, promptIds: [...basisIds(basis), ...full.slice(0, written)], ids, finishReason };
}

const usageOf = (job: Job, completion: number): Body => ({ prompt_tokens: job.promptIds.length, completion_tokens: completion, total_tokens: job.promptIds.length + completion });

/** Groups the pieces to send into chunks of `k`; an answer with nothing left still gets one (empty) chunk to carry its finish. */
function chunksOf(ids: readonly number[], k: number): number[][] {
  if (ids.length === 0) return [[]];
  const out: number[][] = [];
  for (let i = 0; i < ids.length; i += k) out.push(ids.slice(i, i + k));
  return out;
}

export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  let mode: FakeMode = opts.mode ?? "good";
  let tokensPerChunk = opts.tokensPerChunk ?? 1;
  let tokenDelayMs = opts.tokenDelayMs ?? 0;
  let firstTokenMs = opts.firstTokenMs ?? 5_000;
  let afterPieces = opts.afterPieces ?? 3;
  let healthStatus = 200;
  const model = opts.model ?? "fake";
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const stats: FakeStats = { requests: 0, active: 0, textContinuations: 0, idContinuations: 0, piecesSent: 0, byOutcome: {} };
  const sockets = new Set<Socket>();
  let kill: { pieces: number; struck: (info: RequestInfo) => void } | undefined;
  let closed = false;

  const dropConnections = (): void => {
    for (const s of sockets) s.destroy();
  };

  const end = (info: RequestInfo, outcome: NonNullable<RequestInfo["outcome"]>): void => {
    if (info.outcome !== undefined) return;
    info.outcome = outcome;
    stats.active--;
    stats.byOutcome[outcome] = (stats.byOutcome[outcome] ?? 0) + 1;
    events.emit("end", info);
  };

  const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  const errorBody = (message: string, type: string): Body => ({ error: { message, type, param: null, code: null }, object: "error" });

  /** Streams a job's chunks on a timer; every write checks the response is still open. */
  function streamJob(job: Job, info: RequestInfo, res: ServerResponse, k: number, delay: number, firstDelay: number, strikeAt: number): void {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
    res.flushHeaders();
    if (info.mode === "hang-after-headers") return;
    const chat = job.endpoint === "chat";
    const head = { id: `${chat ? "chatcmpl" : "cmpl"}-fake-${info.seq}`, object: chat ? "chat.completion.chunk" : "text_completion", created: Math.floor(Date.now() / 1000), model };
    const write = (chunk: Body, flushed?: () => void): void => void res.write(`data: ${JSON.stringify({ ...head, ...chunk })}\n\n`, flushed);
    const promptIds = job.returnIds ? { prompt_token_ids: job.promptIds } : {};
    if (chat) {
      // The role comes first, as OpenAI and vLLM send it.
      write({ choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], ...promptIds, ...(job.continuousUsage ? { usage: usageOf(job, 0) } : {}) });
    }
    const chunks = chunksOf(job.ids, k);
    let i = 0;
    const step = (): void => {
      if (res.destroyed || closed) return;
      const ids = chunks[i]!;
      const last = i === chunks.length - 1;
      info.sent += ids.length;
      stats.piecesSent += ids.length;
      const text = piecesText(ids);
      const finish = last ? job.finishReason : null;
      const tokenIds = job.returnIds ? { token_ids: ids } : {};
      const choice = chat
        ? { index: 0, delta: { content: text }, logprobs: null, finish_reason: finish, ...tokenIds }
        : { index: 0, text, logprobs: null, finish_reason: finish, ...tokenIds, ...(i === 0 ? promptIds : {}) };
      // A crash strikes once this chunk has reached the kernel, so the client surely holds exactly `sent` pieces.
      let crash: (() => void) | undefined;
      if (kill !== undefined && info.sent >= kill.pieces) {
        const { struck } = kill;
        kill = undefined;
        crash = () => {
          dropConnections();
          struck(info);
        };
      } else if (!last && info.sent >= strikeAt && info.mode === "die-mid-stream") {
        crash = () => res.socket?.destroy();
      }
      write({ choices: [choice], ...(!chat && i === 0 ? promptIds : {}), ...(job.continuousUsage ? { usage: usageOf(job, info.sent) } : {}) }, crash);
      events.emit("chunk", info);
      i++;
      if (crash !== undefined) return end(info, "killed");
      if (!last && info.sent >= strikeAt) {
        if (info.mode === "malformed-sse") {
          res.end("data: {not json\n\ndata: [DONE]\n\n");
          end(info, "malformed");
          return;
        }
      }
      if (!last) return void schedule(step, delay);
      if (job.includeUsage) write({ choices: [], usage: usageOf(job, info.sent) });
      res.end("data: [DONE]\n\n");
      end(info, "done");
    };
    schedule(step, firstDelay);
  }

  /** A whole answer at once, after the time its chunks would have taken. */
  function answerWhole(job: Job, info: RequestInfo, res: ServerResponse, delayMs: number): void {
    if (info.mode === "hang-after-headers") {
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      return;
    }
    schedule(() => {
      if (res.destroyed || closed) return;
      if (info.mode === "die-mid-stream" || info.mode === "malformed-sse") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"id":"broken","choices":[{"not json');
        if (info.mode === "die-mid-stream") {
          end(info, "killed");
          return void res.socket?.destroy();
        }
        res.end();
        return end(info, "malformed");
      }
      const chat = job.endpoint === "chat";
      const text = piecesText(job.ids);
      const tokenIds = job.returnIds ? { token_ids: job.ids } : {};
      const promptIds = job.returnIds ? { prompt_token_ids: job.promptIds } : {};
      const choice = chat
        ? { index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: job.finishReason, ...tokenIds }
        : { index: 0, text, logprobs: null, finish_reason: job.finishReason, ...tokenIds, ...promptIds };
      info.sent = job.ids.length;
      stats.piecesSent += job.ids.length;
      sendJson(res, 200, { id: `${chat ? "chatcmpl" : "cmpl"}-fake-${info.seq}`, object: chat ? "chat.completion" : "text_completion", created: Math.floor(Date.now() / 1000), model, choices: [choice], usage: usageOf(job, job.ids.length), ...promptIds });
      end(info, "done");
    }, delayMs);
  }

  function generate(endpoint: "chat" | "completion", body: Body, requestId: string | undefined, res: ServerResponse): void {
    const reqMode = mode;
    stats.requests++;
    stats.active++;
    const info: RequestInfo = { seq: stats.requests, requestId, endpoint, stream: body.stream === true, mode: reqMode, continuation: "none", written: 0, maxTokens: undefined, sent: 0 };
    res.once("close", () => end(info, "closed"));
    if (reqMode === "hang-before-headers") return void events.emit("request", info);
    if (reqMode === "http-500") {
      events.emit("request", info);
      sendJson(res, 500, errorBody("fake upstream: internal error (mode http-500)", "internal_error"));
      return end(info, "rejected");
    }
    let job: Job;
    try {
      job = jobOf(endpoint, body, opts.tokenIds ?? true);
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      events.emit("request", info);
      sendJson(res, 400, errorBody(`fake upstream: ${err.message}`, "invalid_request_error"));
      return end(info, "rejected");
    }
    Object.assign(info, { continuation: job.continuation, written: job.written, maxTokens: job.maxTokens });
    if (job.continuation === "text") stats.textContinuations++;
    if (job.continuation === "ids") stats.idContinuations++;
    events.emit("request", info);
    const firstDelay = reqMode === "slow-first-token" ? firstTokenMs : tokenDelayMs;
    if (job.stream) streamJob(job, info, res, tokensPerChunk, tokenDelayMs, firstDelay, afterPieces);
    else answerWhole(job, info, res, firstDelay + tokenDelayMs * Math.max(0, chunksOf(job.ids, tokensPerChunk).length - 1));
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/health") return void res.writeHead(healthStatus, { "content-type": "text/plain" }).end(healthStatus === 200 ? "ok" : "unhealthy");
    if (req.method === "GET" && path === "/v1/models") return sendJson(res, 200, { object: "list", data: [{ id: model, object: "model", created: 0, owned_by: "fake", max_model_len: MAX_MODEL_LEN }] });
    if (req.method === "GET" && path === "/fake/stats") return sendJson(res, 200, { mode, ...stats });
    if (req.method !== "POST" || (path !== "/v1/chat/completions" && path !== "/v1/completions" && path !== "/fake/mode")) {
      return sendJson(res, 404, errorBody(`fake upstream: no route ${req.method} ${path}`, "invalid_request_error"));
    }
    const parts: Buffer[] = [];
    req.on("data", (b: Buffer) => parts.push(b));
    req.on("end", () => {
      let body: Body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8")) as Body;
        if (body === null || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
      } catch {
        return sendJson(res, 400, errorBody("fake upstream: the body is not a JSON object", "invalid_request_error"));
      }
      if (path === "/fake/mode") {
        if (!MODES.includes(body.mode as FakeMode)) return sendJson(res, 400, errorBody(`mode must be one of ${MODES.join(", ")}`, "invalid_request_error"));
        api.setMode(body.mode as FakeMode, body as never);
        return sendJson(res, 200, { mode });
      }
      const requestId = req.headers["x-request-id"];
      generate(path === "/v1/chat/completions" ? "chat" : "completion", body, typeof requestId === "string" ? requestId : undefined, res);
    });
  };

  const server: Server = createServer(handle);
  server.keepAliveTimeout = 30_000;
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", fail);
      ok();
    });
  });
  const { port } = server.address() as AddressInfo;

  const api: FakeUpstream = {
    url: `http://${opts.host ?? "127.0.0.1"}:${port}`,
    port,
    stats,
    events,
    get mode() {
      return mode;
    },
    setMode(next, o = {}) {
      mode = next;
      if (o.firstTokenMs !== undefined) firstTokenMs = o.firstTokenMs;
      if (o.afterPieces !== undefined) afterPieces = o.afterPieces;
      if (o.tokensPerChunk !== undefined) tokensPerChunk = o.tokensPerChunk;
      if (o.tokenDelayMs !== undefined) tokenDelayMs = o.tokenDelayMs;
    },
    setHealth(status) {
      healthStatus = status;
    },
    killAfter(pieces) {
      return new Promise<RequestInfo>((struck) => (kill = { pieces, struck }));
    },
    disarm() {
      kill = undefined;
    },
    dropConnections,
    waitFor(check, timeoutMs = 5_000, what = "condition") {
      if (check(stats)) return Promise.resolve();
      return new Promise<void>((ok, fail) => {
        const onEvent = (): void => {
          if (!check(stats)) return;
          done();
          ok();
        };
        const timer = setTimeout(() => {
          done();
          fail(new Error(`fake upstream ${port}: timed out after ${timeoutMs} ms waiting for ${what}; stats ${JSON.stringify(stats)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          for (const e of ["request", "chunk", "end"]) events.off(e, onEvent);
        };
        for (const e of ["request", "chunk", "end"]) events.on(e, onEvent);
      });
    },
    async close() {
      closed = true;
      const stopped = new Promise<void>((r) => server.close(() => r()));
      dropConnections();
      await stopped;
    },
  };
  return api;
}

/** setImmediate for 0 ms (the next turn, without the timer's 1 ms floor), else setTimeout. */
function schedule(fn: () => void, ms: number): void {
  if (ms <= 0) setImmediate(fn);
  else setTimeout(fn, ms);
}

// ---------------------------------------------------------------------------
// As a child process

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(args: readonly string[]): Promise<void> {
  const num = (name: string): number | undefined => {
    const v = flag(args, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
    return n;
  };
  const mode = (flag(args, "mode") ?? "good") as FakeMode;
  if (!MODES.includes(mode)) throw new Error(`--mode must be one of ${MODES.join(", ")}`);
  const o: { -readonly [K in keyof FakeUpstreamOptions]: FakeUpstreamOptions[K] } = { mode };
  const port = num("port");
  if (port !== undefined) o.port = port;
  const k = num("tokens-per-chunk");
  if (k !== undefined) o.tokensPerChunk = Math.max(1, k);
  const d = num("token-delay-ms");
  if (d !== undefined) o.tokenDelayMs = d;
  const f = num("first-token-ms");
  if (f !== undefined) o.firstTokenMs = f;
  const a = num("after-pieces");
  if (a !== undefined) o.afterPieces = a;
  const m = flag(args, "model");
  if (m !== undefined) o.model = m;
  if (args.includes("--no-token-ids")) o.tokenIds = false;
  const up = await startFakeUpstream(o);
  process.stdout.write(`fake-upstream listening on ${up.url} mode=${mode}\n`);
  const stop = (): void => void up.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`fake-upstream: ${(err as Error).message}\n`);
    process.exit(2);
  });
}
