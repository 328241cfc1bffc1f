import { availableParallelism } from "node:os";
import {
  getLlama,
  LlamaChat,
  LlamaCompletion,
  LlamaLogLevel,
  type ChatHistoryItem,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type ControlledEvaluateInputItem,
  type Token,
} from "node-llama-cpp";
import { FlotillaError } from "../core/errors.js";
import type { FinishReason, GenerationRequest, GenerationResult, Prompt, TokenLogprob } from "../core/request.js";
import type { Engine, EngineLoad, TextSink } from "./engine.js";
import { SlotPool } from "./slots.js";

export interface LocalEngineOptions {
  readonly modelPath: string;
  /** Sequences generated at once (continuous batching inside llama.cpp). */
  readonly parallel?: number;
  /** Context window per sequence, in tokens. */
  readonly contextSize?: number;
  /** Requests allowed to wait for a free sequence before `overloaded`. */
  readonly maxQueue?: number;
  readonly threads?: number;
}

/** One sequence of the context, with the two front-ends that drive it. */
interface Slot {
  readonly sequence: LlamaContextSequence;
  readonly chat: LlamaChat;
  readonly completion: LlamaCompletion;
}

let runtime: Promise<Llama> | undefined;

/** One llama.cpp runtime per process, shared by every local replica. */
function llamaRuntime(): Promise<Llama> {
  runtime ??= getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  return runtime;
}

/** A GGUF model run in-process by node-llama-cpp on this machine's CPU. */
export class LocalEngine implements Engine {
  readonly kind = "local";
  readonly #opts: LocalEngineOptions;
  #model: LlamaModel | undefined;
  #context: LlamaContext | undefined;
  #slots: SlotPool<Slot> | undefined;
  #chatWrapper: LlamaChat["chatWrapper"] | undefined;
  #closing = false;

  constructor(opts: LocalEngineOptions) {
    this.#opts = opts;
  }

  get contextSize(): number | undefined {
    return this.#context?.contextSize;
  }

  async start(): Promise<void> {
    const llama = await llamaRuntime();
    const model = await llama.loadModel({ modelPath: this.#opts.modelPath });
    const parallel = this.#opts.parallel ?? 4;
    const context = await model.createContext({
      sequences: parallel,
      contextSize: Math.min(this.#opts.contextSize ?? 4096, model.trainContextSize),
      threads: this.#opts.threads ?? defaultThreads(model.size),
    });
    const slots: Slot[] = [];
    for (let i = 0; i < parallel; i++) {
      const sequence = context.getSequence();
      slots.push({
        sequence,
        chat: new LlamaChat({ contextSequence: sequence }),
        completion: new LlamaCompletion({ contextSequence: sequence }),
      });
    }
    this.#model = model;
    this.#context = context;
    this.#chatWrapper = slots[0]?.chat.chatWrapper;
    this.#slots = new SlotPool(slots, this.#opts.maxQueue ?? 64);
  }

  isReady(): boolean {
    return this.#slots !== undefined && !this.#closing;
  }

  load(): EngineLoad {
    const s = this.#slots;
    if (s === undefined) return { active: 0, queued: 0, slots: this.#opts.parallel ?? 4, maxQueue: 0 };
    return { active: s.active, queued: s.queued, slots: s.size, maxQueue: s.maxQueue };
  }

  countPromptTokens(prompt: Prompt, continuation = ""): number | undefined {
    const model = this.#model;
    if (model === undefined) return undefined;
    if (prompt.kind === "text") return model.tokenize(prompt.text + continuation).length;
    const chatWrapper = this.#chatWrapper;
    if (chatWrapper === undefined) return undefined;
    const { contextText } = chatWrapper.generateContextState({ chatHistory: toChatHistory(prompt, continuation) });
    return contextText.tokenize(model.tokenizer).length;
  }

  async generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    const slots = this.#slots;
    const context = this.#context;
    if (slots === undefined || context === undefined || this.#closing) {
      throw new FlotillaError("engine_unavailable", "the local engine is not running");
    }
    const continuation = request.continuation ?? "";
    const promptTokens = this.countPromptTokens(request.prompt, continuation) ?? 0;
    const room = context.contextSize - promptTokens;
    if (room <= 0) {
      throw new FlotillaError(
        "context_length_exceeded",
        `the prompt is ${promptTokens} tokens; this model's context window is ${context.contextSize} tokens`,
        { param: request.prompt.kind === "chat" ? "messages" : "prompt" },
      );
    }
    const slot = await slots.acquire(signal);
    try {
      const before = slot.sequence.tokenMeter.getState();
      const { sampling } = request;
      // Text can lag its tokens (a multi-byte character, a possible stop
      // string): tokens are counted as they come and attributed to the next text.
      let pendingTokens = 0;
      const generated: Token[] = [];
      const options = {
        maxTokens: Math.min(sampling.maxTokens ?? room, room),
        signal,
        onToken: (tokens: readonly Token[]) => {
          pendingTokens += tokens.length;
          if (sampling.logprobs !== undefined) generated.push(...tokens);
        },
        onTextChunk: (text: string) => {
          if (text.length === 0) return;
          onText(text, pendingTokens);
          pendingTokens = 0;
        },
        ...(sampling.temperature === undefined ? {} : { temperature: sampling.temperature }),
        ...(sampling.topP === undefined ? {} : { topP: sampling.topP }),
        ...(sampling.seed === undefined ? {} : { seed: sampling.seed }),
        ...(sampling.stop === undefined || sampling.stop.length === 0 ? {} : { customStopTriggers: [...sampling.stop] }),
      };
      const stopReason =
        request.prompt.kind === "text"
          ? (await slot.completion.generateCompletionWithMeta(request.prompt.text + continuation, options)).metadata.stopReason
          : (await slot.chat.generateResponse(toChatHistory(request.prompt, continuation), options)).metadata.stopReason;
      if (stopReason === "abort") throw new FlotillaError("cancelled", "generation was cancelled");
      // Scoring re-evaluates the answer: read the meter first, so usage counts the generation only.
      const after = slot.sequence.tokenMeter.getState();
      const logprobs = sampling.logprobs === undefined ? undefined : await scoreAnswer(slot.sequence, generated, sampling.logprobs, this.#model!);
      const evaluated = after.usedInputTokens - before.usedInputTokens;
      return {
        ...(logprobs === undefined ? {} : { logprobs }),
        finishReason: finishReason(stopReason),
        usage: {
          promptTokens,
          completionTokens: after.usedOutputTokens - before.usedOutputTokens,
          // node-llama-cpp reuses the sequence's KV for a shared prefix and
          // evaluates only the rest; the difference is what the cache saved.
          cachedTokens: Math.max(0, promptTokens - evaluated),
        },
      };
    } catch (err) {
      if (signal.aborted) throw new FlotillaError("cancelled", "generation was cancelled", { cause: err });
      if (err instanceof FlotillaError) throw err;
      throw new FlotillaError("engine_error", `local engine failed: ${(err as Error).message}`, { cause: err });
    } finally {
      slots.release(slot);
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#slots?.rejectWaiters(new FlotillaError("engine_unavailable", "the local engine is shutting down"));
    await this.#context?.dispose();
    await this.#model?.dispose();
  }
}

/**
 * Log-probabilities of the tokens just generated, by teacher forcing: the
 * answer is evaluated once more over the prompt's cached KV, asking llama.cpp
 * for each position's logit of the token that followed (and the top ones)
 * and the softmax normaliser. node-llama-cpp's generators do not report
 * probabilities, and this costs one prefill of the answer rather than a
 * hand-written sampling loop. The sequence holds every generated token but
 * the last (never evaluated) at its end; anything else (a context shift)
 * means the positions are unknown, and no logprobs are reported.
 */
async function scoreAnswer(sequence: LlamaContextSequence, generated: readonly Token[], top: number, model: LlamaModel): Promise<TokenLogprob[] | undefined> {
  const n = generated.length;
  if (n === 0) return [];
  const context = sequence.contextTokens;
  let start = -1;
  for (const held of [n - 1, n]) {
    const from = context.length - held;
    if (from >= 1 && generated.slice(0, held).every((t, i) => context[from + i] === t)) {
      start = from;
      break;
    }
  }
  if (start < 1) return undefined;
  await sequence.eraseContextTokenRanges([{ start: start - 1, end: sequence.nextTokenIndex }]);
  const input: ControlledEvaluateInputItem[] = [context[start - 1]!, ...generated.slice(0, n - 1)].map((token, i) => [
    token,
    { generateNext: { logits: { filter: { tokens: [generated[i]!], includeMax: true, includeTop: top } }, totalLogitWeight: true } },
  ]);
  const out = await sequence.controlledEvaluate(input);
  const piece = (t: Token): string => model.detokenize([t], true);
  return generated.map((token, i) => {
    const next = out[i]?.next;
    const logits = next?.logits;
    const weight = next?.totalLogitWeight;
    if (logits === undefined || weight === undefined) return { token: piece(token), logprob: NaN, top: [] };
    let max = -Infinity;
    for (const l of logits.values()) max = Math.max(max, l);
    // log softmax: logit - max - ln(sum exp(logit - max))
    const lp = (logit: number): number => logit - max - Math.log(weight);
    const ranked = [...logits].sort((a, b) => b[1] - a[1]).slice(0, top);
    return { token: piece(token), logprob: lp(logits.get(token)!), top: ranked.map(([t, l]) => ({ token: piece(t), logprob: lp(l) })) };
  });
}

/**
 * Measured on 2 cores with a 1.7 MB model: 1 thread ~900 tok/s, 2 threads
 * ~75 tok/s (thread sync dominates tiny matrices), library default ~6 tok/s.
 * Real models are bandwidth-bound and want every core.
 */
function defaultThreads(modelBytes: number): number {
  return modelBytes < 256 * 1024 * 1024 ? 1 : availableParallelism();
}

function finishReason(stopReason: string): FinishReason {
  return stopReason === "maxTokens" ? "length" : "stop";
}

/** The answer is written into the final model turn, after any continuation already given. */
function toChatHistory(prompt: Prompt & { kind: "chat" }, continuation: string): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of prompt.messages) {
    if (m.role === "system" || m.role === "developer") history.push({ type: "system", text: m.content });
    else if (m.role === "assistant") history.push({ type: "model", response: [m.content] });
    else history.push({ type: "user", text: m.content });
  }
  history.push({ type: "model", response: continuation.length > 0 ? [continuation] : [] });
  return history;
}
