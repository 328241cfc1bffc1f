/**
 * The Responses API's answers: one `response` object, or its stream of
 * semantic events (`event: <type>` and data with `type` and a rising
 * `sequence_number`): response.created and .in_progress; for text, the
 * message item and its text part added, one response.output_text.delta
 * per piece, then the text, part and item done; for each tool call, a
 * function_call item added, its arguments as
 * response.function_call_arguments.delta pieces, then done; and
 * response.completed (response.incomplete when cut at max_output_tokens).
 * Nothing is stored: every response says `store: false`.
 */
import type { GenerationResult, TokenUsage } from "../core/request.js";
import type { ChunkIds, ToolCallPiece } from "../engines/engine.js";
import type { AnswerHead, AnswerWriter, StreamWriter, WholeWriter } from "./answer-writer.js";
import type { HttpError } from "./errors.js";
import { AnswerOut, type CallOut, type ServedBy } from "./responses.js";

/** The request's tools as every response states them. */
export interface ToolsEcho {
  readonly tools: readonly Record<string, unknown>[];
  readonly tool_choice: unknown;
  readonly parallel_tool_calls: boolean;
}

export function responsesWriter(echo: ToolsEcho): AnswerWriter {
  return { stream: (head) => new ResponseEvents(head, echo), whole: (head) => new WholeResponse(head, echo) };
}

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

/** One tool call as an output item: `call_id` is what the client answers with its function_call_output. */
function callItem(head: AnswerHead, index: number, call: CallOut, done: boolean): Record<string, unknown> {
  return { id: `fc_${head.requestId}_${index}`, type: "function_call", status: done ? "completed" : "in_progress", arguments: done ? call.args : "", call_id: call.id, name: call.name };
}

/** The answer's output items: its text as a message (left out when the answer is only calls), then its calls. */
function outputOf(head: AnswerHead, answer: AnswerOut): Record<string, unknown>[] {
  const items = answer.calls.map((c, i) => callItem(head, i, c, true));
  return answer.text === "" && items.length > 0 ? items : [messageItem(head, answer.text), ...items];
}

/** The response object: in progress (no result yet), or finished with its output. */
function responseObject(head: AnswerHead, echo: ToolsEcho, done?: { result: GenerationResult; output: Record<string, unknown>[]; servedBy: ServedBy }): Record<string, unknown> {
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
    output: done === undefined ? [] : done.output,
    parallel_tool_calls: echo.parallel_tool_calls,
    store: false,
    text: { format: { type: "text" } },
    tool_choice: echo.tool_choice,
    tools: echo.tools,
    truncation: "disabled",
    usage: done === undefined ? null : usageOf(done.result.usage),
    metadata: {},
    ...(done === undefined ? {} : { x_flotilla: done.servedBy }),
  };
}

class ResponseEvents implements StreamWriter {
  readonly #head: AnswerHead;
  readonly #echo: ToolsEcho;
  readonly #answer = new AnswerOut();
  #sequence = 0;
  readonly #deltaOpen: string;
  /** What the stream writes into now: the message's text (output 0), or a call's arguments. */
  #open: "none" | "text" | "call" = "none";
  #textDone = false;

  constructor(head: AnswerHead, echo: ToolsEcho) {
    this.#head = head;
    this.#echo = echo;
    this.#deltaOpen = `,"item_id":"${ids(head).item}","output_index":0,"content_index":0,"logprobs":[],"delta":`;
  }

  #event(type: string, data: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#sequence++, ...data })}\n\n`;
  }

  open(): string {
    const response = responseObject(this.#head, this.#echo);
    return this.#event("response.created", { response }) + this.#event("response.in_progress", { response });
  }

  /** One delta per piece, built by concatenation around one JSON.stringify of the text, as the chat chunks are. */
  text(text: string, _ids?: ChunkIds, call?: ToolCallPiece): string {
    if (call !== undefined) return this.#callPiece(text, call);
    let out = "";
    if (this.#open !== "text") {
      out = this.#closeOpen() + this.#openText();
    }
    this.#answer.add(text, undefined);
    return `${out}event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${this.#sequence++}${this.#deltaOpen}${JSON.stringify(text)}}\n\n`;
  }

  /** The message item and its text part: opened with its first text (or at the end of an answer with neither text nor calls). */
  #openText(): string {
    const head = this.#head;
    this.#open = "text";
    return (
      this.#event("response.output_item.added", { output_index: 0, item: messageItem(head, undefined) }) +
      this.#event("response.content_part.added", { item_id: ids(head).item, output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } })
    );
  }

  #callPiece(args: string, call: ToolCallPiece): string {
    let out = "";
    if (call.id !== undefined) {
      out = this.#closeOpen();
      this.#answer.add("", call);
      this.#open = "call";
      out += this.#event("response.output_item.added", { output_index: this.#outputIndex(call.index), item: callItem(this.#head, call.index, this.#answer.calls.at(-1)!, false) });
    }
    if (this.#answer.calls.length === 0 || args === "") return out;
    this.#answer.add(args, { index: call.index });
    return out + this.#event("response.function_call_arguments.delta", { item_id: `fc_${this.#head.requestId}_${call.index}`, output_index: this.#outputIndex(call.index), delta: args });
  }

  /** A call's place among the output items: after the message, where the answer has text. */
  #outputIndex(call: number): number {
    return (this.#answer.hasText ? 1 : 0) + call;
  }

  /** Ends the item being written: the message's text, or the latest call's arguments. */
  #closeOpen(): string {
    const head = this.#head;
    if (this.#open === "text" && !this.#textDone) {
      this.#textDone = true;
      const text = this.#answer.text;
      const at = { item_id: ids(head).item, output_index: 0, content_index: 0 };
      return (
        this.#event("response.output_text.done", { ...at, text, logprobs: [] }) +
        this.#event("response.content_part.done", { ...at, part: { type: "output_text", text, annotations: [] } }) +
        this.#event("response.output_item.done", { output_index: 0, item: messageItem(head, text) })
      );
    }
    if (this.#open !== "call") return "";
    const calls = this.#answer.calls;
    const index = calls.length - 1;
    const call = calls[index]!;
    const item = callItem(head, index, call, true);
    return (
      this.#event("response.function_call_arguments.done", { item_id: item.id, output_index: this.#outputIndex(index), arguments: call.args }) +
      this.#event("response.output_item.done", { output_index: this.#outputIndex(index), item })
    );
  }

  close(result: GenerationResult, servedBy: () => ServedBy): string {
    const head = this.#head;
    // An answer with neither text nor calls is an empty message, as the whole response says.
    const opened = this.#open === "none" ? this.#openText() : "";
    const ended = opened + this.#closeOpen();
    const output = outputOf(head, this.#answer);
    const response = responseObject(head, this.#echo, { result, output, servedBy: servedBy() });
    return ended + this.#event(response.status === "incomplete" ? "response.incomplete" : "response.completed", { response });
  }

  broke(http: HttpError): string {
    const { message, code, param } = http.body.error;
    return this.#event("error", { code, message, param });
  }
}

class WholeResponse implements WholeWriter {
  readonly #head: AnswerHead;
  readonly #echo: ToolsEcho;
  readonly #answer = new AnswerOut();

  constructor(head: AnswerHead, echo: ToolsEcho) {
    this.#head = head;
    this.#echo = echo;
  }

  text(text: string, _ids?: ChunkIds, call?: ToolCallPiece): void {
    this.#answer.add(text, call);
  }

  body(result: GenerationResult, servedBy: ServedBy): Record<string, unknown> {
    return responseObject(this.#head, this.#echo, { result, output: outputOf(this.#head, this.#answer), servedBy });
  }
}
