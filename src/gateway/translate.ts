import { FlotillaError } from "../core/errors.js";
import type { ChatMessage, GenerationRequest, Prompt, ResponseFormat, Sampling, Tool, ToolUse } from "../core/request.js";
import type { ChatCompletionBody, CompletionBody } from "./schemas.js";

/** Turns a validated OpenAI body into the engine-neutral request. */
export function chatRequest(id: string, body: ChatCompletionBody): GenerationRequest {
  const messages = chatMessages(body.messages);
  const tools = toolUse(body);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (body.top_logprobs != null && body.logprobs !== true) {
    throw new FlotillaError("invalid_request", "top_logprobs needs logprobs: true", { param: "top_logprobs" });
  }
  const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
  const rf = body.response_format;
  const format = responseFormatOf(rf?.type, rf !== undefined && "json_schema" in rf ? rf.json_schema : undefined);
  const request = {
    id,
    prompt: { kind: "chat" as const, messages },
    sampling: sampling(body, maxTokens, logprobs),
    ...(format === undefined ? {} : { format }),
    ...(tools === undefined ? {} : { tools }),
  };
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

/**
 * The conversation, with its tool turns checked the way OpenAI checks them:
 * tool calls only on assistant turns, and every tool turn the result of a
 * call made before it, named by its id.
 */
function chatMessages(given: ChatCompletionBody["messages"]): ChatMessage[] {
  const called = new Set<string>();
  return given.map((m, i) => {
    const message: ChatMessage = { role: m.role, content: contentText(m.content) };
    if (m.tool_calls != null && m.tool_calls.length > 0) {
      if (m.role !== "assistant") throw new FlotillaError("invalid_request", `messages[${i}].tool_calls: only an assistant message carries tool calls`, { param: `messages[${i}].tool_calls` });
      for (const c of m.tool_calls) called.add(c.id);
      return { ...message, toolCalls: m.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })) };
    }
    if (m.role !== "tool") {
      if (m.tool_call_id !== undefined) throw new FlotillaError("invalid_request", `messages[${i}].tool_call_id: only a tool message answers a tool call`, { param: `messages[${i}].tool_call_id` });
      return message;
    }
    if (m.tool_call_id === undefined) throw new FlotillaError("invalid_request", `messages[${i}].tool_call_id is required: a tool message is the result of one tool call`, { param: `messages[${i}].tool_call_id` });
    if (!called.has(m.tool_call_id)) {
      throw new FlotillaError("invalid_request", `messages[${i}].tool_call_id "${m.tool_call_id}" answers no tool call of an earlier assistant message`, { param: `messages[${i}].tool_call_id` });
    }
    return { ...message, toolCallId: m.tool_call_id };
  });
}

/** The tools offered, and the choice, as chat completions write them. */
function toolUse(body: ChatCompletionBody): ToolUse | undefined {
  const tools = (body.tools ?? []).map(({ function: f }) => ({ ...f, strict: f.strict === true }));
  const choice = typeof body.tool_choice === "object" ? { name: body.tool_choice.function.name } : body.tool_choice;
  return toolUseOf(tools, choice, body.parallel_tool_calls, (i) => `tools[${i}].function.name`);
}

/**
 * The tools offered and the choice, checked as OpenAI checks them, for
 * every OpenAI API: a choice other than none needs tools, names differ,
 * and a named choice is among them. `nameAt` is where tool i's name sits
 * in the body.
 */
export function toolUseOf(
  given: readonly { name: string; description?: string | null; parameters?: Readonly<Record<string, unknown>> | null; strict: boolean }[],
  choice: ToolUse["choice"] | undefined,
  parallel: boolean | null | undefined,
  nameAt: (i: number) => string,
): ToolUse | undefined {
  if (given.length === 0) {
    if (choice !== undefined && choice !== "none") throw new FlotillaError("invalid_request", "tool_choice needs tools: offer the tools the model may call", { param: "tool_choice" });
    if (parallel != null) throw new FlotillaError("invalid_request", "parallel_tool_calls needs tools", { param: "parallel_tool_calls" });
    return undefined;
  }
  const names = new Set<string>();
  const tools: Tool[] = given.map((t, i) => {
    if (names.has(t.name)) throw new FlotillaError("invalid_request", `${nameAt(i)} "${t.name}" is offered twice; tool names must differ`, { param: nameAt(i) });
    names.add(t.name);
    return { name: t.name, ...(t.description == null ? {} : { description: t.description }), ...(t.parameters == null ? {} : { parameters: t.parameters }), strict: t.strict };
  });
  if (typeof choice === "object" && !names.has(choice.name)) {
    throw new FlotillaError("invalid_request", `tool_choice names "${choice.name}", which is not among the tools offered (${[...names].join(", ")})`, { param: "tool_choice" });
  }
  return { tools, choice: choice ?? "auto", parallel: parallel !== false };
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
