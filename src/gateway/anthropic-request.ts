import { FlotillaError } from "../core/errors.js";
import type { ChatMessage, GenerationRequest, Sampling } from "../core/request.js";
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

const FIELDS = ["model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p", "top_k", "stream", "metadata"];
const MESSAGE_FIELDS = ["role", "content"];
/** cache_control is taken and needs no action: every replica keeps recent prefixes cached, and the router sends a prompt where its prefix is. */
const BLOCK_FIELDS = ["type", "text", "cache_control"];
const METADATA_FIELDS = ["user_id"];
/** Stop strings are matched on every piece of text an engine writes: a bound keeps that cheap. */
const MAX_STOP_SEQUENCES = 16;

const NO_TOOLS = "tool use is not supported here yet; send the request without tools, tool_choice and tool blocks";

/** Anthropic fields this gateway knows and does not serve: each refusal says so, rather than "unknown". */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  tools: NO_TOOLS,
  tool_choice: NO_TOOLS,
  thinking: "extended thinking is not supported here; send the request without thinking",
};

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
  const prefill = last.role === "assistant" ? last.content : undefined;
  const history = prefill === undefined ? turns : turns.slice(0, -1);
  const messages = system === undefined || system === "" ? history : [{ role: "system" as const, content: system }, ...history];
  const generation: GenerationRequest = {
    id,
    prompt: { kind: "chat", messages },
    sampling: sampling(b, maxTokens),
    ...(prefill === undefined || prefill === "" ? {} : { continuation: prefill }),
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

function conversation(v: unknown, param: string): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) invalid(param, "must be a non-empty list of messages");
  return v.map((m: unknown, i) => {
    const at = `${param}[${i}]`;
    const message = objectAt(m, at);
    knownFields(message, MESSAGE_FIELDS, at);
    const role = required(message, at, "role", roleOf);
    const expected = i % 2 === 0 ? "user" : "assistant";
    if (role !== expected) {
      invalid(`${at}.role`, i === 0 ? 'the first message must be the user\'s ("user")' : `roles must alternate between "user" and "assistant", and ${param}[${i - 1}] is "${role}" too`);
    }
    return { role, content: required(message, at, "content", content) };
  });
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
  if (type === "tool_use" || type === "tool_result") invalid(`${at}.type`, NO_TOOLS);
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
