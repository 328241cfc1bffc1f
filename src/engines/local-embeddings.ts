import type { LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import { FlotillaError } from "../core/errors.js";
import type { EmbeddingInput, EmbeddingRequest, EmbeddingResult } from "../core/request.js";
import { SlotPool } from "./slots.js";

export interface LocalEmbedderOptions {
  readonly contextSize: number;
  readonly threads: number;
  /** Requests allowed to wait for the embedding context before `overloaded`. */
  readonly maxQueue: number;
  /** Token ids at or past it are refused: llama.cpp aborts the process on them. */
  readonly vocabularySize: number;
}

/**
 * Embeddings on a local model: one llama.cpp embedding context beside the
 * generation context, created on first use (most replicas never embed, and
 * it holds a KV cache of its own), reading one input at a time in arrival
 * order. Every vector is unit length, as OpenAI's are, so a client's cosine
 * similarity is a dot product.
 */
export class LocalEmbedder {
  readonly #model: LlamaModel;
  readonly #opts: LocalEmbedderOptions;
  #pool: Promise<SlotPool<LlamaEmbeddingContext>> | undefined;
  #waiting = 0;
  #running = 0;

  constructor(model: LlamaModel, opts: LocalEmbedderOptions) {
    this.#model = model;
    this.#opts = opts;
  }

  /** Requests embedding now or waiting to. */
  get load(): number {
    return this.#running + this.#waiting;
  }

  async embed(request: EmbeddingRequest, signal: AbortSignal): Promise<EmbeddingResult> {
    const size = this.#model.embeddingVectorSize;
    if (request.dimensions !== undefined && request.dimensions > size) {
      throw new FlotillaError("invalid_request", `this model's embeddings have ${size} dimensions; ask for at most ${size}`, { param: "dimensions" });
    }
    for (const input of request.inputs) this.#check(input);
    this.#waiting++;
    let context: LlamaEmbeddingContext;
    let pool: SlotPool<LlamaEmbeddingContext>;
    try {
      pool = await this.#contexts();
      context = await pool.acquire(signal);
    } finally {
      this.#waiting--;
    }
    this.#running++;
    try {
      const vectors: Float32Array[] = [];
      let promptTokens = 0;
      for (const [i, input] of request.inputs.entries()) {
        if (signal.aborted) throw new FlotillaError("cancelled", "embedding was cancelled");
        // The library puts the beginning and end tokens into the array it is given: never the request's own.
        const read = input.kind === "text" ? input.text : ([...input.ids] as Token[]);
        const length = context.calculateInputLength(read);
        if (length >= this.#opts.contextSize) {
          throw new FlotillaError("context_length_exceeded", `input[${i}] is ${length} tokens; this model embeds at most ${this.#opts.contextSize - 1}`, { param: "input" });
        }
        vectors.push(unitVector((await context.getEmbeddingFor(read)).vector, request.dimensions));
        promptTokens += length;
      }
      return { vectors, promptTokens };
    } catch (err) {
      if (err instanceof FlotillaError) throw err;
      throw new FlotillaError("engine_error", `local engine failed to embed: ${(err as Error).message}`, { cause: err });
    } finally {
      this.#running--;
      pool.release(context);
    }
  }

  #check(input: EmbeddingInput): void {
    if (input.kind === "tokens" && !input.ids.every((id) => id >= 0 && id < this.#opts.vocabularySize)) {
      throw new FlotillaError("invalid_request", `input holds a token id outside this model's vocabulary (0 to ${this.#opts.vocabularySize - 1})`, { param: "input" });
    }
  }

  #contexts(): Promise<SlotPool<LlamaEmbeddingContext>> {
    if (this.#pool === undefined) {
      const pool = this.#model
        .createEmbeddingContext({ contextSize: this.#opts.contextSize, threads: this.#opts.threads })
        .then((context) => new SlotPool([context], this.#opts.maxQueue));
      // A failed creation (out of memory) is tried again by the next request.
      pool.catch(() => {
        if (this.#pool === pool) this.#pool = undefined;
      });
      this.#pool = pool;
    }
    return this.#pool;
  }

  /** Refuses what waits; the context goes with its model (disposing a model disposes its contexts). */
  close(): void {
    const err = new FlotillaError("engine_unavailable", "the local engine is shutting down");
    void this.#pool?.then(
      (p) => p.rejectWaiters(err),
      () => undefined,
    );
  }
}

/**
 * The vector cut to its first `dimensions` where asked (the Matryoshka
 * shortening OpenAI's `dimensions` does), scaled to unit length. A zero
 * vector stays zero.
 */
function unitVector(vector: readonly number[], dimensions?: number): Float32Array {
  const out = Float32Array.from(dimensions === undefined ? vector : vector.slice(0, dimensions));
  let sum = 0;
  for (const v of out) sum += v * v;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < out.length; i++) out[i]! /= norm;
  return out;
}
