import type { GenerationResult } from "../core/request.js";
import type { ChunkIds, ToolCallPiece } from "../engines/engine.js";
import type { HttpError } from "./errors.js";
import type { ServedBy } from "./responses.js";

/**
 * How one HTTP API writes an answer. Everything else about a request —
 * admission, fair share, routing, failover, continuation, the ledger row —
 * is the completion run's (completions.ts) and the same for every API, so an
 * API is its request reader plus these encodings: OpenAI's in responses.ts,
 * Anthropic's in anthropic-events.ts.
 */
export interface AnswerWriter {
  stream(head: AnswerHead): StreamWriter;
  whole(head: AnswerHead): WholeWriter;
}

/** What every answer names; known once the model that answers is decided. */
export interface AnswerHead {
  readonly requestId: string;
  /** Unix seconds. */
  readonly created: number;
  /** The model that answers: a cascade's leg, not its alias. */
  readonly model: string;
}

/** One streamed answer's server-sent events, each returned as the text to write. */
export interface StreamWriter {
  /** What follows the headers, before any text ("" for nothing); `first` is the first piece's ids, when it brought any. */
  open(first: ChunkIds | undefined): string;
  /** A piece of the answer: its text, or with `call`, a piece of a tool call's arguments. */
  text(text: string, ids: ChunkIds | undefined, call?: ToolCallPiece): string;
  /** The events after the last text. `servedBy` prices the answer: called only by an encoding that sends it. */
  close(result: GenerationResult, servedBy: () => ServedBy): string;
  /** The end of a stream that broke after it began: its status is spent, so the error travels as an event. */
  broke(http: HttpError): string;
}

/** One answer sent whole: its pieces as they come, then the body. */
export interface WholeWriter {
  text(text: string, ids: ChunkIds | undefined, call?: ToolCallPiece): void;
  body(result: GenerationResult, servedBy: ServedBy): unknown;
}
