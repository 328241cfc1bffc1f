import type { FinishReason, GenerationResult, TokenLogprob, TokenUsage } from "../core/request.js";
import type { ChunkIds, ToolCallPiece } from "../engines/engine.js";
import type { AnswerHead, AnswerWriter, StreamWriter, WholeWriter } from "./answer-writer.js";
import type { HttpError } from "./errors.js";

/**
 * OpenAI response shapes. Stream chunks are built by string concatenation
 * around one JSON.stringify of the new text: per token, nothing else is
 * serialised or allocated.
 */

export type Endpoint = "chat" | "completion";

export interface ResponseMeta {
  readonly endpoint: Endpoint;
  readonly id: string;
  /** Unix seconds. */
  readonly created: number;
  readonly model: string;
  /** The client asked for token ids (return_token_ids). */
  readonly tokenIds?: boolean;
}

/**
 * The token ids a client asked for, as an answer's pieces arrive: the
 * prompt's with the first piece, then each piece's own, for as long as every
 * piece has had them (an answer resumed from text has none past that point).
 */
export class TokenIdsOut {
  prompt: readonly number[] | undefined;
  readonly answer: number[] = [];
  #first = true;
  #whole = true;

  /** The ids to send with this piece, or undefined for none. */
  piece(ids: ChunkIds | undefined): { ids: readonly number[]; prompt?: readonly number[] } | undefined {
    const first = this.#first;
    this.#first = false;
    if (first) this.prompt = ids?.prompt;
    if (ids === undefined || this.prompt === undefined) this.#whole = false;
    if (!this.#whole) return undefined;
    this.answer.push(...ids!.ids);
    return first ? { ids: ids!.ids, prompt: this.prompt! } : { ids: ids!.ids };
  }

  /** Whole-answer ids for a non-streaming response, where every piece had them. */
  whole(): { prompt: readonly number[]; answer: readonly number[] } | undefined {
    return this.#whole && this.prompt !== undefined ? { prompt: this.prompt, answer: this.answer } : undefined;
  }
}

/** A tool call as an answer's pieces add up to it. */
export interface CallOut {
  readonly id: string;
  readonly name: string;
  readonly args: string;
}

/** An answer as its pieces arrive, whatever the API: its text, and its tool calls in call order. Every whole writer keeps one. */
export class AnswerOut {
  readonly #text: string[] = [];
  readonly #calls: { id: string; name: string; args: string }[] = [];

  add(text: string, call: ToolCallPiece | undefined): void {
    if (call === undefined) {
      this.#text.push(text);
      return;
    }
    const known = this.#calls[call.index];
    if (known === undefined) this.#calls[call.index] = { id: call.id ?? "", name: call.name ?? "", args: text };
    else known.args += text;
  }

  get text(): string {
    return this.#text.join("");
  }

  /** Whether any text came (an empty piece counts: the answer has a message). */
  get hasText(): boolean {
    return this.#text.length > 0;
  }

  get calls(): readonly CallOut[] {
    return this.#calls.filter((c) => c !== undefined);
  }

  /** OpenAI's message.tool_calls, or undefined for an answer without any. */
  toolCallsJson(): Record<string, unknown>[] | undefined {
    const calls = this.calls;
    return calls.length === 0 ? undefined : calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.args } }));
  }
}

export function usageJson(u: TokenUsage): Record<string, unknown> {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
}

/** Flotilla's extension to every response: who served it and how, plus what the tenancy adds (energy, cost). */
export interface ServedBy {
  readonly replica: string;
  readonly attempts: number;
  readonly continuations: number;
  readonly [extra: string]: number | string;
}

/** OpenAI's logprobs object for one choice: chat's `content` list, or the legacy completions arrays. */
export function logprobsJson(endpoint: Endpoint, logprobs: readonly TokenLogprob[] | undefined): Record<string, unknown> | null {
  if (logprobs === undefined) return null;
  const bytes = (token: string): number[] => [...Buffer.from(token, "utf8")];
  if (endpoint === "chat") {
    return {
      content: logprobs.map((l) => ({ token: l.token, logprob: l.logprob, bytes: bytes(l.token), top_logprobs: l.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token) })) })),
      refusal: null,
    };
  }
  let offset = 0;
  const textOffset = logprobs.map((l) => {
    const at = offset;
    offset += l.token.length;
    return at;
  });
  return {
    tokens: logprobs.map((l) => l.token),
    token_logprobs: logprobs.map((l) => l.logprob),
    top_logprobs: logprobs.map((l) => Object.fromEntries(l.top.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}

export function completeResponse(
  meta: ResponseMeta,
  text: string,
  finishReason: FinishReason,
  usage: TokenUsage,
  servedBy: ServedBy,
  logprobs?: readonly TokenLogprob[],
  ids?: { readonly prompt: readonly number[]; readonly answer: readonly number[] },
  toolCalls?: readonly Record<string, unknown>[],
): Record<string, unknown> {
  const lp = logprobsJson(meta.endpoint, logprobs);
  const chat = meta.endpoint === "chat";
  // vLLM's places: the prompt's ids on the response for chat, on the choice for completions.
  const answerIds = ids === undefined ? {} : chat ? { token_ids: ids.answer } : { token_ids: ids.answer, prompt_token_ids: ids.prompt };
  const choice = chat
    ? { index: 0, message: toolCalls === undefined ? { role: "assistant", content: text } : { role: "assistant", content: text === "" ? null : text, tool_calls: toolCalls }, logprobs: lp, finish_reason: finishReason, ...answerIds }
    : { index: 0, text, logprobs: lp, finish_reason: finishReason, ...answerIds };
  return {
    id: meta.id,
    object: chat ? "chat.completion" : "text_completion",
    created: meta.created,
    model: meta.model,
    ...(chat && ids !== undefined ? { prompt_token_ids: ids.prompt } : {}),
    choices: [choice],
    usage: usageJson(usage),
    x_flotilla: servedBy,
  };
}

/** Encodes one stream's SSE events; holds the constant parts of every chunk. */
export class ChunkEncoder {
  readonly #head: string;
  readonly #meta: ResponseMeta;
  readonly #textOpen: string;
  readonly #textClose: string;

  constructor(meta: ResponseMeta) {
    this.#meta = meta;
    const object = meta.endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
    this.#head = `data: {"id":${JSON.stringify(meta.id)},"object":"${object}","created":${meta.created},"model":${JSON.stringify(meta.model)},"choices":`;
    this.#textOpen = meta.endpoint === "chat" ? `${this.#head}[{"index":0,"delta":{"content":` : `${this.#head}[{"index":0,"text":`;
    this.#textClose = meta.endpoint === "chat" ? `},"logprobs":null,"finish_reason":null}]}\n\n` : `,"logprobs":null,"finish_reason":null}]}\n\n`;
  }

  /** Chat streams announce the assistant role before any text, as OpenAI's do. */
  start(): string | undefined {
    if (this.#meta.endpoint !== "chat") return undefined;
    return `${this.#head}[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`;
  }

  /** A piece of text, with its token ids (and the prompt's, with the first) where the client asked for them. */
  text(text: string, ids?: { readonly ids: readonly number[]; readonly prompt?: readonly number[] }): string {
    if (ids === undefined) return this.#textOpen + JSON.stringify(text) + this.#textClose;
    const tokenIds = `"token_ids":[${ids.ids.join(",")}]`;
    const promptIds = ids.prompt === undefined ? "" : `"prompt_token_ids":[${ids.prompt.join(",")}]`;
    if (this.#meta.endpoint === "chat") {
      const top = promptIds === "" ? "" : `,${promptIds}`;
      return `${this.#head}[{"index":0,"delta":{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null,${tokenIds}}]${top}}\n\n`;
    }
    const inChoice = promptIds === "" ? "" : `,${promptIds}`;
    return `${this.#head}[{"index":0,"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":null,${tokenIds}${inChoice}}]}\n\n`;
  }

  /** A piece of a tool call's arguments: the call's first piece carries its id, type and name, as OpenAI's deltas do. */
  toolCall(args: string, call: ToolCallPiece): string {
    const head = call.id === undefined ? `{"index":${call.index},"function":{` : `{"index":${call.index},"id":${JSON.stringify(call.id)},"type":"function","function":{"name":${JSON.stringify(call.name ?? "")},`;
    return `${this.#head}[{"index":0,"delta":{"tool_calls":[${head}"arguments":${JSON.stringify(args)}}}]},"logprobs":null,"finish_reason":null}]}

`;
  }

  /** The last choice chunk; logprobs, where asked for, come whole with it (the local engine scores an answer once it is written). */
  finish(reason: FinishReason, logprobs?: readonly TokenLogprob[]): string {
    const lp = JSON.stringify(logprobsJson(this.#meta.endpoint, logprobs));
    const choice = this.#meta.endpoint === "chat" ? `{"index":0,"delta":{},"logprobs":${lp},"finish_reason":"${reason}"}` : `{"index":0,"text":"","logprobs":${lp},"finish_reason":"${reason}"}`;
    return `${this.#head}[${choice}]}\n\n`;
  }

  usage(usage: TokenUsage, servedBy: ServedBy): string {
    return `${this.#head}[],"usage":${JSON.stringify(usageJson(usage))},"x_flotilla":${JSON.stringify(servedBy)}}\n\n`;
  }

  static readonly done = "data: [DONE]\n\n";

  static error(body: unknown): string {
    return `data: ${JSON.stringify(body)}\n\n`;
  }
}

/** OpenAI's answers for one request: chat or legacy completion, as chunks or whole. */
export function openAiWriter(endpoint: Endpoint, opts: { readonly tokenIds: boolean; readonly includeUsage: boolean }): AnswerWriter {
  const meta = (head: AnswerHead): ResponseMeta => ({
    endpoint,
    id: `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${head.requestId}`,
    created: head.created,
    model: head.model,
    tokenIds: opts.tokenIds,
  });
  return { stream: (head) => new OpenAIStream(meta(head), opts.includeUsage), whole: (head) => new OpenAIWhole(meta(head)) };
}

class OpenAIStream implements StreamWriter {
  readonly #encoder: ChunkEncoder;
  readonly #ids: TokenIdsOut | undefined;
  readonly #includeUsage: boolean;

  constructor(meta: ResponseMeta, includeUsage: boolean) {
    this.#encoder = new ChunkEncoder(meta);
    this.#ids = meta.tokenIds === true ? new TokenIdsOut() : undefined;
    this.#includeUsage = includeUsage;
  }

  open(): string {
    return this.#encoder.start() ?? "";
  }

  text(text: string, ids: ChunkIds | undefined, call?: ToolCallPiece): string {
    return call === undefined ? this.#encoder.text(text, this.#ids?.piece(ids)) : this.#encoder.toolCall(text, call);
  }

  /** The finish chunk, the usage chunk where the client asked for it (stream_options.include_usage), then [DONE]. */
  close(result: GenerationResult, servedBy: () => ServedBy): string {
    const usage = this.#includeUsage ? this.#encoder.usage(result.usage, servedBy()) : "";
    return this.#encoder.finish(result.finishReason, result.logprobs) + usage + ChunkEncoder.done;
  }

  /** As OpenAI's streams do: the error body as a data event, then [DONE]. */
  broke(http: HttpError): string {
    return ChunkEncoder.error(http.body) + ChunkEncoder.done;
  }
}

class OpenAIWhole implements WholeWriter {
  readonly #meta: ResponseMeta;
  readonly #answer = new AnswerOut();
  readonly #ids = new TokenIdsOut();

  constructor(meta: ResponseMeta) {
    this.#meta = meta;
  }

  text(text: string, ids: ChunkIds | undefined, call?: ToolCallPiece): void {
    this.#answer.add(text, call);
    if (call === undefined) this.#ids.piece(ids);
  }

  body(result: GenerationResult, servedBy: ServedBy): Record<string, unknown> {
    const ids = this.#meta.tokenIds === true ? this.#ids.whole() : undefined;
    return completeResponse(this.#meta, this.#answer.text, result.finishReason, result.usage, servedBy, result.logprobs, ids, this.#answer.toolCallsJson());
  }
}
