/**
 * POST /v1/responses, OpenAI's Responses API, for text: its body schema and
 * its reading into the engine-neutral request. `input` is text or message
 * items (the easy form, or the output items a previous response returned);
 * `instructions` leads as a system message; `text.format` is
 * response_format's twin. Nothing is stored: an omitted `store` is taken
 * as false and echoed so, `store: true` and `previous_response_id` are
 * 400s that say to send the conversation as items. Function tools are
 * served as chat completions' tools are: `function_call` and
 * `function_call_output` items carry calls and their results in the
 * history. Images, files, built-in tools and reasoning items are refused by
 * name, as every field that would be ignored.
 */
import { FlotillaError } from "../core/errors.js";
import type { ChatMessage, GenerationRequest, ToolUse } from "../core/request.js";
import { apiHandler, type ApiReader, type CompletionServices } from "./completions.js";
import { responsesWriter, type ToolsEcho } from "./openai-responses-events.js";
import { MAX_OUTPUT_TOKENS, jsonSchemaFormatProperties, labelProperties } from "./schemas.js";
import { responseFormatOf, toolUseOf } from "./translate.js";

/** Text parts only; `type` is checked first, so an image or file part is told so rather than that it lacks text. */
const textPart = {
  type: "object",
  required: ["type"],
  properties: { type: { enum: ["input_text", "output_text"] } },
  if: { properties: { type: { enum: ["input_text", "output_text"] } } },
  then: { required: ["type", "text"], additionalProperties: false, properties: { type: true, text: { type: "string" }, annotations: { type: "array" } } },
} as const;

const messageItem = {
  type: "object",
  required: ["role", "content"],
  additionalProperties: false,
  properties: {
    type: { const: "message" },
    role: { enum: ["user", "assistant", "system", "developer"] },
    content: { anyOf: [{ type: "string" }, { type: "array", items: textPart }] },
    // An output item sent back as history carries these; they label it only.
    id: { type: "string" },
    status: { type: "string" },
  },
} as const;

/** A call the model made, sent back as history; `id` and `status` label it only. */
const functionCallItem = {
  type: "object",
  required: ["type", "call_id", "name", "arguments"],
  additionalProperties: false,
  properties: { type: { const: "function_call" }, call_id: { type: "string", minLength: 1 }, name: { type: "string", minLength: 1 }, arguments: { type: "string" }, id: { type: "string" }, status: { type: "string" } },
} as const;

/** A call's result, answering it by `call_id`. */
const functionCallOutputItem = {
  type: "object",
  required: ["type", "call_id", "output"],
  additionalProperties: false,
  properties: { type: { const: "function_call_output" }, call_id: { type: "string", minLength: 1 }, output: { type: "string" }, id: { type: "string" }, status: { type: "string" } },
} as const;

/** An input item by its type: a message (the easy form has none), a function call, or a call's output. */
const inputItem = {
  type: "object",
  properties: { type: { enum: ["message", "function_call", "function_call_output"] } },
  if: { required: ["type"], properties: { type: { const: "function_call" } } },
  then: functionCallItem,
  else: { if: { required: ["type"], properties: { type: { const: "function_call_output" } } }, then: functionCallOutputItem, else: messageItem },
} as const;

/** A function tool, flat as the Responses API has them; `strict` defaults to true here. `type` is checked first, so a built-in tool is told so. */
const functionTool = {
  type: "object",
  required: ["type"],
  properties: { type: { const: "function" } },
  if: { properties: { type: { const: "function" } } },
  then: {
    required: ["type", "name"],
    additionalProperties: false,
    properties: {
      type: true,
      name: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
      description: { type: ["string", "null"] },
      parameters: { type: ["object", "null"] },
      strict: { type: ["boolean", "null"] },
    },
  },
} as const;

const textFormat = {
  type: "object",
  required: ["type"],
  additionalProperties: false,
  properties: { type: { enum: ["text", "json_object", "json_schema"] }, ...jsonSchemaFormatProperties },
} as const;

export const responsesSchema = {
  type: "object",
  required: ["model", "input"],
  additionalProperties: false,
  properties: {
    model: { type: "string", minLength: 1 },
    input: { anyOf: [{ type: "string" }, { type: "array", minItems: 1, items: inputItem }] },
    instructions: { type: ["string", "null"] },
    max_output_tokens: { type: ["integer", "null"], minimum: 1, maximum: MAX_OUTPUT_TOKENS },
    temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
    top_p: { type: ["number", "null"], exclusiveMinimum: 0, maximum: 1 },
    stream: { type: ["boolean", "null"] },
    store: { type: ["boolean", "null"], enum: [false, null] },
    text: { type: "object", additionalProperties: false, properties: { format: textFormat } },
    tools: { type: "array", maxItems: 128, items: functionTool },
    tool_choice: {
      anyOf: [
        { enum: ["none", "auto", "required"] },
        { type: "object", required: ["type", "name"], additionalProperties: false, properties: { type: { const: "function" }, name: { type: "string" } } },
      ],
    },
    parallel_tool_calls: { type: ["boolean", "null"] },
    ...labelProperties,
  },
} as const;

type Part = { type: "input_text" | "output_text"; text: string };

type MessageInput = { type?: "message"; role: ChatMessage["role"]; content: string | Part[] };
type FunctionCallInput = { type: "function_call"; call_id: string; name: string; arguments: string };
type FunctionCallOutputInput = { type: "function_call_output"; call_id: string; output: string };

export interface ResponsesBody {
  model: string;
  input: string | (MessageInput | FunctionCallInput | FunctionCallOutputInput)[];
  tools?: { type: "function"; name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null }[];
  tool_choice?: "none" | "auto" | "required" | { type: "function"; name: string };
  parallel_tool_calls?: boolean | null;
  instructions?: string | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stream?: boolean | null;
  text?: { format?: { type: "text" | "json_object" | "json_schema"; name?: string; schema?: Record<string, unknown>; strict?: boolean | null } };
  user?: string;
  prompt_cache_key?: string;
  service_tier?: "auto" | "default" | "flex" | "scale" | "priority" | null;
}

/** The body as the engine-neutral request: instructions, then the items as chat messages. */
export function responsesRequest(id: string, body: ResponsesBody): GenerationRequest {
  const items = typeof body.input === "string" ? [{ role: "user" as const, content: body.input }] : body.input;
  const messages: ChatMessage[] = [...(body.instructions == null ? [] : [{ role: "system" as const, content: body.instructions }]), ...itemMessages(items)];
  const f = body.text?.format;
  const format = responseFormatOf(f?.type, f);
  const tools = toolUse(body);
  return {
    ...(tools === undefined ? {} : { tools }),
    id,
    prompt: { kind: "chat", messages },
    sampling: {
      ...(body.max_output_tokens == null ? {} : { maxTokens: body.max_output_tokens }),
      ...(body.temperature == null ? {} : { temperature: body.temperature }),
      ...(body.top_p == null ? {} : { topP: body.top_p }),
    },
    ...(format === undefined ? {} : { format }),
  };
}

/**
 * Input items as chat turns: consecutive function calls are one assistant
 * turn's calls, and each output a tool turn answering an earlier call.
 */
function itemMessages(items: Exclude<ResponsesBody["input"], string>): ChatMessage[] {
  const out: ChatMessage[] = [];
  const called = new Set<string>();
  items.forEach((item, i) => {
    if (item.type === "function_call") {
      called.add(item.call_id);
      const call = { id: item.call_id, name: item.name, arguments: item.arguments };
      const last = out.at(-1);
      if (last?.toolCalls !== undefined) out[out.length - 1] = { ...last, toolCalls: [...last.toolCalls, call] };
      else out.push({ role: "assistant", content: "", toolCalls: [call] });
    } else if (item.type === "function_call_output") {
      if (!called.has(item.call_id)) throw new FlotillaError("invalid_request", `input[${i}].call_id "${item.call_id}" answers no function_call item before it`, { param: `input[${i}].call_id` });
      out.push({ role: "tool", content: item.output, toolCallId: item.call_id });
    } else out.push({ role: item.role, content: typeof item.content === "string" ? item.content : item.content.map((p) => p.text).join("") });
  });
  return out;
}

/** The function tools (strict unless set false, as OpenAI's default is here) and the choice, checked as chat completions' are. */
function toolUse(body: ResponsesBody): ToolUse | undefined {
  const tools = (body.tools ?? []).map((t) => ({ ...t, strict: t.strict !== false }));
  const choice = typeof body.tool_choice === "object" ? { name: body.tool_choice.name } : body.tool_choice;
  // Responses echo parallel_tool_calls with or without tools: only with tools does it mean anything.
  return toolUseOf(tools, choice, tools.length === 0 ? undefined : body.parallel_tool_calls, (i) => `tools[${i}].name`);
}

/** The route: one more reader and writer over the completion run, so a response takes the chat completions' whole path. */
export function responsesHandler(services: CompletionServices) {
  return apiHandler(services, responsesReader);
}

/** How a Responses API request is read. */
export const responsesReader: ApiReader<ResponsesBody> = (request) => {
  const body = request.body;
  return {
    endpoint: "responses",
    generation: responsesRequest(request.id, body),
    model: body.model,
    stream: body.stream === true,
    sessionKey: body.prompt_cache_key ?? body.user,
    serviceTier: body.service_tier,
    writer: responsesWriter(echoOf(body)),
  };
};

/** What the response says back of the request's tools, as OpenAI's responses do. */
function echoOf(body: ResponsesBody): ToolsEcho {
  return {
    tools: (body.tools ?? []).map((t) => ({ type: "function", name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict !== false })),
    tool_choice: body.tool_choice ?? (body.tools === undefined || body.tools.length === 0 ? "none" : "auto"),
    parallel_tool_calls: body.parallel_tool_calls !== false,
  };
}
