import { Pool, errors as undiciErrors } from "undici";
import { FlotillaError } from "../core/errors.js";
import { likelyPromptTokens, type ChatMessage, type EmbeddingInput, type EmbeddingRequest, type EmbeddingResult, type FinishReason, type GenerationRequest, type GenerationResult, type ResponseFormat, type TokenLogprob, type ToolUse } from "../core/request.js";
import type { ChunkIds, Engine, EngineLoad, TextSink } from "./engine.js";
import { withPeerCount, withReport } from "./engine-metrics.js";
import { MetricsScraper } from "./metrics-scraper.js";
import { SlotPool } from "./slots.js";
import { SseLineDecoder } from "./sse-decoder.js";
import { postStreaming } from "./upstream-post.js";

export interface OpenAIEngineOptions {
  /** Server root, e.g. http://gpu-7:8000 (llama-server, vLLM, SGLang, Ollama). */
  readonly url: string;
  /** The model name the upstream server knows. */
  readonly upstreamModel: string;
  readonly apiKey?: string;
  /** Requests sent at once; more wait here, up to maxQueue. */
  readonly parallel?: number;
  readonly maxQueue?: number;
  readonly contextSize?: number;
  /** Keep-alive connections kept open to the server. */
  readonly connections?: number;
  readonly probeIntervalMs?: number;
  readonly requestTimeoutMs?: number;
  /**
   * How often the server's own /metrics is scraped for the load other
   * clients put on it (engine-metrics.ts); 0 turns scraping off. Default 1000.
   */
  readonly metricsIntervalMs?: number;
  /** Bearer token for /metrics where it differs from apiKey: a Flotilla upstream's admin token. */
  readonly metricsToken?: string;
  /** The replica's name in log lines (they give the server's URL too); default the upstream model's name. */
  readonly name?: string;
  /** Where scrape problems are reported (default stderr). */
  readonly log?: (message: string) => void;
}

type UpstreamLogprobs = {
  /** Chat: one entry per token. */
  content?: { token: string; logprob: number; top_logprobs?: { token: string; logprob: number }[] }[] | null;
  /** Completions (legacy): parallel arrays. */
  tokens?: string[];
  token_logprobs?: (number | null)[];
  top_logprobs?: (Record<string, number> | null)[] | null;
};

/** One tool call's piece in a streamed delta, OpenAI's shape: the first names the call, the rest add to its arguments. */
type UpstreamToolCall = { index?: number; id?: string; function?: { name?: string; arguments?: string } };

type UpstreamChunk = {
  choices?: {
    delta?: { content?: string | null; tool_calls?: UpstreamToolCall[] | null };
    text?: string;
    finish_reason?: string | null;
    logprobs?: UpstreamLogprobs | null;
    /** vLLM's return_token_ids: this chunk's token ids, and (completions) the prompt's with the first. */
    token_ids?: number[] | null;
    prompt_token_ids?: number[] | null;
  }[];
  /** vLLM's return_token_ids on chat: the rendered prompt's ids, in the first chunk. */
  prompt_token_ids?: number[] | null;
  usage?: { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } | null } | null;
  error?: { message?: string } | string;
};

/**
 * Any OpenAI-compatible server. Streams over SSE through a pooled keep-alive
 * client; readiness comes from /health where the server has it, else /v1/models.
 */
export class OpenAIEngine implements Engine {
  readonly kind = "openai";
  /** The context window as configured, else as the server reports it (vLLM's max_model_len on /v1/models). */
  #contextSize: number | undefined;
  readonly #opts: OpenAIEngineOptions;
  readonly #pool: Pool;
  readonly #slots: SlotPool<number>;
  readonly #headers: Record<string, string>;
  #ready = false;
  #probeTimer: NodeJS.Timeout | undefined;
  #probing = false;
  #closed = false;
  /** Ask for vLLM's extensions (token ids, running usage) until the server refuses them by name. */
  #extensions = true;
  readonly #scraper: MetricsScraper | undefined;
  /** Requests other gateways say they have on this engine (gateway/peer-sync.ts); undefined: no peers are heard. */
  #peers: (() => number) | undefined;
  /** Requests sent since start: with the active count, bounds how many of the engine's reported requests are ours. */
  #sent = 0;

  constructor(opts: OpenAIEngineOptions) {
    this.#opts = opts;
    this.#contextSize = opts.contextSize;
    const origin = new URL(opts.url);
    this.#pool = new Pool(origin.origin, {
      connections: opts.connections ?? 32,
      keepAliveTimeout: 30_000,
      headersTimeout: opts.requestTimeoutMs ?? 60_000,
      bodyTimeout: opts.requestTimeoutMs ?? 60_000,
    });
    const parallel = opts.parallel ?? 64;
    this.#slots = new SlotPool(Array.from({ length: parallel }, (_, i) => i), opts.maxQueue ?? 256);
    this.#headers = { "content-type": "application/json", accept: "text/event-stream" };
    if (opts.apiKey !== undefined) this.#headers.authorization = `Bearer ${opts.apiKey}`;
    this.#scraper = this.#scraperFor(opts, origin.origin);
  }

  /**
   * The replica as clients may read of it in an error. Never its URL: an
   * engine's address is the operator's, and the cause (kept for the log) may
   * name it too.
   */
  get #name(): string {
    return this.#opts.name ?? this.#opts.upstreamModel;
  }

  #scraperFor(opts: OpenAIEngineOptions, origin: string): MetricsScraper | undefined {
    const intervalMs = opts.metricsIntervalMs ?? 1_000;
    if (intervalMs <= 0) return undefined;
    const token = opts.metricsToken ?? opts.apiKey;
    return new MetricsScraper({
      pool: this.#pool,
      origin,
      model: opts.upstreamModel,
      intervalMs,
      ...(token === undefined ? {} : { token }),
      name: opts.name ?? opts.upstreamModel,
      log: opts.log ?? ((m) => process.stderr.write(`flotilla: ${m}\n`)),
      own: () => ({ active: this.#slots.active, sent: this.#sent }),
      peers: () => this.#peers?.() ?? 0,
    });
  }

  get contextSize(): number | undefined {
    return this.#contextSize;
  }

  async start(): Promise<void> {
    this.#scraper?.start();
    this.#ready = await this.#probe();
    this.#scheduleProbe();
  }

  /**
   * Probes on a timer: every probeIntervalMs while ready, and every 250 ms
   * while not, so a restarted server is back in rotation within a beat
   * rather than a whole interval later.
   */
  #scheduleProbe(): void {
    if (this.#closed) return;
    const interval = this.#opts.probeIntervalMs ?? 5_000;
    this.#probeTimer = setTimeout(() => {
      this.#probing = true;
      void this.#probe().then((ok) => {
        this.#probing = false;
        if (this.#closed) return;
        this.#ready = ok;
        this.#scheduleProbe();
      });
    }, this.#ready ? interval : Math.min(interval, 250));
    this.#probeTimer.unref();
  }

  /** After a failed request: probe at the not-ready pace from now, not when the ready-pace timer next fires. */
  #probeSoon(): void {
    if (this.#probing || this.#closed) return; // the probe in flight reschedules itself at that pace
    clearTimeout(this.#probeTimer);
    this.#scheduleProbe();
  }

  isReady(): boolean {
    return this.#ready && !this.#closed;
  }

  /**
   * Its own slots' load, joined by what other gateways say they run there
   * (countPeers) and by the engine's last fresh report of what other
   * clients run there (engine-metrics.ts withReport).
   */
  load(): EngineLoad {
    const s = this.#slots;
    const own = { active: s.active, queued: s.queued, slots: s.size, maxQueue: s.maxQueue };
    const fresh = this.#scraper?.fresh();
    const peers = this.#peers?.();
    if (fresh === undefined) return peers === undefined || peers === 0 ? own : withPeerCount(own, peers);
    return withReport(own, fresh.report, fresh.ownAtReport, fresh.ageMs, peers === undefined ? undefined : { now: peers, atReport: fresh.peersAtReport });
  }

  countPeers(peers: () => number): void {
    this.#peers = peers;
  }

  countPromptTokens(): number | undefined {
    return undefined;
  }

  generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    return this.#inSlot(signal, async () => {
      try {
        return await this.#stream(request, onText, signal);
      } catch (err) {
        if (!(err instanceof ExtensionsRefused) || !this.#extensions) throw err;
        // A strict server (OpenAI's own) refuses fields it does not know: ask again without them, and from now on.
        this.#extensions = false;
        return await this.#stream(request, onText, signal);
      }
    });
  }

  /**
   * The upstream's /v1/embeddings, asked for floats (whatever the client
   * asked: the gateway encodes), with `dimensions` passed on for the
   * upstream to allow or refuse.
   */
  embed(request: EmbeddingRequest, signal: AbortSignal): Promise<EmbeddingResult> {
    return this.#inSlot(signal, async () => {
      const inputs = request.inputs;
      const res = await this.#pool.request({
        method: "POST",
        path: "/v1/embeddings",
        headers: { ...this.#headers, accept: "application/json", "x-request-id": request.id },
        body: JSON.stringify({
          model: this.#opts.upstreamModel,
          input: inputs.map((i) => (i.kind === "text" ? i.text : i.ids)),
          encoding_format: "float",
          ...(request.dimensions === undefined ? {} : { dimensions: request.dimensions }),
        }),
        signal,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw upstreamError(res.statusCode, text, "input");
      return embeddingsOf(text, inputs, this.#name);
    });
  }

  /** One request to the upstream in one of this replica's slots, its failure in the gateway's terms. */
  async #inSlot<T>(signal: AbortSignal, send: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new FlotillaError("engine_unavailable", "the engine is shut down");
    const slot = await this.#slots.acquire(signal);
    this.#sent++;
    try {
      return await send();
    } catch (err) {
      throw this.#failure(err, signal);
    } finally {
      this.#slots.release(slot);
    }
  }

  /** Any failure of a request to the upstream as the gateway's error; one that could not reach it starts probing. */
  #failure(err: unknown, signal: AbortSignal): FlotillaError {
    if (signal.aborted) return new FlotillaError("cancelled", "generation was cancelled", { cause: err });
    if (err instanceof FlotillaError) return err;
    if (isConnectionError(err)) {
      this.#ready = false;
      this.#probeSoon();
      return new FlotillaError("engine_unavailable", `cannot reach replica ${this.#name} (${failureKind(err)})`, { cause: err });
    }
    return new FlotillaError("engine_error", `replica ${this.#name} failed (${failureKind(err)})`, { cause: err });
  }

  async #stream(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    const { path, body } = this.#body(request);
    let finish: FinishReason | undefined;
    let usage: UpstreamChunk["usage"];
    const counter = new ChunkTokens();
    const ids = new UpstreamIds(Array.isArray(body.prompt) ? (body.prompt as number[]) : undefined);
    const logprobs: TokenLogprob[] | undefined = request.sampling.logprobs === undefined ? undefined : [];
    const decoder = new SseLineDecoder();
    const chat = path === CHAT_PATH;
    const calls = new UpstreamCalls(onText);
    const onData = (data: string): void => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data) as UpstreamChunk;
      if (chunk.error !== undefined) {
        const message = typeof chunk.error === "string" ? chunk.error : (chunk.error.message ?? "unknown error");
        throw new FlotillaError("engine_error", `upstream error mid-stream: ${message}`);
      }
      const choice = chunk.choices?.[0];
      ids.readPrompt(chunk.prompt_token_ids ?? choice?.prompt_token_ids);
      if (choice !== undefined) {
        const text = chat ? choice.delta?.content : choice.text;
        if (typeof text === "string" && text.length > 0) {
          const { tokens, estimated } = counter.count(chunk.usage?.completion_tokens, choice.logprobs, choice.token_ids);
          onText(text, tokens, estimated, ids.of(choice.token_ids));
        }
        for (const call of choice.delta?.tool_calls ?? []) calls.piece(call, () => counter.count(chunk.usage?.completion_tokens, choice.logprobs, choice.token_ids));
        if (choice.finish_reason != null) finish = finishOf(choice.finish_reason);
        if (logprobs !== undefined && choice.logprobs != null) collectLogprobs(choice.logprobs, logprobs);
      }
      if (chunk.usage != null) usage = chunk.usage;
    };
    const post = { path, headers: { ...this.#headers, "x-request-id": request.id }, body: JSON.stringify(body), signal };
    const answer = await postStreaming(this.#pool, post, (bytes) => decoder.push(bytes, onData));
    if ("text" in answer) {
      if (answer.statusCode === 400 && this.#extensions && /return_token_ids|continuous_usage_stats/.test(answer.text)) throw new ExtensionsRefused();
      throw upstreamError(answer.statusCode, answer.text);
    }
    if (finish === undefined) {
      throw new FlotillaError("engine_error", `replica ${this.#name} closed the stream before it finished`);
    }
    const reported = usage?.completion_tokens != null;
    return {
      // A server that ignores the request for logprobs reports none, rather than an empty list.
      ...(logprobs === undefined || logprobs.length === 0 ? {} : { logprobs }),
      finishReason: finish,
      usage: {
        promptTokens: usage?.prompt_tokens ?? 0,
        // A server that sends no usage still streamed text: what the chunks were counted as.
        completionTokens: reported ? usage!.completion_tokens! : counter.total,
        cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
      },
      ...(reported && usage?.prompt_tokens != null ? {} : { usageEstimated: true }),
    };
  }

  /**
   * The upstream request. Token ids are asked for (vLLM's return_token_ids;
   * servers without it ignore the field) so that another replica can resume
   * from them. A resume whose ids are known goes to /v1/completions with the
   * ids as the prompt, read as they are (vLLM, SGLang, llama-server and
   * Flotilla accept them); the end of the turn is then the model's
   * end-of-generation token. Without ids, a chat resumes by vLLM's and
   * SGLang's continue_final_message, and the server re-tokenises the text.
   */
  #body(request: GenerationRequest): { path: string; body: Record<string, unknown> } {
    const { prompt, sampling } = request;
    const body: Record<string, unknown> = {
      model: this.#opts.upstreamModel,
      stream: true,
      // continuous_usage_stats (vLLM, SGLang): a running token count in every chunk, so a chunk of
      // several tokens counts as several; servers without it ignore the field.
      stream_options: this.#extensions ? { include_usage: true, continuous_usage_stats: true } : { include_usage: true },
      ...(this.#extensions ? { return_token_ids: true } : {}),
    };
    const continuation = request.continuation ?? "";
    const resume = request.continuationIds;
    let path = COMPLETIONS_PATH;
    // A completion defaults to 16 tokens (OpenAI, vLLM, SGLang): resuming an answer with no limit of its own from ids needs
    // the room left in the window, and without a known window the chat resumes from text instead.
    const idsPrompt = resume === undefined ? undefined : [...resume.prompt, ...resume.answer];
    const room = idsPrompt === undefined || this.#contextSize === undefined ? undefined : this.#contextSize - idsPrompt.length;
    const byIds = idsPrompt !== undefined && (sampling.maxTokens !== undefined || (room !== undefined && room > 0));
    if (byIds) {
      body.prompt = idsPrompt;
      body.max_tokens = sampling.maxTokens ?? room;
    } else if (prompt.kind === "tokens") {
      if (continuation.length > 0) throw new FlotillaError("invalid_request", "a prompt of token ids cannot be resumed from text on a remote engine", { param: "prompt" });
      body.prompt = prompt.ids;
    } else if (prompt.kind === "text") body.prompt = prompt.text + continuation;
    else {
      path = CHAT_PATH;
      const messages = prompt.messages.map(messageBody);
      body.messages = continuation.length === 0 ? messages : [...messages, { role: "assistant", content: continuation }];
      if (request.tools !== undefined) Object.assign(body, toolsBody(request.tools));
      if (continuation.length > 0) {
        body.continue_final_message = true;
        body.add_generation_prompt = false;
      }
    }
    if (sampling.maxTokens !== undefined) body.max_tokens = sampling.maxTokens;
    if (sampling.temperature !== undefined) body.temperature = sampling.temperature;
    if (request.format !== undefined) body.response_format = responseFormatBody(request.format);
    if (sampling.frequencyPenalty !== undefined) body.frequency_penalty = sampling.frequencyPenalty;
    if (sampling.presencePenalty !== undefined) body.presence_penalty = sampling.presencePenalty;
    if (sampling.topP !== undefined) body.top_p = sampling.topP;
    if (sampling.topK !== undefined) body.top_k = sampling.topK;
    if (sampling.seed !== undefined) body.seed = sampling.seed;
    if (sampling.stop !== undefined && sampling.stop.length > 0) body.stop = sampling.stop;
    if (sampling.logprobs !== undefined) {
      if (path === CHAT_PATH) {
        body.logprobs = true;
        body.top_logprobs = sampling.logprobs;
      } else {
        body.logprobs = sampling.logprobs;
      }
    }
    return { path, body };
  }

  /** Ready when /health says 200, or, for servers without it (Ollama), /v1/models does. */
  async #probe(): Promise<boolean> {
    for (const path of ["/health", "/v1/models"]) {
      try {
        const res = await this.#pool.request({ method: "GET", path, headers: this.#headers, signal: AbortSignal.timeout(2_000) });
        if (res.statusCode === 200 && path === "/v1/models") this.#readContext(await res.body.text());
        else await res.body.dump();
        if (res.statusCode === 200 && path === "/health" && this.#contextSize === undefined) await this.#askContext();
        if (res.statusCode === 200) return true;
        if (res.statusCode === 503) return false; // loading: /health is authoritative
      } catch {
        return false;
      }
    }
    return false;
  }

  /** The server's context window, once, where it lists it (vLLM, SGLang and Flotilla do, as max_model_len). */
  async #askContext(): Promise<void> {
    try {
      const res = await this.#pool.request({ method: "GET", path: "/v1/models", headers: this.#headers, signal: AbortSignal.timeout(2_000) });
      if (res.statusCode === 200) this.#readContext(await res.body.text());
      else await res.body.dump();
    } catch {
      // the window stays unknown; the next probe asks again
    }
  }

  #readContext(body: string): void {
    if (this.#opts.contextSize !== undefined) return;
    try {
      const listed = (JSON.parse(body) as { data?: { id?: string; max_model_len?: unknown }[] }).data?.find((m) => m.id === this.#opts.upstreamModel);
      if (typeof listed?.max_model_len === "number" && Number.isInteger(listed.max_model_len) && listed.max_model_len > 0) this.#contextSize = listed.max_model_len;
    } catch {
      // not JSON: unknown
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#probeTimer);
    this.#scraper?.stop();
    this.#slots.rejectWaiters(new FlotillaError("engine_unavailable", "the engine is shutting down"));
    await this.#pool.close();
  }
}

/**
 * Tokens per streamed chunk, from the best source the upstream gives: the
 * chunk's token ids (return_token_ids), its running usage count (continuous_usage_stats: vLLM and SGLang send several
 * tokens per chunk under load), else the chunk's logprob entries (one per
 * token), else an estimate marked as such: one token, the least a non-empty
 * chunk holds (llama-server and Ollama send one per chunk), so an estimate
 * never bills more than was delivered nor cuts an answer short of max_tokens.
 */
export class ChunkTokens {
  total = 0;
  #reported = 0;

  count(runningCompletion: number | undefined, logprobs: UpstreamLogprobs | null | undefined, ids?: readonly number[] | null): { tokens: number; estimated: boolean } {
    if (ids != null && ids.length > 0) {
      if (typeof runningCompletion === "number") this.#reported = Math.max(this.#reported, runningCompletion);
      return this.#add(ids.length, false);
    }
    if (typeof runningCompletion === "number" && runningCompletion > this.#reported) {
      const tokens = runningCompletion - this.#reported;
      this.#reported = runningCompletion;
      return this.#add(tokens, false);
    }
    const entries = logprobs == null ? 0 : (logprobs.content?.length ?? 0) + (logprobs.tokens?.length ?? 0);
    if (entries > 0) return this.#add(entries, false);
    return this.#add(1, true);
  }

  #add(tokens: number, estimated: boolean): { tokens: number; estimated: boolean } {
    this.total += tokens;
    return { tokens, estimated };
  }
}

/**
 * The ids an upstream reports with return_token_ids. A chunk's ids are
 * passed on only while every chunk has had them and the prompt's are known
 * (reported with the first chunk, or sent as the prompt): a gap makes the
 * rest of the answer a text continuation.
 */
class UpstreamIds {
  #prompt: readonly number[] | undefined;
  #first = true;
  #broken = false;

  constructor(sent: readonly number[] | undefined) {
    this.#prompt = sent;
  }

  readPrompt(ids: readonly number[] | null | undefined): void {
    if (this.#prompt === undefined && Array.isArray(ids) && ids.every(Number.isInteger)) this.#prompt = ids;
  }

  of(ids: readonly number[] | null | undefined): ChunkIds | undefined {
    const first = this.#first;
    this.#first = false;
    if (this.#broken || this.#prompt === undefined || !Array.isArray(ids) || ids.length === 0 || !ids.every(Number.isInteger)) {
      this.#broken = true;
      return undefined;
    }
    return first ? { ids, prompt: this.#prompt } : { ids };
  }
}

/**
 * The tool calls in an upstream's stream, passed on as pieces: each call's
 * first piece with its id and name (held until the call has either, as
 * some servers send the id alone first), then its arguments as they come.
 */
class UpstreamCalls {
  readonly #started = new Set<number>();
  /** Ids that came before their call's name. */
  readonly #ids = new Map<number, string>();

  constructor(readonly onText: TextSink) {}

  piece(call: UpstreamToolCall, count: () => { tokens: number; estimated: boolean }): void {
    const index = call.index ?? 0;
    const args = call.function?.arguments ?? "";
    const first = !this.#started.has(index);
    const name = call.function?.name;
    if (first && name === undefined) {
      if (call.id !== undefined) this.#ids.set(index, call.id);
      return;
    }
    if (!first && args.length === 0) return;
    this.#started.add(index);
    const { tokens, estimated } = count();
    this.onText(args, tokens, estimated, undefined, first ? { index, id: call.id ?? this.#ids.get(index) ?? `call_${index}`, name: name! } : { index });
  }
}

function finishOf(reason: string): FinishReason {
  if (reason === "length") return "length";
  return reason === "tool_calls" || reason === "function_call" ? "tool_calls" : "stop";
}

/** A conversation turn in OpenAI's shape, tool calls and the call a tool turn answers included. */
function messageBody(m: ChatMessage): Record<string, unknown> {
  if (m.toolCalls !== undefined) {
    return { role: m.role, content: m.content === "" ? null : m.content, tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })) };
  }
  return m.toolCallId === undefined ? { role: m.role, content: m.content } : { role: m.role, content: m.content, tool_call_id: m.toolCallId };
}

/** The tools and the choice as OpenAI-compatible servers take them (vLLM and SGLang parse the model's calls with their tool parsers). */
function toolsBody(use: ToolUse): Record<string, unknown> {
  const tools = use.tools.map((t) => ({
    type: "function",
    function: { name: t.name, ...(t.description === undefined ? {} : { description: t.description }), ...(t.parameters === undefined ? {} : { parameters: t.parameters }), ...(t.strict ? { strict: true } : {}) },
  }));
  const choice = typeof use.choice === "object" ? { type: "function", function: { name: use.choice.name } } : use.choice;
  return { tools, tool_choice: choice, ...(use.parallel ? {} : { parallel_tool_calls: false }) };
}

/** The upstream answered 400 naming one of the extension fields it was sent. */
class ExtensionsRefused extends Error {}

const CHAT_PATH = "/v1/chat/completions";
const COMPLETIONS_PATH = "/v1/completions";

function isConnectionError(err: unknown): boolean {
  if (err instanceof undiciErrors.SocketError || err instanceof undiciErrors.ConnectTimeoutError) return true;
  const code = (err as { code?: string }).code;
  return code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "ENOTFOUND";
}

/** Appends a chunk's logprobs, in either of OpenAI's two shapes, to `into`. */
function collectLogprobs(lp: UpstreamLogprobs, into: TokenLogprob[]): void {
  for (const c of lp.content ?? []) into.push({ token: c.token, logprob: c.logprob, top: c.top_logprobs ?? [] });
  const tokens = lp.tokens ?? [];
  for (let i = 0; i < tokens.length; i++) {
    const top = lp.top_logprobs?.[i];
    into.push({ token: tokens[i]!, logprob: lp.token_logprobs?.[i] ?? NaN, top: top == null ? [] : Object.entries(top).map(([token, logprob]) => ({ token, logprob })) });
  }
}

/** Maps an upstream HTTP error to the gateway's vocabulary, keeping its message. */
function upstreamError(status: number, body: string, param = "messages"): FlotillaError {
  let message = body.slice(0, 500);
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } | string; message?: string };
    const e = parsed.error;
    message = (typeof e === "string" ? e : e?.message) ?? parsed.message ?? message;
  } catch {
    // not JSON: keep the text
  }
  if (status === 400 && /context|too long|maximum.*length/i.test(message)) {
    return new FlotillaError("context_length_exceeded", message, { param });
  }
  if (status === 429) return new FlotillaError("overloaded", `upstream is overloaded: ${message}`, { retryAfterS: 1 });
  if (status >= 400 && status < 500) return new FlotillaError("invalid_request", `upstream rejected the request (${status}): ${message}`);
  return new FlotillaError("engine_error", `upstream failed (${status}): ${message}`);
}

/**
 * An upstream's embeddings answer, checked: one vector of numbers per input
 * (by `index`), all of one length. Anything else is the replica's fault.
 */
function embeddingsOf(body: string, inputs: readonly EmbeddingInput[], name: string): EmbeddingResult {
  const bad = (why: string): FlotillaError => new FlotillaError("engine_error", `replica ${name} sent an unreadable embeddings answer (${why})`);
  let parsed: { data?: unknown; usage?: { prompt_tokens?: unknown } };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    throw bad("not JSON");
  }
  const data = (Array.isArray(parsed.data) ? parsed.data : []) as { index?: unknown; embedding?: unknown }[];
  if (data.length !== inputs.length) throw bad(`${data.length} vectors for ${inputs.length} inputs`);
  const vectors = new Array<Float32Array>(inputs.length);
  for (const [i, item] of data.entries()) {
    const at = item.index ?? i;
    if (typeof at !== "number" || !Number.isInteger(at) || at < 0 || at >= inputs.length || vectors[at] !== undefined) throw bad(`data[${i}].index is not a free input index`);
    if (!Array.isArray(item.embedding) || !item.embedding.every((v) => typeof v === "number")) throw bad(`data[${i}].embedding is not a list of numbers`);
    vectors[at] = Float32Array.from(item.embedding as number[]);
  }
  if (!vectors.every((v) => v.length === vectors[0]!.length)) throw bad("vectors of different lengths");
  const tokens = parsed.usage?.prompt_tokens;
  if (typeof tokens === "number" && Number.isInteger(tokens) && tokens >= 0) return { vectors, promptTokens: tokens };
  return { vectors, promptTokens: inputs.reduce((n, input) => n + likelyPromptTokens(input), 0), usageEstimated: true };
}

/** What went wrong with a connection, without the addresses a message like "connect ECONNREFUSED 10.0.0.7:8000" holds. */
function failureKind(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : err instanceof Error ? err.name : "unknown error";
}

/** The request's response_format as OpenAI-compatible servers take it (vLLM and SGLang enforce it with their guided decoding). */
function responseFormatBody(f: ResponseFormat): Record<string, unknown> {
  return f.type === "json_object" ? { type: "json_object" } : { type: "json_schema", json_schema: { name: f.name, schema: f.schema, strict: f.strict } };
}
