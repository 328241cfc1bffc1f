import { FlotillaError } from "../core/errors.js";
import type { ChatMessage, GenerationRequest, Sampling, Tool, ToolCall, ToolUse } from "../core/request.js";
import { MAX_OUTPUT_TOKENS } from "./schemas.js";

/**
 * Anthropic's Messages request body, read by hand rather than by a JSON
 * schema so that every refusal names its field and says what to send
 * instead (an image block, tools, a field this gateway does not take), and
 * nothing a client sent is dropped unread: a field is used, or refused.
 * Messages alternate user and assistant, starting with the user; a final
 * assistant message is a prefill the answer continues (the engines'
 * continuation, as with vLLM's continue_final_message).
 */

export interface MessagesBody {
  readonly model: string;
  readonly stream: boolean;
  /** metadata.user_id: the session affinity key. */
  readonly userId: string | undefined;
  readonly generation: GenerationRequest;
}

type Json = Record<string, unknown>;

const FIELDS = ["model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p", "top_k", "stream", "metadata", "tools", "tool_choice"];
const MESSAGE_FIELDS = ["role", "content"];
/** cache_control is taken and needs no action: every replica keeps recent prefixes cached, and the router sends a prompt where its prefix is. */
const BLOCK_FIELDS = ["type", "text", "cache_control"];
const TOOL_USE_FIELDS = ["type", "id", "name", "input", "cache_control"];
const TOOL_RESULT_FIELDS = ["type", "tool_use_id", "content", "is_error", "cache_control"];
const TOOL_FIELDS = ["type", "name", "description", "input_schema", "cache_control"];
const TOOL_CHOICE_FIELDS = ["type", "name", "disable_parallel_tool_use"];
const METADATA_FIELDS = ["user_id"];
/** Stop strings are matched on every piece of text an engine writes: a bound keeps that cheap. */
const MAX_STOP_SEQUENCES = 16;
const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Anthropic fields this gateway knows and does not serve: each refusal says so, rather than "unknown". */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  thinking: "extended thinking is not supported here; send the request without thinking",
};

/** One turn as sent: its text, the tools it called (assistant) or the results it sends back (user). */
interface Turn {
  readonly role: "user" | "assistant";
  readonly text: string;
  readonly calls: readonly ToolCall[];
  readonly results: readonly { readonly id: string; readonly content: string }[];
}

export function messagesRequest(id: string, body: unknown): MessagesBody {
  const b = objectAt(body, null);
  knownFields(b, FIELDS, null);
  const model = required(b, null, "model", nonEmptyText);
  const maxTokens = required(b, null, "max_tokens", integer(1, MAX_OUTPUT_TOKENS));
  const turns = required(b, null, "messages", conversation);
  const system = optional(b, null, "system", content);
  const metadata = optional(b, null, "metadata", objectAt);
  if (metadata !== undefined) knownFields(metadata, METADATA_FIELDS, "metadata");
  const userId = metadata?.user_id == null ? undefined : text(metadata.user_id, "metadata.user_id");
  const last = turns.at(-1)!;
  if (last.role === "assistant" && last.calls.length > 0) invalid(`messages[${turns.length - 1}].content`, "a final assistant message that uses tools needs their tool_result blocks in a user message after it");
  const prefill = last.role === "assistant" ? last.text : undefined;
  const history = (prefill === undefined ? turns : turns.slice(0, -1)).flatMap(chatMessages);
  const messages = system === undefined || system === "" ? history : [{ role: "system" as const, content: system }, ...history];
  const tools = toolUse(b);
  const generation: GenerationRequest = {
    id,
    prompt: { kind: "chat", messages },
    sampling: sampling(b, maxTokens),
    ...(prefill === undefined || prefill === "" ? {} : { continuation: prefill }),
    ...(tools === undefined ? {} : { tools }),
  };
  return { model, stream: optional(b, null, "stream", boolean) === true, userId, generation };
}

function sampling(b: Json, maxTokens: number): Sampling {
  const temperature = optional(b, null, "temperature", number(0, 1));
  const topP = optional(b, null, "top_p", number(0, 1, true));
  const topK = optional(b, null, "top_k", integer(1));
  const stop = optional(b, null, "stop_sequences", stopSequences);
  return {
    maxTokens,
    ...(temperature === undefined ? {} : { temperature }),
    ...(topP === undefined ? {} : { topP }),
    ...(topK === undefined ? {} : { topK }),
    ...(stop === undefined || stop.length === 0 ? {} : { stop }),
  };
}

function conversation(v: unknown, param: string): Turn[] {
  if (!Array.isArray(v) || v.length === 0) invalid(param, "must be a non-empty list of messages");
  const called = new Set<string>();
  return v.map((m: unknown, i) => {
    const at = `${param}[${i}]`;
    const message = objectAt(m, at);
    knownFields(message, MESSAGE_FIELDS, at);
    const role = required(message, at, "role", roleOf);
    const expected = i % 2 === 0 ? "user" : "assistant";
    if (role !== expected) {
      invalid(`${at}.role`, i === 0 ? 'the first message must be the user\'s ("user")' : `roles must alternate between "user" and "assistant", and ${param}[${i - 1}] is "${role}" too`);
    }
    const turn = required(message, at, "content", (c, p) => turnContent(c, p, role, called));
    for (const call of turn.calls) called.add(call.id);
    return turn;
  });
}

/** A turn in the engine's terms: each tool result its own tool message, then the turn's text. */
function chatMessages(turn: Turn): ChatMessage[] {
  if (turn.role === "assistant") return [{ role: "assistant", content: turn.text, ...(turn.calls.length === 0 ? {} : { toolCalls: turn.calls }) }];
  const results: ChatMessage[] = turn.results.map((r) => ({ role: "tool", content: r.content, toolCallId: r.id }));
  return turn.text === "" && results.length > 0 ? results : [...results, { role: "user", content: turn.text }];
}

/** A turn's content: a string, or text blocks with, on the assistant's side, tool_use blocks and, on the user's, tool_result blocks. */
function turnContent(v: unknown, param: string, role: Turn["role"], called: ReadonlySet<string>): Turn {
  if (typeof v === "string") return { role, text: v, calls: [], results: [] };
  if (!Array.isArray(v)) invalid(param, "must be a string or a list of content blocks");
  const texts: string[] = [];
  const calls: ToolCall[] = [];
  const results: { id: string; content: string }[] = [];
  v.forEach((block: unknown, i) => {
    const at = `${param}[${i}]`;
    const type = required(objectAt(block, at), at, "type", text);
    if (type === "tool_use") {
      if (role !== "assistant") invalid(`${at}.type`, "tool_use blocks are the assistant's; the user sends tool_result blocks");
      calls.push(toolUseBlock(block as Json, at));
    } else if (type === "tool_result") {
      if (role !== "user") invalid(`${at}.type`, "tool_result blocks are the user's; the assistant sends tool_use blocks");
      results.push(toolResultBlock(block as Json, at, called));
    } else texts.push(textBlock(block, at));
  });
  return { role, text: texts.join(""), calls, results };
}

function toolUseBlock(block: Json, at: string): ToolCall {
  knownFields(block, TOOL_USE_FIELDS, at);
  const input = required(block, at, "input", objectAt);
  return { id: required(block, at, "id", nonEmptyText), name: required(block, at, "name", nonEmptyText), arguments: JSON.stringify(input) };
}

/** A tool's result, answering a tool_use of an earlier assistant turn by its id; an error result says so. */
function toolResultBlock(block: Json, at: string, called: ReadonlySet<string>): { id: string; content: string } {
  knownFields(block, TOOL_RESULT_FIELDS, at);
  const id = required(block, at, "tool_use_id", nonEmptyText);
  if (!called.has(id)) invalid(`${at}.tool_use_id`, `"${id}" answers no tool_use block of an earlier assistant message`);
  const result = optional(block, at, "content", content) ?? "";
  return { id, content: optional(block, at, "is_error", boolean) === true ? `error: ${result}` : result };
}

/** The tools offered (client tools: a name, a description, an input schema) and the choice; none without tools. */
function toolUse(b: Json): ToolUse | undefined {
  const given = optional(b, null, "tools", (v, param) => {
    if (!Array.isArray(v)) invalid(param, "must be a list of tools");
    return v.map((t: unknown, i) => toolOf(t, `${param}[${i}]`));
  });
  const names = new Set<string>();
  for (const [i, t] of (given ?? []).entries()) {
    if (names.has(t.name)) invalid(`tools[${i}].name`, `"${t.name}" is offered twice; tool names must differ`);
    names.add(t.name);
  }
  const choice = optional(b, null, "tool_choice", objectAt);
  if (choice === undefined) return given === undefined || given.length === 0 ? undefined : { tools: given, choice: "auto", parallel: true };
  knownFields(choice, TOOL_CHOICE_FIELDS, "tool_choice");
  const type = required(choice, "tool_choice", "type", text);
  const parallel = optional(choice, "tool_choice", "disable_parallel_tool_use", boolean) !== true;
  if (type === "none") return given === undefined || given.length === 0 ? undefined : { tools: given, choice: "none", parallel };
  if (given === undefined || given.length === 0) invalid("tool_choice", "needs tools: offer the tools the model may use");
  if (type === "auto" || type === "any") return { tools: given, choice: type === "any" ? "required" : "auto", parallel };
  if (type !== "tool") invalid("tool_choice.type", 'must be "auto", "any", "tool" or "none"');
  const name = required(choice, "tool_choice", "name", nonEmptyText);
  if (!names.has(name)) invalid("tool_choice.name", `"${name}" is not among the tools offered (${[...names].join(", ")})`);
  return { tools: given, choice: { name }, parallel };
}

function toolOf(v: unknown, at: string): Tool {
  const t = objectAt(v, at);
  const type = optional(t, at, "type", text);
  if (type !== undefined && type !== "custom") invalid(`${at}.type`, `${JSON.stringify(type)}: Anthropic's server tools are not served here; offer client tools (a name and an input_schema)`);
  knownFields(t, TOOL_FIELDS, at);
  const name = required(t, at, "name", text);
  if (!TOOL_NAME.test(name)) invalid(`${at}.name`, "must be 1 to 64 letters, digits, _ or -");
  const schema = required(t, at, "input_schema", objectAt);
  if (schema.type !== "object") invalid(`${at}.input_schema.type`, 'must be "object": a tool takes an object of named inputs');
  const description = optional(t, at, "description", text);
  return { name, ...(description === undefined ? {} : { description }), parameters: schema, strict: false };
}

function roleOf(v: unknown, param: string): "user" | "assistant" {
  if (v === "user" || v === "assistant") return v;
  if (v === "system") invalid(param, 'messages take the roles "user" and "assistant"; send the system prompt as the top-level system field');
  return invalid(param, 'must be "user" or "assistant"');
}

/** A string, or a list of text blocks (joined as one text). */
function content(v: unknown, param: string): string {
  if (typeof v === "string") return v;
  if (!Array.isArray(v)) invalid(param, "must be a string or a list of content blocks");
  return v.map((block: unknown, i) => textBlock(block, `${param}[${i}]`)).join("");
}

function textBlock(v: unknown, at: string): string {
  const block = objectAt(v, at);
  const type = required(block, at, "type", text);
  if (type !== "text") invalid(`${at}.type`, `${JSON.stringify(type)} blocks are not supported here; this gateway takes text blocks only`);
  knownFields(block, BLOCK_FIELDS, at);
  if (block.cache_control != null) objectAt(block.cache_control, `${at}.cache_control`);
  return required(block, at, "text", text);
}

function stopSequences(v: unknown, param: string): string[] {
  if (!Array.isArray(v)) invalid(param, "must be a list of strings");
  if (v.length > MAX_STOP_SEQUENCES) invalid(param, `at most ${MAX_STOP_SEQUENCES} stop sequences`);
  return v.map((s: unknown, i) => nonEmptyText(s, `${param}[${i}]`));
}

// Readers of one value: each returns it typed, or refuses it naming `param`.

function invalid(param: string | null, message: string): never {
  throw new FlotillaError("invalid_request", message, { param });
}

function objectAt(v: unknown, param: string | null): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) invalid(param, param === null ? "the request body must be a JSON object" : "must be an object");
  return v as Json;
}

/** The name of `key` inside the object at `at` (null: the body). */
function path(at: string | null, key: string): string {
  return at === null ? key : `${at}.${key}`;
}

function knownFields(o: Json, fields: readonly string[], at: string | null): void {
  for (const key of Object.keys(o)) {
    if (fields.includes(key)) continue;
    const param = path(at, key);
    invalid(param, UNSUPPORTED[param] ?? `not a field this gateway takes; ${at ?? "the request"} takes ${fields.join(", ")}`);
  }
}

function required<T>(o: Json, at: string | null, key: string, read: (v: unknown, param: string) => T): T {
  if (o[key] === undefined) invalid(path(at, key), "field required");
  return read(o[key], path(at, key));
}

function optional<T>(o: Json, at: string | null, key: string, read: (v: unknown, param: string) => T): T | undefined {
  return o[key] === undefined ? undefined : read(o[key], path(at, key));
}

function text(v: unknown, param: string): string {
  if (typeof v !== "string") invalid(param, "must be a string");
  return v;
}

function nonEmptyText(v: unknown, param: string): string {
  if (text(v, param).length === 0) invalid(param, "must not be empty");
  return v as string;
}

function boolean(v: unknown, param: string): boolean {
  if (typeof v !== "boolean") invalid(param, "must be true or false");
  return v;
}

function number(min: number, max: number, aboveMin = false): (v: unknown, param: string) => number {
  return (v, param) => {
    const ok = typeof v === "number" && Number.isFinite(v) && (aboveMin ? v > min : v >= min) && v <= max;
    if (!ok) invalid(param, `must be a number ${aboveMin ? "above" : "from"} ${min} ${aboveMin ? "up " : ""}to ${max}`);
    return v as number;
  };
}

function integer(min: number, max?: number): (v: unknown, param: string) => number {
  return (v, param) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || (max !== undefined && v > max)) invalid(param, `must be an integer ${max === undefined ? `of at least ${min}` : `from ${min} to ${max}`}`);
    return v;
  };
}
