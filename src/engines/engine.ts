import type { EmbeddingRequest, EmbeddingResult, GenerationRequest, GenerationResult, Prompt } from "../core/request.js";

export type EngineKind = "local" | "openai" | "sim";

/** A replica's load as the router sees it. */
export interface EngineLoad {
  /** Sequences generating now. */
  readonly active: number;
  /** Requests accepted but waiting for a free sequence. */
  readonly queued: number;
  /** Sequences the engine runs at once. */
  readonly slots: number;
  /** Waiting requests the engine accepts before it refuses with `overloaded`. */
  readonly maxQueue: number;
  /**
   * This gateway's own requests, present where `active` and `queued` also
   * count load the engine reported from other clients (engine-metrics.ts
   * `withReport`): what a drain or a shutdown waits for.
   */
  readonly own?: { readonly active: number; readonly queued: number };
  /** The engine's own last account of itself (its /metrics), while fresh; absent where it gives none. */
  readonly reported?: ReportedLoad;
}

/** An engine's report of its load, as scraped: every client's requests, not only this gateway's. */
export interface ReportedLoad {
  readonly running: number;
  readonly waiting: number;
  /** Share of the KV cache in use, 0..1; undefined where the engine does not report it. */
  readonly kvUsage: number | undefined;
  /** How long ago the report was taken. */
  readonly ageMs: number;
}

/**
 * Receives generated text as the engine produces it, with the number of
 * tokens it took; called synchronously, never with "". The token count lets
 * a replica that takes over mid-answer be metered honestly, and lets the
 * gateway hold an answer to max_tokens. `estimated` is true when the engine
 * could not count the tokens (an upstream that reports nothing per chunk)
 * and `tokens` is a bounded guess; the ledger marks what it bills from one.
 * `ids`, where given, are the chunk's token ids; `call` marks a tool call's
 * arguments.
 */
export type TextSink = (text: string, tokens: number, estimated?: boolean, ids?: ChunkIds, call?: ToolCallPiece) => void;

/**
 * A piece that is not answer text but the JSON arguments of a tool call:
 * which call (by index in the answer), and, on the call's first piece, its
 * id and the tool's name. A call's first piece may be "" (the name comes
 * before any argument).
 */
export interface ToolCallPiece {
  readonly index: number;
  readonly id?: string;
  readonly name?: string;
}

/**
 * The token ids behind one piece of text, where the engine knows them:
 * exactly the tokens whose text it is. The first piece of an attempt also
 * carries `prompt`, every id the model read before its first token.
 * Together they let another replica resume the answer from ids (see
 * ContinuationIds); a piece without them makes the rest of the answer a
 * text continuation.
 */
export interface ChunkIds {
  readonly ids: readonly number[];
  readonly prompt?: readonly number[];
}

/**
 * Every executor (in-process llama.cpp, a remote OpenAI-compatible server, a
 * simulated accelerator) implements this; the scheduler cannot tell them apart.
 *
 * `generate` resolves once generation ends, having pushed every piece of text
 * to `onText`; it rejects with a FlotillaError. Aborting `signal` stops the
 * work at once and frees its slot; the promise then rejects with `cancelled`.
 */
export interface Engine {
  readonly kind: EngineKind;
  /** Context window in tokens, when the engine knows it. */
  readonly contextSize: number | undefined;
  start(): Promise<void>;
  isReady(): boolean;
  load(): EngineLoad;
  /** An engine other gateways also send to: `peers()` is how many requests they say they have on it, counted into load(). */
  countPeers?(peers: () => number): void;
  /** Exact prompt length (with any continuation) in tokens where the tokenizer is at hand; undefined otherwise. */
  countPromptTokens(prompt: Prompt, continuation?: string): number | undefined;
  generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult>;
  /**
   * A vector per input, where the engine embeds (absent where it does not);
   * rejects with a FlotillaError as generate does. Embedding is idempotent,
   * so a failed one is simply run again elsewhere.
   */
  embed?(request: EmbeddingRequest, signal: AbortSignal): Promise<EmbeddingResult>;
  close(): Promise<void>;
}
