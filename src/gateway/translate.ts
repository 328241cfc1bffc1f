import { FlotillaError } from "../core/errors.js";
import type { ChatMessage, GenerationRequest, Prompt, ResponseFormat, Sampling } from "../core/request.js";
import type { ChatCompletionBody, CompletionBody } from "./schemas.js";

/** Turns a validated OpenAI body into the engine-neutral request. */
export function chatRequest(id: string, body: ChatCompletionBody): GenerationRequest {
  const messages: ChatMessage[] = body.messages.map((m) => ({ role: m.role, content: contentText(m.content) }));
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (body.top_logprobs != null && body.logprobs !== true) {
    throw new FlotillaError("invalid_request", "top_logprobs needs logprobs: true", { param: "top_logprobs" });
  }
  const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
  const rf = body.response_format;
  const format = responseFormatOf(rf?.type, rf !== undefined && "json_schema" in rf ? rf.json_schema : undefined);
  const request = { id, prompt: { kind: "chat" as const, messages }, sampling: sampling(body, maxTokens, logprobs), ...(format === undefined ? {} : { format }) };
  if (body.continue_final_message !== true) return request;
  const last = messages.at(-1);
  if (last?.role !== "assistant") {
    throw new FlotillaError("invalid_request", "continue_final_message needs the last message to be the assistant's answer to continue", { param: "messages" });
  }
  return { ...request, prompt: { kind: "chat", messages: messages.slice(0, -1) }, continuation: last.content };
}

export function completionRequest(id: string, body: CompletionBody): GenerationRequest {
  const given = body.prompt;
  const prompt: Prompt =
    typeof given === "string" ? { kind: "text", text: given } : typeof given[0] === "number" ? { kind: "tokens", ids: given as number[] } : { kind: "text", text: given[0] as string };
  // OpenAI's legacy default for completions is 16 tokens.
  return { id, prompt, sampling: sampling(body, body.max_tokens ?? 16, body.logprobs ?? undefined) };
}

function contentText(content: ChatCompletionBody["messages"][number]["content"]): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  return content.map((part) => part.text).join("");
}

function sampling(body: ChatCompletionBody | CompletionBody, maxTokens: number | undefined, logprobs: number | undefined): Sampling {
  const stop = body.stop == null ? undefined : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    ...(maxTokens === undefined ? {} : { maxTokens }),
    ...(body.temperature === undefined ? {} : { temperature: body.temperature }),
    ...(body.top_p === undefined ? {} : { topP: body.top_p }),
    ...(body.seed === undefined ? {} : { seed: body.seed }),
    ...(body.frequency_penalty == null || body.frequency_penalty === 0 ? {} : { frequencyPenalty: body.frequency_penalty }),
    ...(body.presence_penalty == null || body.presence_penalty === 0 ? {} : { presencePenalty: body.presence_penalty }),
    ...(stop === undefined ? {} : { stop }),
    ...(logprobs === undefined ? {} : { logprobs }),
  };
}

/**
 * An OpenAI format (chat's response_format: the type, then its json_schema;
 * the Responses API's text.format: both in one object) as the engines read
 * it; "text" (or none) is free text, and a json_schema without a schema is
 * JSON mode: any JSON is valid.
 */
export function responseFormatOf(type: string | undefined, js: { name?: string; schema?: Record<string, unknown>; strict?: boolean | null } | undefined): ResponseFormat | undefined {
  if (type === undefined || type === "text") return undefined;
  if (type === "json_object" || js?.schema === undefined) return { type: "json_object" };
  return { type: "json_schema", name: js.name ?? "response", schema: js.schema, strict: js.strict === true };
}
