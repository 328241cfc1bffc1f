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
import type { ChatMessage, GenerationRequest, ResponseFormat } from "../core/request.js";
import { apiHandler, type CompletionServices } from "./completions.js";
import { responsesWriter } from "./openai-responses-events.js";
import { MAX_OUTPUT_TOKENS } from "./schemas.js";

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
  properties: {
    type: { enum: ["text", "json_object", "json_schema"] },
    name: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
    description: { type: "string" },
    schema: { type: "object" },
    strict: { type: ["boolean", "null"] },
  },
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
    metadata: { type: ["object", "null"], maxProperties: 16, additionalProperties: { type: "string", maxLength: 512 } },
    user: { type: "string" },
    safety_identifier: { type: "string", maxLength: 64 },
    prompt_cache_key: { type: "string", minLength: 1, maxLength: 1024 },
    service_tier: { enum: ["auto", "default", "flex", "scale", "priority", null] },
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
  const format = formatOf(body.text?.format);
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

function formatOf(f: NonNullable<ResponsesBody["text"]>["format"]): ResponseFormat | undefined {
  if (f === undefined || f.type === "text") return undefined;
  if (f.type === "json_object" || f.schema === undefined) return { type: "json_object" };
  return { type: "json_schema", name: f.name ?? "response", schema: f.schema, strict: f.strict === true };
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
