/**
 * The Responses API's answers: one `response` object with one output
 * message, or its stream of semantic events (`event: <type>` and data with
 * `type` and a rising `sequence_number`): response.created and
 * .in_progress, the message item and its text part added, one
 * response.output_text.delta per piece, then the text, part and item done
 * and response.completed (response.incomplete when cut at
 * max_output_tokens). Nothing is stored: every response says `store: false`.
 */
import type { GenerationResult, TokenUsage } from "../core/request.js";
import type { AnswerHead, AnswerWriter, StreamWriter, WholeWriter } from "./answer-writer.js";
import type { HttpError } from "./errors.js";
import type { ServedBy } from "./responses.js";

export const responsesWriter: AnswerWriter = {
  stream: (head) => new ResponseEvents(head),
  whole: (head) => new WholeResponse(head),
};

const ids = (head: AnswerHead): { response: string; item: string } => ({ response: `resp_${head.requestId}`, item: `msg_${head.requestId}` });

function usageOf(u: TokenUsage): Record<string, unknown> {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

function messageItem(head: AnswerHead, text: string | undefined): Record<string, unknown> {
  return {
    id: ids(head).item,
    type: "message",
    status: text === undefined ? "in_progress" : "completed",
    role: "assistant",
    content: text === undefined ? [] : [{ type: "output_text", text, annotations: [] }],
  };
}

/** The response object: in progress (no result yet), or finished with its text. */
function responseObject(head: AnswerHead, done?: { result: GenerationResult; text: string; servedBy: ServedBy }): Record<string, unknown> {
  const cut = done?.result.finishReason === "length";
  return {
    id: ids(head).response,
    object: "response",
    created_at: head.created,
    status: done === undefined ? "in_progress" : cut ? "incomplete" : "completed",
    error: null,
    incomplete_details: cut ? { reason: "max_output_tokens" } : null,
    instructions: null,
    model: head.model,
    output: done === undefined ? [] : [messageItem(head, done.text)],
    parallel_tool_calls: false,
    store: false,
    text: { format: { type: "text" } },
    tool_choice: "none",
    tools: [],
    truncation: "disabled",
    usage: done === undefined ? null : usageOf(done.result.usage),
    metadata: {},
    ...(done === undefined ? {} : { x_flotilla: done.servedBy }),
  };
}

class ResponseEvents implements StreamWriter {
  readonly #head: AnswerHead;
  readonly #parts: string[] = [];
  #sequence = 0;
  readonly #deltaOpen: string;

  constructor(head: AnswerHead) {
    this.#head = head;
    this.#deltaOpen = `,"item_id":"${ids(head).item}","output_index":0,"content_index":0,"logprobs":[],"delta":`;
  }

  #event(type: string, data: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#sequence++, ...data })}\n\n`;
  }

  open(): string {
    const head = this.#head;
    const at = { item_id: ids(head).item, output_index: 0, content_index: 0 };
    return (
      this.#event("response.created", { response: responseObject(head) }) +
      this.#event("response.in_progress", { response: responseObject(head) }) +
      this.#event("response.output_item.added", { output_index: 0, item: messageItem(head, undefined) }) +
      this.#event("response.content_part.added", { ...at, part: { type: "output_text", text: "", annotations: [] } })
    );
  }

  /** One delta per piece, built by concatenation around one JSON.stringify of the text, as the chat chunks are. */
  text(text: string): string {
    this.#parts.push(text);
    return `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${this.#sequence++}${this.#deltaOpen}${JSON.stringify(text)}}\n\n`;
  }

  close(result: GenerationResult, servedBy: () => ServedBy): string {
    const head = this.#head;
    const text = this.#parts.join("");
    const at = { item_id: ids(head).item, output_index: 0, content_index: 0 };
    const response = responseObject(head, { result, text, servedBy: servedBy() });
    return (
      this.#event("response.output_text.done", { ...at, text, logprobs: [] }) +
      this.#event("response.content_part.done", { ...at, part: { type: "output_text", text, annotations: [] } }) +
      this.#event("response.output_item.done", { output_index: 0, item: messageItem(head, text) }) +
      this.#event(response.status === "incomplete" ? "response.incomplete" : "response.completed", { response })
    );
  }

  broke(http: HttpError): string {
    const { message, code, param } = http.body.error;
    return this.#event("error", { code, message, param });
  }
}

class WholeResponse implements WholeWriter {
  readonly #head: AnswerHead;
  readonly #parts: string[] = [];

  constructor(head: AnswerHead) {
    this.#head = head;
  }

  text(text: string): void {
    this.#parts.push(text);
  }

  body(result: GenerationResult, servedBy: ServedBy): Record<string, unknown> {
    return responseObject(this.#head, { result, text: this.#parts.join(""), servedBy });
  }
}
