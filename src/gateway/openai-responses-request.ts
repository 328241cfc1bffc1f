/**
 * POST /v1/responses, OpenAI's Responses API, for text: its body schema and
 * its reading into the engine-neutral request. `input` is text or message
 * items (the easy form, or the output items a previous response returned);
 * `instructions` leads as a system message; `text.format` is
 * response_format's twin. Nothing is stored: an omitted `store` is taken
 * as false and echoed so, `store: true` and `previous_response_id` are
 * 400s that say to send the conversation as items. Tools, images, files and
 * reasoning items are refused by name, as every field that would be ignored.
 */
import type { FastifyRequest } from "fastify";
import type { ChatMessage, GenerationRequest } from "../core/request.js";
import { apiHandler, type CompletionServices } from "./completions.js";
import { responsesWriter } from "./openai-responses-events.js";
import { MAX_OUTPUT_TOKENS, jsonSchemaFormatProperties, labelProperties } from "./schemas.js";
import { responseFormatOf } from "./translate.js";

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
    input: { anyOf: [{ type: "string" }, { type: "array", minItems: 1, items: messageItem }] },
    instructions: { type: ["string", "null"] },
    max_output_tokens: { type: ["integer", "null"], minimum: 1, maximum: MAX_OUTPUT_TOKENS },
    temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
    top_p: { type: ["number", "null"], exclusiveMinimum: 0, maximum: 1 },
    stream: { type: ["boolean", "null"] },
    store: { type: ["boolean", "null"], enum: [false, null] },
    text: { type: "object", additionalProperties: false, properties: { format: textFormat } },
    ...labelProperties,
  },
} as const;

type Part = { type: "input_text" | "output_text"; text: string };

export interface ResponsesBody {
  model: string;
  input: string | { role: ChatMessage["role"]; content: string | Part[] }[];
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
  const messages: ChatMessage[] = [
    ...(body.instructions == null ? [] : [{ role: "system" as const, content: body.instructions }]),
    ...items.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("") })),
  ];
  const f = body.text?.format;
  const format = responseFormatOf(f?.type, f);
  return {
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

/** The route: one more reader and writer over the completion run, so a response takes the chat completions' whole path. */
export function responsesHandler(services: CompletionServices) {
  return apiHandler(services, (request: FastifyRequest<{ Body: ResponsesBody }>) => {
    const body = request.body;
    return {
      endpoint: "responses",
      generation: responsesRequest(request.id, body),
      model: body.model,
      stream: body.stream === true,
      sessionKey: body.prompt_cache_key ?? body.user,
      serviceTier: body.service_tier,
      writer: responsesWriter,
    };
  });
}
