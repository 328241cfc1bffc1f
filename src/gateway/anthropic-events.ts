import type { GenerationResult, TokenUsage } from "../core/request.js";
import type { ChunkIds, ToolCallPiece } from "../engines/engine.js";
import { anthropicError } from "./anthropic-errors.js";
import type { AnswerHead, AnswerWriter, StreamWriter, WholeWriter } from "./answer-writer.js";
import type { HttpError } from "./errors.js";
import { AnswerOut, type ServedBy } from "./responses.js";

/**
 * Anthropic's Messages answers: one message object, or its stream of named
 * server-sent events (`event: <type>\ndata: <json>\n\n`): message_start,
 * content_block_start, ping, content_block_delta per piece of text,
 * content_block_stop, message_delta (why it stopped, the usage), message_stop.
 * The answer is a text block, then a tool_use block per tool call (its
 * input streamed as input_json_delta pieces); stop_reason "tool_use" when
 * it ends by calling tools. Deltas are built by concatenation around one
 * JSON.stringify of the new text, as the OpenAI chunks are.
 */
export const messagesWriter: AnswerWriter = {
  stream: (head) => new MessageEvents(head),
  whole: (head) => new WholeMessage(head),
};

type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

/** Why the answer ended, in Anthropic's words, and at which of the caller's stop sequences. */
function stopOf(result: GenerationResult): { stop_reason: StopReason; stop_sequence: string | null } {
  if (result.finishReason === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (result.finishReason === "tool_calls") return { stop_reason: "tool_use", stop_sequence: null };
  if (result.stopSequence !== undefined) return { stop_reason: "stop_sequence", stop_sequence: result.stopSequence };
  return { stop_reason: "end_turn", stop_sequence: null };
}

/**
 * Anthropic counts prompt tokens read from a cache apart from the rest:
 * input_tokens + cache_read_input_tokens is the whole prompt. Flotilla
 * writes no cache entries a client pays for, so cache_creation_input_tokens
 * is always 0.
 */
function usageOf(u: TokenUsage): Record<string, number> {
  return { input_tokens: u.promptTokens - u.cachedTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: u.cachedTokens, output_tokens: u.completionTokens };
}

function messageId(head: AnswerHead): string {
  return `msg_${head.requestId}`;
}

function event(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/** A tool call's id as Anthropic writes them; the client sends it back as the result's tool_use_id, and it goes on as the call's id. */
function toolUseId(id: string): string {
  return id.startsWith("toolu_") ? id : `toolu_${id.replace(/^call_/, "")}`;
}

/** A call's input: its arguments as JSON, or an empty object where they were cut short at max_tokens. */
function inputOf(args: string): unknown {
  try {
    return JSON.parse(args) as unknown;
  } catch {
    return {};
  }
}

const DELTA_CLOSE = "}}\n\n";

class MessageEvents implements StreamWriter {
  readonly #head: AnswerHead;
  /** The content block open now: the text block first, then one per tool call. */
  #block = 0;
  #inTool = false;

  constructor(head: AnswerHead) {
    this.#head = head;
  }

  /**
   * The message as it begins: no content yet, and the prompt's length where
   * the first piece brought the prompt's ids (message_delta has the exact
   * count, cached tokens apart).
   */
  open(first: ChunkIds | undefined): string {
    const message = {
      id: messageId(this.#head),
      type: "message",
      role: "assistant",
      model: this.#head.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: first?.prompt?.length ?? 0, output_tokens: 0 },
    };
    return (
      event("message_start", JSON.stringify({ type: "message_start", message })) +
      event("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}') +
      event("ping", '{"type":"ping"}')
    );
  }

  text(text: string, _ids?: ChunkIds, call?: ToolCallPiece): string {
    let out = "";
    if (call?.id !== undefined || (call === undefined && this.#inTool)) {
      // A new block: a tool call's, or text after one.
      out += this.#stopBlock();
      this.#block++;
      this.#inTool = call !== undefined;
      const block = call === undefined ? { type: "text", text: "" } : { type: "tool_use", id: toolUseId(call.id!), name: call.name ?? "", input: {} };
      out += event("content_block_start", JSON.stringify({ type: "content_block_start", index: this.#block, content_block: block }));
    }
    if (text.length === 0) return out;
    const delta = call === undefined ? `{"type":"text_delta","text":` : `{"type":"input_json_delta","partial_json":`;
    return `${out}event: content_block_delta\ndata: {"type":"content_block_delta","index":${this.#block},"delta":${delta}${JSON.stringify(text)}${DELTA_CLOSE}`;
  }

  #stopBlock(): string {
    return event("content_block_stop", `{"type":"content_block_stop","index":${this.#block}}`);
  }

  /** The usage counters in message_delta are the whole message's; Flotilla's extension rides along as on every answer. */
  close(result: GenerationResult, servedBy: () => ServedBy): string {
    const delta = { type: "message_delta", delta: stopOf(result), usage: usageOf(result.usage), x_flotilla: servedBy() };
    return this.#stopBlock() + event("message_delta", JSON.stringify(delta)) + event("message_stop", '{"type":"message_stop"}');
  }

  broke(http: HttpError): string {
    return event("error", JSON.stringify(anthropicError(http, this.#head.requestId).body));
  }
}

class WholeMessage implements WholeWriter {
  readonly #head: AnswerHead;
  readonly #answer = new AnswerOut();

  constructor(head: AnswerHead) {
    this.#head = head;
  }

  text(text: string, _ids?: ChunkIds, call?: ToolCallPiece): void {
    this.#answer.add(text, call);
  }

  body(result: GenerationResult, servedBy: ServedBy): Record<string, unknown> {
    const text = this.#answer.text;
    const uses = this.#answer.calls.map((c) => ({ type: "tool_use", id: toolUseId(c.id), name: c.name, input: inputOf(c.args) }));
    return {
      id: messageId(this.#head),
      type: "message",
      role: "assistant",
      model: this.#head.model,
      content: text === "" && uses.length > 0 ? uses : [{ type: "text", text }, ...uses],
      ...stopOf(result),
      usage: usageOf(result.usage),
      x_flotilla: servedBy,
    };
  }
}
