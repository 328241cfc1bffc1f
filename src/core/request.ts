/** What one generation asks for, independent of HTTP and of any engine. */

/** The HTTP API a request came in through: a bounded label for the usage ledger and the metrics. */
export type ApiEndpoint = "chat" | "completion" | "messages" | "responses" | "embeddings";

export type ChatRole = "system" | "developer" | "user" | "assistant" | "tool";

export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
  /** An assistant turn's calls of the caller's tools. */
  readonly toolCalls?: readonly ToolCall[];
  /** A tool turn: the call it is the result of. */
  readonly toolCallId?: string;
}

/** One call of a caller's tool, as the model wrote it: `arguments` is JSON text. */
export interface ToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
}

/** A function the caller offers the model (OpenAI's `tools[].function`). */
export interface Tool {
  readonly name: string;
  readonly description?: string;
  /** JSON schema of the arguments; absent: none. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /** The arguments must fit `parameters` exactly (checked where an engine may not have enforced it). */
  readonly strict: boolean;
}

/**
 * Tools offered with a request, and whether the model may (auto), must
 * (required), must call one by name, or must not (none) call them.
 */
export interface ToolUse {
  readonly tools: readonly Tool[];
  readonly choice: "none" | "auto" | "required" | { readonly name: string };
  /** The model may call several at once (OpenAI's parallel_tool_calls, default true). */
  readonly parallel: boolean;
}

/** Whether the model may answer with tool calls: tools offered, and a choice other than none. */
export function callsTools(request: { readonly tools?: ToolUse | undefined }): boolean {
  return request.tools !== undefined && request.tools.tools.length > 0 && request.tools.choice !== "none";
}

export type Prompt =
  | { readonly kind: "chat"; readonly messages: readonly ChatMessage[] }
  | { readonly kind: "text"; readonly text: string }
  /** The model's own token ids (OpenAI's completions accept them): read exactly as given, never re-tokenised. */
  | { readonly kind: "tokens"; readonly ids: readonly number[] };

/** The model's token ids of a continuation, where the replica that wrote it reported them. */
export interface ContinuationIds {
  /** Everything the model read before its first token: the prompt as its chat template rendered it, with any assistant prefill. */
  readonly prompt: readonly number[];
  /** The ids of the answer written since, exactly the text of `continuation` after the prefill. */
  readonly answer: readonly number[];
}

export interface Sampling {
  /** Upper bound on generated tokens; absent means "until the context is full". */
  readonly maxTokens?: number;
  readonly temperature?: number;
  readonly topP?: number;
  /** Sample only among the k likeliest tokens (Anthropic's top_k; engines that read it: local, vLLM, SGLang, llama-server, Ollama). */
  readonly topK?: number;
  readonly seed?: number;
  /** OpenAI's penalties, -2..2: per occurrence of a token already in the answer, and once for any that occurs. */
  readonly frequencyPenalty?: number;
  readonly presencePenalty?: number;
  readonly stop?: readonly string[];
  /** Report each generated token's log-probability, with this many most likely alternatives (0 for none). */
  readonly logprobs?: number;
}

/**
 * What the answer must be (OpenAI's `response_format`): any JSON object, or
 * JSON valid against `schema`. An engine that cannot enforce a schema
 * refuses the request naming what it cannot.
 */
export type ResponseFormat =
  | { readonly type: "json_object" }
  | { readonly type: "json_schema"; readonly name: string; readonly schema: Readonly<Record<string, unknown>>; readonly strict: boolean };

export interface GenerationRequest {
  readonly id: string;
  readonly prompt: Prompt;
  readonly sampling: Sampling;
  /** The answer's required shape; absent: free text. */
  readonly format?: ResponseFormat;
  /** The caller's tools the model may call instead of (or before) answering in text. */
  readonly tools?: ToolUse;
  /**
   * The start of the answer, already written (by a replica that then failed,
   * or by the client as an assistant prefill). The engine resumes after it as
   * if it had written it itself, and streams only what follows.
   */
  readonly continuation?: string;
  /**
   * The same continuation as token ids, when every replica that wrote it
   * reported them. An engine that takes ids resumes from `prompt + answer`
   * exactly; re-tokenising the text can split it differently (a leading
   * space lost at a token boundary), so the text is the fallback.
   */
  readonly continuationIds?: ContinuationIds;
  /**
   * Work nobody waits on (a Batch API line): an engine that runs several
   * sequences on one processor runs a waiting interactive request's tokens
   * first.
   */
  readonly background?: true;
}

/** One input to embed: text, or the model's own token ids (OpenAI's embeddings accept both). */
export type EmbeddingInput = Extract<Prompt, { readonly kind: "text" | "tokens" }>;

/** What one embeddings request asks for: a vector per input, each input read on its own. */
export interface EmbeddingRequest {
  readonly id: string;
  readonly inputs: readonly EmbeddingInput[];
  /** Shorten every vector to its first `dimensions` (renormalised), where the model allows it. */
  readonly dimensions?: number;
}

export interface EmbeddingResult {
  /** One per input, in order. */
  readonly vectors: readonly Float32Array[];
  /** Tokens read, every input's together. */
  readonly promptTokens: number;
  /** The engine reported no count: promptTokens is an estimate. */
  readonly usageEstimated?: boolean;
}

/** "tool_calls": the model ended its turn by calling the caller's tools. */
export type FinishReason = "stop" | "length" | "tool_calls";

export interface TokenUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the engine's KV cache instead of recomputed. */
  readonly cachedTokens: number;
}

/** One generated token and how likely the model found it (natural log), with the likeliest alternatives. */
export interface TokenLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly top: readonly { readonly token: string; readonly logprob: number }[];
}

export interface GenerationResult {
  readonly finishReason: FinishReason;
  /** The caller's stop string the answer ended at, where the engine can tell which (Anthropic's stop_sequence). */
  readonly stopSequence?: string;
  readonly usage: TokenUsage;
  /** The usage is a bounded estimate, not the engine's count (an upstream that reported none). */
  readonly usageEstimated?: boolean;
  /** Per generated token, when `sampling.logprobs` asked for them and the engine can tell. */
  readonly logprobs?: readonly TokenLogprob[];
}

/** Flattens a prompt into text, for engines and estimates that need one string. */
export function promptText(prompt: Prompt): string {
  if (prompt.kind === "text") return prompt.text;
  if (prompt.kind === "tokens") return "";
  return prompt.messages.map((m) => m.content).join("\n");
}

/** A prompt's length in tokens where no tokenizer is at hand: ~4 characters each, as English text runs. */
export function estimateTokens(request: GenerationRequest): number {
  if (request.prompt.kind === "tokens") return request.prompt.ids.length + Math.ceil((request.continuation?.length ?? 0) / 4);
  return Math.ceil((promptText(request.prompt).length + (request.continuation?.length ?? 0)) / 4);
}

/** Tokens a chat template may add around a conversation (BOS, a default system prompt) and around each message (role headers, separators). */
const TEMPLATE_TOKENS = 64;
const TEMPLATE_TOKENS_PER_MESSAGE = 16;

/**
 * The most tokens a prompt can take with any tokenizer: no tokenizer yields
 * more tokens than UTF-8 bytes (byte fallback is the worst case), plus what
 * a chat template adds. Admission reserves it where no tokenizer is at hand,
 * and what an upstream reports is clamped to it.
 */
export function promptTokenBound(prompt: Prompt, continuation = ""): number {
  const extra = Buffer.byteLength(continuation, "utf8");
  if (prompt.kind === "text") return Buffer.byteLength(prompt.text, "utf8") + extra + 2;
  if (prompt.kind === "tokens") return prompt.ids.length + extra;
  let n = TEMPLATE_TOKENS + extra;
  for (const m of prompt.messages) n += Buffer.byteLength(m.content, "utf8") + TEMPLATE_TOKENS_PER_MESSAGE;
  return n;
}

/** A prompt's likely length where no tokenizer is at hand, for billing: ~4 characters a token, at least one, never above its bound. */
export function likelyPromptTokens(prompt: Prompt, continuation = ""): number {
  if (prompt.kind === "tokens") return Math.max(1, prompt.ids.length + Math.ceil(continuation.length / 4));
  const chars = promptText(prompt).length + continuation.length;
  return Math.min(promptTokenBound(prompt, continuation), Math.max(1, Math.ceil(chars / 4)));
}
