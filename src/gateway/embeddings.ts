/**
 * POST /v1/embeddings, OpenAI's shape: its body schema, its reading into an
 * embeddings request, and its answer. Everything between (the tenant's
 * limits, the fair share, routing, retries, the ledger row) is the
 * completion run's, as for every API; the dispatcher embeds instead of
 * generating.
 */
import { FlotillaError } from "../core/errors.js";
import type { EmbeddingInput, EmbeddingRequest, Prompt } from "../core/request.js";
import type { AnswerWriter } from "./answer-writer.js";
import { apiHandler, type ApiReader, type ApiRequest, type CompletionServices } from "./completions.js";
import type { ServedBy } from "./responses.js";
import { labelProperties } from "./schemas.js";

/** OpenAI's limit on inputs per request. */
const MAX_EMBEDDING_INPUTS = 2048;

const tokenIds = { type: "array", minItems: 1, items: { type: "integer", minimum: 0, maximum: 4_294_967_295 } } as const;

export const embeddingsSchema = {
  type: "object",
  required: ["model", "input"],
  additionalProperties: false,
  properties: {
    model: { type: "string", minLength: 1 },
    // One text, several, one list of token ids, or several: never empty (an empty text has no embedding).
    input: {
      anyOf: [
        { type: "string", minLength: 1 },
        { type: "array", minItems: 1, maxItems: MAX_EMBEDDING_INPUTS, items: { type: "string", minLength: 1 } },
        tokenIds,
        { type: "array", minItems: 1, maxItems: MAX_EMBEDDING_INPUTS, items: tokenIds },
      ],
    },
    encoding_format: { enum: ["float", "base64"] },
    dimensions: { type: "integer", minimum: 1, maximum: 65_536 },
    user: labelProperties.user,
  },
} as const;

export interface EmbeddingsBody {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: "float" | "base64";
  dimensions?: number;
  user?: string;
}

/** The route handler: an embeddings request run as every API's requests are. */
export function embeddingsHandler(services: CompletionServices) {
  return apiHandler(services, embeddingsReader(services));
}

/** How an embeddings request is read: its vectors come from the chosen replica in place of a generation. */
export function embeddingsReader(services: CompletionServices): ApiReader<EmbeddingsBody> {
  return (request): ApiRequest => {
    const body = request.body;
    if (services.cascades.has(body.model)) {
      throw new FlotillaError("invalid_request", `"${body.model}" is a model cascade, which generates; name a served model to embed with`, { param: "model" });
    }
    const embedding: EmbeddingRequest = { id: request.id, inputs: inputsOf(body.input), ...(body.dimensions === undefined ? {} : { dimensions: body.dimensions }) };
    let vectors: readonly Float32Array[] = [];
    return {
      endpoint: "embeddings",
      // What admission reserves and the fair share weighs: every input's tokens, and the two marks (beginning,
      // end) a tokenizer may put around each, so the reservation covers what the engine will count.
      generation: { id: request.id, prompt: admissionPrompt(embedding.inputs), sampling: { maxTokens: 0 } },
      promptMarks: 2 * embedding.inputs.length,
      model: body.model,
      stream: false,
      sessionKey: body.user,
      execute: async (model, signal, onAttempt, routing) => {
        const out = await services.dispatcher.embed(model, embedding, signal, onAttempt, routing);
        vectors = out.vectors;
        const usage = { promptTokens: out.promptTokens, completionTokens: 0, cachedTokens: 0 };
        return { finishReason: "stop", usage, ...(out.usageEstimated === true ? { usageEstimated: true } : {}), replica: out.replica, attempts: out.attempts, continuations: 0 };
      },
      writer: embeddingsWriter(body.encoding_format ?? "float", () => vectors),
    };
  };
}

function inputsOf(input: EmbeddingsBody["input"]): EmbeddingInput[] {
  if (typeof input === "string") return [{ kind: "text", text: input }];
  if (input.every((i) => typeof i === "string")) return (input as string[]).map((text) => ({ kind: "text", text }));
  if (input.every((i) => typeof i === "number")) return [{ kind: "tokens", ids: input as number[] }];
  return (input as number[][]).map((ids) => ({ kind: "tokens", ids }));
}

/** Every input as one prompt, for counting: texts a line each, ids end to end. */
function admissionPrompt(inputs: readonly EmbeddingInput[]): Prompt {
  if (inputs.every((i) => i.kind === "text")) return { kind: "text", text: inputs.map((i) => i.text).join("\n") };
  return { kind: "tokens", ids: inputs.flatMap((i) => (i.kind === "tokens" ? i.ids : [])) };
}

/** OpenAI's embeddings list; base64 is each vector's float32 bytes, little-endian, as OpenAI sends them. */
function embeddingsWriter(format: "float" | "base64", vectors: () => readonly Float32Array[]): AnswerWriter {
  const encode = format === "float" ? (v: Float32Array): unknown => Array.from(v) : (v: Float32Array): unknown => littleEndian(v).toString("base64");
  return {
    stream: () => {
      throw new Error("an embeddings request is never streamed");
    },
    whole: (head) => ({
      text: () => undefined,
      body: (result, servedBy: ServedBy) => ({
        object: "list",
        data: vectors().map((v, index) => ({ object: "embedding", index, embedding: encode(v) })),
        model: head.model,
        usage: { prompt_tokens: result.usage.promptTokens, total_tokens: result.usage.promptTokens },
        x_flotilla: servedBy,
      }),
    }),
  };
}

function littleEndian(v: Float32Array): Buffer {
  const out = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) out.writeFloatLE(v[i]!, i * 4);
  return out;
}
