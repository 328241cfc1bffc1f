/**
 * JSON schemas of the OpenAI request bodies Flotilla accepts. Fastify compiles
 * them once with ajv; a body that fails gets a 400 naming the field. Every
 * field is listed: one Flotilla does not know is refused by name
 * (errors.ts explains the well-known ones), never silently dropped, since a
 * client that sends `tools` or `response_format` expects them to act. Fields
 * that only label the request (user, metadata) are accepted as such.
 */

/**
 * The most output tokens a request may ask for (2^20, past any context
 * window served today): with it, a request's worst case always fits the
 * usage ledger's token columns (MAX_LEDGER_TOKENS) on every backend.
 */
export const MAX_OUTPUT_TOKENS = 1_048_576;

/**
 * Fields that only label a request, or key its session, alike in every
 * OpenAI body: what they change at OpenAI (storage, abuse tracking) Flotilla
 * does not do.
 */
export const labelProperties = {
  user: { type: "string" },
  metadata: { type: ["object", "null"], maxProperties: 16, additionalProperties: { type: "string", maxLength: 512 } },
  safety_identifier: { type: "string", maxLength: 64 },
  // OpenAI's cache-routing hint is what Flotilla's session affinity is: requests with one key go to one replica.
  prompt_cache_key: { type: "string", minLength: 1, maxLength: 1024 },
  // OpenAI's processing tiers; "flex" (cheaper, slower) waits behind interactive traffic here.
  service_tier: { enum: ["auto", "default", "flex", "scale", "priority", null] },
} as const;

/** A JSON-schema format's fields: chat's `response_format.json_schema`, the Responses API's `text.format`. */
export const jsonSchemaFormatProperties = {
  name: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
  description: { type: "string" },
  schema: { type: "object" },
  strict: { type: ["boolean", "null"] },
} as const;

const samplingProperties = {
  model: { type: "string", minLength: 1 },
  max_tokens: { type: "integer", minimum: 1, maximum: MAX_OUTPUT_TOKENS },
  temperature: { type: "number", minimum: 0, maximum: 2 },
  top_p: { type: "number", exclusiveMinimum: 0, maximum: 1 },
  seed: { type: "integer" },
  // One choice per request: ask again for more.
  n: { type: "integer", const: 1 },
  stream: { type: "boolean" },
  stream_options: {
    type: ["object", "null"],
    properties: { include_usage: { type: "boolean" } },
  },
  stop: {
    anyOf: [
      { type: "string", minLength: 1 },
      { type: "array", items: { type: "string", minLength: 1 }, maxItems: 4 },
      { type: "null" },
    ],
  },
  frequency_penalty: { type: ["number", "null"], minimum: -2, maximum: 2 },
  presence_penalty: { type: ["number", "null"], minimum: -2, maximum: 2 },
  ...labelProperties,
  // vLLM's extension: the answer's token ids with its text, and the prompt's as the model read them.
  return_token_ids: { type: "boolean" },
} as const;

/** A tool call the model made, as an assistant message in the history carries it. */
const toolCall = {
  type: "object",
  required: ["id", "type", "function"],
  additionalProperties: false,
  properties: {
    id: { type: "string", minLength: 1 },
    type: { const: "function" },
    function: { type: "object", required: ["name", "arguments"], additionalProperties: false, properties: { name: { type: "string", minLength: 1 }, arguments: { type: "string" } } },
  },
} as const;

/** Only text parts; `type` is checked first so an image part is told so, not that it lacks text. */
const textPart = {
  type: "object",
  required: ["type"],
  properties: { type: { const: "text" } },
  if: { properties: { type: { const: "text" } } },
  then: { required: ["text"], properties: { text: { type: "string" } } },
} as const;

const message = {
  type: "object",
  required: ["role"],
  // As the request: a field that would be dropped (tool_calls) is refused; what the openai client puts on an
  // assistant message it returned (refusal, annotations) may come back in the history, and only labels it.
  additionalProperties: false,
  properties: {
    role: { enum: ["system", "developer", "user", "assistant", "tool"] },
    content: { anyOf: [{ type: "string" }, { type: "array", items: textPart }, { type: "null" }] },
    name: { type: "string" },
    refusal: { type: ["string", "null"] },
    annotations: { type: ["array", "null"] },
    // An assistant turn's tool calls, and the tool turn that answers one (translate.ts checks they pair up).
    tool_calls: { type: ["array", "null"], items: toolCall },
    tool_call_id: { type: "string", minLength: 1 },
  },
} as const;

/** A function name as OpenAI allows it. */
const functionName = { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } as const;

/** A tool offered to the model: a function, its JSON-schema parameters (checked by the engine that enforces them). */
const tool = {
  type: "object",
  required: ["type", "function"],
  additionalProperties: false,
  properties: {
    type: { const: "function" },
    function: {
      type: "object",
      required: ["name"],
      additionalProperties: false,
      properties: { name: functionName, description: { type: "string" }, parameters: { type: "object" }, strict: { type: ["boolean", "null"] } },
    },
  },
} as const;

const toolChoice = {
  anyOf: [
    { enum: ["none", "auto", "required"] },
    {
      type: "object",
      required: ["type", "function"],
      additionalProperties: false,
      properties: { type: { const: "function" }, function: { type: "object", required: ["name"], additionalProperties: false, properties: { name: functionName } } },
    },
  ],
} as const;

/** OpenAI's three shapes; the schema itself is checked by the engine that enforces it (engines/json-schema-grammar.ts). */
const responseFormat = {
  type: "object",
  required: ["type"],
  properties: { type: { enum: ["text", "json_object", "json_schema"] } },
  if: { properties: { type: { const: "json_schema" } } },
  then: {
    required: ["type", "json_schema"],
    additionalProperties: false,
    properties: {
      type: { const: "json_schema" },
      json_schema: {
        type: "object",
        required: ["name"],
        additionalProperties: false,
        properties: jsonSchemaFormatProperties,
      },
    },
  },
  else: { additionalProperties: false, properties: { type: true } },
} as const;

export const chatCompletionSchema = {
  type: "object",
  required: ["model", "messages"],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    messages: { type: "array", minItems: 1, items: message },
    max_completion_tokens: { type: "integer", minimum: 1, maximum: MAX_OUTPUT_TOKENS },
    // vLLM's extension: resume the final assistant message instead of starting a new turn.
    continue_final_message: { type: "boolean" },
    add_generation_prompt: { type: "boolean" },
    logprobs: { type: ["boolean", "null"] },
    top_logprobs: { type: ["integer", "null"], minimum: 0, maximum: 20 },
    // Read by model cascades: a high effort can go straight to the heavy model.
    reasoning_effort: { enum: ["none", "minimal", "low", "medium", "high", null] },
    // Nothing is stored for OpenAI's evals and distillation; a request that asks for it is told so.
    store: { type: ["boolean", "null"], enum: [false, null] },
    response_format: responseFormat,
    tools: { type: "array", maxItems: 128, items: tool },
    tool_choice: toolChoice,
    parallel_tool_calls: { type: "boolean" },
  },
} as const;

export const completionSchema = {
  type: "object",
  required: ["model", "prompt"],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    // One prompt: text, or the model's token ids (read exactly as given; one list, not several).
    prompt: {
      anyOf: [
        { type: "string" },
        { type: "array", items: { type: "string" }, minItems: 1, maxItems: 1 },
        { type: "array", items: { type: "integer", minimum: 0, maximum: 4_294_967_295 }, minItems: 1 },
      ],
    },
    echo: { type: "boolean", const: false },
    logprobs: { type: ["integer", "null"], minimum: 0, maximum: 5 },
  },
} as const;

interface SamplingBody {
  model: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  stop?: string | string[] | null;
  user?: string;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  prompt_cache_key?: string;
  return_token_ids?: boolean;
  service_tier?: "auto" | "default" | "flex" | "scale" | "priority" | null;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: {
    role: "system" | "developer" | "user" | "assistant" | "tool";
    content?: string | { type: "text"; text: string }[] | null;
    tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[] | null;
    tool_call_id?: string;
  }[];
  tools?: { type: "function"; function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null } }[];
  tool_choice?: "none" | "auto" | "required" | { type: "function"; function: { name: string } };
  parallel_tool_calls?: boolean;
  max_completion_tokens?: number;
  continue_final_message?: boolean;
  reasoning_effort?: "none" | "minimal" | "low" | "medium" | "high" | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  response_format?: { type: "text" | "json_object" } | { type: "json_schema"; json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null } };
}

export interface CompletionBody extends SamplingBody {
  prompt: string | [string] | number[];
  logprobs?: number | null;
}
