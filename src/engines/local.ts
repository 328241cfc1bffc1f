import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { availableParallelism } from "node:os";
import type * as LlamaCpp from "node-llama-cpp";
import type {
  LlamaChat,
  LlamaCompletion,
  ChatHistoryItem,
  ChatModelFunctions,
  ChatModelResponse,
  LlamaChatResponseFunctionCallParamsChunk,
  LlamaGrammar,
  LlamaText,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
  BatchItem,
  EvaluationPriority,
  ControlledEvaluateInputItem,
  PrioritizedBatchItem,
  Token,
} from "node-llama-cpp";
import { NO_LONGER_NEEDED } from "../core/abort.js";
import { FlotillaError } from "../core/errors.js";
import {
  callsTools,
  type ChatMessage,
  type EmbeddingRequest,
  type EmbeddingResult,
  type FinishReason,
  type GenerationRequest,
  type GenerationResult,
  type Prompt,
  type ResponseFormat,
  type Sampling,
  type TokenLogprob,
  type ToolUse,
} from "../core/request.js";
import type { Engine, EngineLoad, TextSink } from "./engine.js";
import { forcedCall, newCallId, readCall, toolParameters, withCallInstructions, type ForcedCall } from "./tool-calls.js";
import { grammarSchema } from "./json-schema-grammar.js";
import { LocalEmbedder } from "./local-embeddings.js";
import { SlotPool } from "./slots.js";
import { StopText } from "./stop-text.js";

export interface LocalEngineOptions {
  readonly modelPath: string;
  /** Sequences generated at once (continuous batching inside llama.cpp). */
  readonly parallel?: number;
  /** Context window per sequence, in tokens. */
  readonly contextSize?: number;
  /** Requests allowed to wait for a free sequence before `overloaded`. */
  readonly maxQueue?: number;
  readonly threads?: number;
  /** Sequences kept beside the running ones, for requests joining a busy context (#renew); default `parallel`, 0 for none. */
  readonly spareSequences?: number;
}

/** A chat prompt as the model reads it, and the texts that end its turn. */
type Rendered = { readonly tokens: readonly Token[]; readonly stops: readonly LlamaText[] };

/** One sequence of the context, with the two front-ends that drive it; a slot changes sequence when its own would make a request wait (#renew). */
interface Slot {
  sequence: LlamaContextSequence;
  chat: LlamaChat;
  completion: LlamaCompletion;
}

function slotOn(sequence: LlamaContextSequence): Slot {
  return { sequence, chat: new (llamaCpp().LlamaChat)({ contextSequence: sequence }), completion: new (llamaCpp().LlamaCompletion)({ contextSequence: sequence }) };
}

let runtime: Promise<Llama> | undefined;
/**
 * node-llama-cpp itself, loaded with the runtime: importing it costs about
 * half a second of CPU, which a gateway with no local replica, and every
 * test process of one, need not pay.
 */
let cpp: typeof LlamaCpp | undefined;
/** Resolves once the runtime's load is off the JS thread (llamaRuntimeUnderway). */
let underway: Promise<void> | undefined;

/** node-llama-cpp, once llamaRuntime() has loaded it (every use is on a started engine). */
function llamaCpp(): typeof LlamaCpp {
  if (cpp === undefined) throw new Error("node-llama-cpp is not loaded yet: start the engine first");
  return cpp;
}

/**
 * One llama.cpp runtime per process, shared by every local replica. Most of
 * the second it takes to load is spent off the JS thread, so a caller that
 * knows it will serve a local model starts it early (`flotilla serve`, while
 * the gateway's modules load).
 */
export function llamaRuntime(): Promise<Llama> {
  runtime ??= import("node-llama-cpp").then((loaded) => {
    cpp = loaded;
    return loaded.getLlama({ gpu: false, logLevel: loaded.LlamaLogLevel.error });
  });
  return runtime;
}

/**
 * Starts the runtime (llamaRuntime) and resolves once its load has moved off
 * the JS thread: when node-llama-cpp has forked the child process that checks
 * its binary before loading it (about half a second, always on Linux), or
 * when the runtime is ready or failed without one. The steps before that fork
 * are short but each needs the JS thread: started beside a large module
 * graph's loading, they waited for all of it, and the fork with them
 * (`flotilla serve`: 1.1 s into the start instead of 0.6 s).
 */
export function llamaRuntimeUnderway(): Promise<void> {
  underway ??= new Promise((resolve) => {
    const moved = (): void => {
      // Not from inside the channel's publish, which is iterating its subscribers.
      queueMicrotask(() => unsubscribe("child_process", moved));
      resolve();
    };
    subscribe("child_process", moved);
    llamaRuntime().then(moved, moved);
  });
  return underway;
}

/** A GGUF model run in-process by node-llama-cpp on this machine's CPU. */
export class LocalEngine implements Engine {
  readonly kind = "local";
  readonly #opts: LocalEngineOptions;
  #model: LlamaModel | undefined;
  #context: LlamaContext | undefined;
  #slots: SlotPool<Slot> | undefined;
  #embedder: LocalEmbedder | undefined;
  #chatWrapper: LlamaChat["chatWrapper"] | undefined;
  #closing = false;
  /** Ids at or past it abort the process inside llama.cpp: every id from outside is checked against it. */
  #vocabularySize = 0;
  /** The last rendering of each chat prompt still referenced (prompts are immutable). */
  readonly #renderings = new WeakMap<Prompt, { continuation: string; rendered: Rendered }>();
  /** Grammars by schema (response_format), oldest first. */
  readonly #grammars = new Map<string, Promise<LlamaGrammar>>();

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
    const contextSize = Math.min(this.#opts.contextSize ?? 4096, model.trainContextSize);
    const threads = this.#opts.threads ?? defaultThreads(model.size);
    // Spares let a request join a busy context on a clean sequence (#renew).
    const context = await model.createContext({ sequences: parallel + (this.#opts.spareSequences ?? parallel), contextSize, threads, batching: { itemPrioritizationStrategy: interactiveFirst } });
    const slots = Array.from({ length: parallel }, () => slotOn(context.getSequence()));
    const vocabulary = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } }).tokenizer?.ggml?.tokens;
    this.#vocabularySize = Array.isArray(vocabulary) ? vocabulary.length : 0;
    this.#model = model;
    this.#context = context;
    this.#chatWrapper = slots[0]?.chat.chatWrapper;
    this.#slots = new SlotPool(slots, this.#opts.maxQueue ?? 64);
    this.#embedder = new LocalEmbedder(model, { contextSize, threads, maxQueue: this.#opts.maxQueue ?? 64, vocabularySize: this.#vocabularySize });
  }

  isReady(): boolean {
    return this.#slots !== undefined && !this.#closing;
  }

  load(): EngineLoad {
    const s = this.#slots;
    if (s === undefined) return { active: 0, queued: 0, slots: this.#opts.parallel ?? 4, maxQueue: 0 };
    // Embeddings run on the same cores as generation: the router sees them as waiting work.
    return { active: s.active, queued: s.queued + (this.#embedder?.load ?? 0), slots: s.size, maxQueue: s.maxQueue };
  }

  embed(request: EmbeddingRequest, signal: AbortSignal): Promise<EmbeddingResult> {
    if (this.#embedder === undefined || this.#closing) return Promise.reject(new FlotillaError("engine_unavailable", "the local engine is not running"));
    return this.#embedder.embed(request, signal);
  }

  /**
   * The grammar that holds the answer to `format`, built once per schema.
   * A grammar constrains what the engine generates from the start of the
   * answer, so an answer that must continue a given start (an assistant
   * prefill, or the rest of one a failed replica began) is refused: the
   * engine cannot put the grammar where that start left it.
   */
  async #grammarFor(format: ResponseFormat, continuation: string | undefined): Promise<LlamaGrammar> {
    if ((continuation ?? "").length > 0) {
      throw new FlotillaError("invalid_request", "an answer with response_format cannot continue a given start (continue_final_message): the grammar holds the whole answer", { param: "response_format" });
    }
    const schema = format.type === "json_schema" ? grammarSchema(format.schema) : undefined;
    const key = schema === undefined ? "json" : JSON.stringify(schema);
    let grammar = this.#grammars.get(key);
    if (grammar === undefined) {
      const llama = await llamaRuntime();
      // `as never`: the generator's static type is for literal schemas; grammarSchema checked this one at run time.
      grammar = schema === undefined ? llama.getGrammarFor("json") : llama.createGrammarForJsonSchema(schema as never);
      // A few schemas serve most traffic; an unbounded map would grow with every distinct one a client sends.
      if (this.#grammars.size >= 64) this.#grammars.delete(this.#grammars.keys().next().value!);
      this.#grammars.set(key, grammar);
      grammar.catch(() => this.#grammars.delete(key));
    }
    return grammar.catch((err: unknown) => {
      throw new FlotillaError("invalid_request", `response_format.json_schema.schema: ${(err as Error).message}`, { param: "response_format", cause: err });
    });
  }

  countPromptTokens(prompt: Prompt, continuation = ""): number | undefined {
    const model = this.#model;
    if (model === undefined) return undefined;
    const tail = continuation.length === 0 ? 0 : model.tokenize(continuation).length;
    if (prompt.kind === "tokens") return prompt.ids.length + tail;
    if (prompt.kind === "text") return model.tokenize(prompt.text + continuation).length;
    return this.#rendered(prompt, continuation)?.tokens.length;
  }

  /**
   * A conversation as the chat template renders it, ending in the open model
   * turn, and the texts that end that turn. One request asks for it several
   * times (admission, routing, the engine, the observer) with the same
   * prompt object; rendering and tokenising took a quarter of the gateway's
   * event loop on the built-in model before it was kept, per prompt, here.
   */
  #rendered(prompt: Prompt & { kind: "chat" }, continuation: string): Rendered | undefined {
    const kept = this.#renderings.get(prompt);
    if (kept?.continuation === continuation) return kept.rendered;
    const chatWrapper = this.#chatWrapper;
    if (chatWrapper === undefined || this.#model === undefined) return undefined;
    const state = chatWrapper.generateContextState({ chatHistory: toChatHistory(prompt, continuation) });
    const rendered = { tokens: state.contextText.tokenize(this.#model.tokenizer), stops: state.stopGenerationTriggers };
    this.#renderings.set(prompt, { continuation, rendered });
    return rendered;
  }

  async generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    const slots = this.#slots;
    const context = this.#context;
    const model = this.#model;
    if (slots === undefined || context === undefined || model === undefined || this.#closing) {
      throw new FlotillaError("engine_unavailable", "the local engine is not running");
    }
    const tools = callsTools(request) ? request.tools : undefined;
    const forced = tools === undefined ? undefined : forcedCall(tools);
    if (forced !== undefined) return this.#call(request, tools!, forced, onText, signal);
    const functions = tools === undefined ? undefined : offeredFunctions(request, tools);
    const grammar = request.format === undefined ? undefined : await this.#grammarFor(request.format, request.continuation);
    const plan = this.#plan(request);
    const promptTokens = plan.input?.length ?? this.countPromptTokens(request.prompt) ?? 0;
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
      if (slots.active > 1) this.#renew(slot);
      const before = slot.sequence.tokenMeter.getState();
      const { sampling } = request;
      const pieces = new Pieces(slot.sequence, model, onText, sampling.logprobs !== undefined, sampling.stop ?? []);
      const options = {
        maxTokens: Math.min(sampling.maxTokens ?? room, room),
        ...(grammar === undefined ? {} : { grammar }),
        // A stop string ends the generation as an abort does; the request's own abort still cancels.
        signal: AbortSignal.any([signal, pieces.halt.signal]),
        stopOnAbortSignal: true,
        evaluationPriority: request.background === true ? BACKGROUND : INTERACTIVE,
        ...(sampling.temperature === undefined ? {} : { temperature: sampling.temperature }),
        ...(sampling.topP === undefined ? {} : { topP: sampling.topP }),
        ...(sampling.topK === undefined ? {} : { topK: sampling.topK }),
        ...(sampling.seed === undefined ? {} : { seed: sampling.seed }),
        ...repeatPenaltyOf(sampling),
      };
      const customStopTriggers = plan.stops.length === 0 ? {} : { customStopTriggers: plan.stops };
      const stopReason =
        plan.input === undefined
          ? (
              await slot.chat.generateResponse(toChatHistory(request.prompt as Prompt & { kind: "chat" }, ""), {
                ...options,
                ...customStopTriggers,
                ...(functions === undefined ? {} : { functions, onFunctionCallParamsChunk: pieces.onCall, ...(tools!.parallel ? {} : { maxParallelFunctionCalls: 1 }) }),
                onToken: pieces.onToken,
                onTextChunk: pieces.onTextChunk,
                // `as never`: functions and a grammar never come together (offeredFunctions refuses a format), which the union type cannot see.
              } as never)
            ).metadata.stopReason
          : (await slot.completion.generateCompletionWithMeta(withoutLeadToken(plan.input, model), { ...options, ...customStopTriggers, onToken: pieces.onTokenText }))
              .metadata.stopReason;
      if (signal.aborted) throw new FlotillaError("cancelled", "generation was cancelled");
      if (!pieces.stopped) pieces.finish();
      // Scoring re-evaluates the answer: read the meter first, so usage counts the generation only.
      const after = slot.sequence.tokenMeter.getState();
      const logprobs = sampling.logprobs === undefined ? undefined : await scoreAnswer(slot.sequence, pieces.generated, sampling.logprobs, model);
      const evaluated = after.usedInputTokens - before.usedInputTokens;
      return {
        ...(logprobs === undefined ? {} : { logprobs }),
        finishReason: pieces.stopped ? "stop" : finishReason(stopReason),
        ...(pieces.stopSequence === undefined ? {} : { stopSequence: pieces.stopSequence }),
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

  /**
   * Gives `slot` a clean sequence while others generate, if its own holds an
   * earlier request's tokens. A request on such a sequence must erase them
   * before its prompt, and node-llama-cpp erases under the lock its decode
   * loop holds for as long as any sequence has a token to decode: joining a
   * busy context, it waited for every running generation to end (773 ms
   * for its first token beside three 300-token generations, against 17 ms
   * on a clean sequence; 1.4 ms on an idle context, where the erase is
   * immediate and the slot keeps its tokens for a follow-up turn to reuse).
   * The old sequence is freed once the loop runs dry, and becomes a spare.
   * The price: each spare sequence's KV cells (`spareSequences`, default as
   * many as run at once); with none left, the request waits as before.
   */
  #renew(slot: Slot): void {
    const context = this.#context!;
    if (slot.sequence.nextTokenIndex === 0 || context.sequencesLeft === 0) return;
    const old = slot.sequence;
    Object.assign(slot, slotOn(context.getSequence()));
    void old.dispose();
  }

  /**
   * An answer that must be a tool call: generated as JSON held to the
   * call's schema (tool-calls.ts), read back, and given to the sink as the
   * call's arguments in one piece once whole: its name is known only then.
   */
  async #call(request: GenerationRequest, tools: ToolUse, forced: ForcedCall, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    let text = "";
    let tokens = 0;
    const prompt = withCallInstructions(request.prompt as Prompt & { kind: "chat" }, tools, forced);
    const { tools: _tools, ...rest } = request;
    const result = await this.generate({ ...rest, prompt, format: forced.format }, (t, n) => {
      text += t;
      tokens += n;
    }, signal);
    const call = readCall(forced, text);
    if (call === undefined) {
      if (text.length > 0) onText(text, tokens);
      return result;
    }
    onText(call.arguments, tokens, false, undefined, { index: 0, id: newCallId(), name: call.name });
    return { ...result, finishReason: result.finishReason === "stop" ? "tool_calls" : result.finishReason };
  }

  #readable(ids: readonly number[]): boolean {
    const size = this.#vocabularySize;
    return ids.every((id) => Number.isInteger(id) && id >= 0 && id < size);
  }

  /**
   * What the model reads. A new chat turn goes through node-llama-cpp's chat
   * front-end. Everything else is a completion over token ids: a resume from
   * the ids another replica wrote (exact), a chat continued after text
   * (rendered by the chat template here, ending in the open model turn, with
   * the template's end-of-turn texts as stops), a text prompt, or ids given
   * as the prompt. Continuing from ids rather than re-tokenised text keeps
   * every token boundary where the model put it.
   */
  #plan(request: GenerationRequest): { input: Token[] | undefined; stops: readonly (string | LlamaText)[] } {
    const model = this.#model!;
    const { prompt } = request;
    const continuation = request.continuation ?? "";
    const resume = request.continuationIds;
    // A new chat turn goes to node-llama-cpp's chat front-end, which renders its own stops.
    const stops = prompt.kind === "chat" && (resume !== undefined || continuation.length > 0) ? (this.#rendered(prompt, continuation)?.stops ?? []) : [];
    // Ids another replica reported that this model cannot read: resume from the text instead.
    if (resume !== undefined && this.#readable(resume.prompt) && this.#readable(resume.answer)) return { input: [...resume.prompt, ...resume.answer] as Token[], stops };
    if (prompt.kind === "tokens") {
      if (!this.#readable(prompt.ids)) {
        throw new FlotillaError("invalid_request", `prompt holds a token id outside this model's vocabulary (0 to ${this.#vocabularySize - 1})`, { param: "prompt" });
      }
      return { input: [...prompt.ids, ...(continuation.length === 0 ? [] : model.tokenize(continuation))] as Token[], stops };
    }
    if (prompt.kind === "text") return { input: model.tokenize(prompt.text + continuation, false, "trimLeadingSpace"), stops };
    if (continuation.length === 0) return { input: undefined, stops: [] };
    return { input: [...this.#rendered(prompt, continuation)!.tokens], stops };
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#slots?.rejectWaiters(new FlotillaError("engine_unavailable", "the local engine is shutting down"));
    this.#embedder?.close();
    await this.#context?.dispose();
    await this.#model?.dispose();
  }
}

/**
 * OpenAI's penalties as llama.cpp's: over the tokens generated so far (its
 * default window, the last 64), without its multiplicative repeat penalty
 * (1: off), which OpenAI's API does not have.
 */
function repeatPenaltyOf(s: Sampling): { repeatPenalty?: { penalty: number; frequencyPenalty?: number; presencePenalty?: number } } {
  if (s.frequencyPenalty === undefined && s.presencePenalty === undefined) return {};
  return {
    repeatPenalty: {
      penalty: 1,
      ...(s.frequencyPenalty === undefined ? {} : { frequencyPenalty: s.frequencyPenalty }),
      ...(s.presencePenalty === undefined ? {} : { presencePenalty: s.presencePenalty }),
    },
  };
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

const BACKGROUND: EvaluationPriority = 1;
const INTERACTIVE: EvaluationPriority = 5;

/**
 * What goes into llama.cpp's next step: while an interactive request's
 * prompt waits to be read, only interactive tokens. On a CPU a step's time
 * grows with its tokens, so batch lines decoding beside a new prompt's
 * prefill delay its first token; they wait that one step, never longer (an
 * interactive stream's decode steps take them along, so a batch is never
 * starved by a long interactive answer). Decode tokens first, prefills
 * after, so one long prompt never holds back the sequences already running.
 */
export function interactiveFirst({ items }: { items: readonly BatchItem[] }): PrioritizedBatchItem[] {
  const prefill = items.some((i) => i.evaluationPriority > BACKGROUND && i.tokens.length > 1);
  const chosen = prefill ? items.filter((i) => i.evaluationPriority > BACKGROUND) : [...items];
  return chosen.sort((a, b) => a.tokens.length - b.tokens.length).map((item) => ({ item, processAmount: item.tokens.length }));
}

/**
 * Measured on 2 cores with a 1.7 MB model: 1 thread ~900 tok/s, 2 threads
 * ~75 tok/s (thread sync dominates tiny matrices), library default ~6 tok/s.
 * Real models are bandwidth-bound and want every core.
 */
function defaultThreads(modelBytes: number): number {
  return modelBytes < 256 * 1024 * 1024 ? 1 : availableParallelism();
}

/**
 * Turns what the model generates into pieces of text for the sink, each
 * with its token ids, and the ids the model read before its first token
 * with the first piece: what a replica taking over needs to resume exactly.
 */
class Pieces {
  readonly generated: Token[] = [];
  /** Aborted when the answer reaches one of the caller's stop strings. */
  readonly halt = new AbortController();
  readonly #stop: StopText;
  #pendingTokens: Token[] = [];
  #prompt: Token[] | undefined;
  #first = true;
  /** The prompt's ids could not be read back: report no ids, so a resume falls back to text. */
  #noIds = false;
  /** The last tokens read or written, for detokenising the next run. */
  #trail: Token[] = [];
  /** The tool call the last arguments belonged to. */
  #callIndex = -1;

  constructor(
    readonly sequence: LlamaContextSequence,
    readonly model: LlamaModel,
    readonly onText: TextSink,
    readonly keep: boolean,
    stops: readonly string[],
  ) {
    this.#stop = new StopText(stops);
  }

  get stopped(): boolean {
    return this.#stop.stopped;
  }

  get stopSequence(): string | undefined {
    return this.#stop.matched;
  }

  /** node-llama-cpp hands each released run of tokens to onToken, then its text to onTextChunk. */
  readonly onToken = (tokens: readonly Token[]): void => {
    if (this.#stop.stopped) return;
    if (this.#first) this.#readPrompt(tokens);
    this.#pendingTokens.push(...tokens);
    if (this.keep) this.generated.push(...tokens);
  };

  /**
   * A run's text, through the stop strings. Its ids go with it when it goes
   * out whole; text that goes out while part of its run is held back, or cut
   * by a stop, is not exactly its tokens' text and goes without ids.
   */
  readonly onTextChunk = (text: string): void => {
    if (text.length === 0 || this.#stop.stopped) return;
    const out = this.#stop.push(text);
    if (this.#stop.stopped) {
      this.halt.abort(NO_LONGER_NEEDED);
      if (out.length > 0) this.#emit(out, this.#takePending(), false);
    } else if (this.#stop.holding) {
      if (out.length > 0) this.#emit(out, [], false);
    } else {
      this.#emit(out, this.#takePending(), true);
    }
  };

  /**
   * The completion front-end detokenises each run without what came before
   * it, so a token's leading space is lost at the start of every answer
   * (llama-2's "▁Fellow" after "Ca" reads "Fellow"): the text is read here,
   * with the last tokens before the run as context.
   */
  readonly onTokenText = (tokens: readonly Token[]): void => {
    this.onToken(tokens);
    const trail = this.#trail;
    this.#trail = [...trail, ...tokens].slice(-TRAIL_TOKENS);
    this.onTextChunk(this.model.detokenize(tokens, false, trail));
  };

  /** A piece of a tool call's arguments (tool_choice auto): the call's first piece names it. */
  readonly onCall = (chunk: LlamaChatResponseFunctionCallParamsChunk): void => {
    const first = chunk.callIndex !== this.#callIndex;
    if (!first && chunk.paramsChunk.length === 0) return;
    this.#callIndex = chunk.callIndex;
    // The answer is no longer its text alone: no ids to resume from.
    this.#noIds = true;
    this.#first = false;
    const call = first ? { index: chunk.callIndex, id: newCallId(), name: chunk.functionName } : { index: chunk.callIndex };
    this.onText(chunk.paramsChunk, this.#takePending().length, false, undefined, call);
  };

  /** Generation ended without a stop string: text held back for one is answer text after all. */
  finish(): void {
    const rest = this.#stop.flush();
    if (rest.length > 0) this.#emit(rest, this.#takePending(), true);
  }

  #takePending(): Token[] {
    const ids = this.#pendingTokens;
    this.#pendingTokens = [];
    return ids;
  }

  #emit(text: string, tokens: Token[], exact: boolean): void {
    if (!exact) this.#noIds = true;
    const prompt = this.#first ? this.#prompt : undefined;
    this.#first = false;
    this.onText(text, tokens.length, false, this.#noIds ? undefined : prompt === undefined ? { ids: tokens } : { ids: tokens, prompt });
  }

  /**
   * The ids the model read: the sequence holds the prompt and every token
   * generated so far but the newest (not evaluated yet). Anything else (a
   * context shift) and the ids are not reported.
   */
  #readPrompt(tokens: readonly Token[]): void {
    const held = this.sequence.contextTokens;
    const evaluated = tokens.length - 1;
    const promptLength = held.length - evaluated;
    const matches = promptLength > 0 && tokens.slice(0, evaluated).every((t, i) => held[promptLength + i] === t);
    if (!matches) {
      this.#noIds = true;
      return;
    }
    this.#prompt = held.slice(0, promptLength);
    this.#trail = this.#prompt.slice(-TRAIL_TOKENS);
  }
}

/** Tokens of context node-llama-cpp reads to detokenise a run (its own maxRecentDetokenizerTokens). */
const TRAIL_TOKENS = 3;

/**
 * node-llama-cpp's completion puts the beginning-of-sequence token in front
 * of any input itself (where llama.cpp's tokenizer would): ids that already
 * begin with it (a rendered chat, ids read back from a sequence) lose it
 * here, so it is not read twice.
 */
function withoutLeadToken(input: Token[], model: LlamaModel): Token[] {
  const lead = beginningToken(model);
  return lead !== null && input[0] === lead ? input.slice(1) : input;
}

/** Which token node-llama-cpp's completion prepends, by vocabulary type (its resolveBeginningTokenToPrepend). */
function beginningToken(model: LlamaModel): Token | null {
  const type = model.vocabularyType;
  const { LlamaVocabularyType } = llamaCpp();
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return null;
  if (type === LlamaVocabularyType.wpm) return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

function finishReason(stopReason: string): FinishReason {
  return stopReason === "maxTokens" ? "length" : stopReason === "functionCalls" ? "tool_calls" : "stop";
}

/**
 * The tools a model may call of its own accord (tool_choice auto), as
 * node-llama-cpp's functions: its chat wrapper documents them in the
 * prompt, and once the model begins a call, holds the arguments to the
 * tool's schema.
 */
function offeredFunctions(request: GenerationRequest, tools: ToolUse): ChatModelFunctions {
  if (request.format !== undefined) {
    throw new FlotillaError("invalid_request", "the local engine cannot hold an answer to response_format while the model may call tools; drop one, or set tool_choice", { param: "response_format" });
  }
  return Object.fromEntries(
    tools.tools.map((t) => [t.name, { ...(t.description === undefined ? {} : { description: t.description }), params: toolParameters(tools, t) as never }]),
  );
}

/** The answer is written into the final model turn, after any continuation already given. */
function toChatHistory(prompt: Prompt & { kind: "chat" }, continuation: string): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const results = new Map(prompt.messages.flatMap((m) => (m.toolCallId === undefined ? [] : [[m.toolCallId, m.content] as const])));
  for (const m of prompt.messages) {
    if (m.role === "system" || m.role === "developer") history.push({ type: "system", text: m.content });
    else if (m.role === "assistant") history.push({ type: "model", response: modelResponse(m, results) });
    // A tool's result is rendered with the call it answers, in the chat template's own syntax for calls.
    else if (m.role !== "tool") history.push({ type: "user", text: m.content });
  }
  history.push({ type: "model", response: continuation.length > 0 ? [continuation] : [] });
  return history;
}

/** An assistant turn: its text, then each tool call it made with the result the caller sent back. */
function modelResponse(m: ChatMessage, results: ReadonlyMap<string, string>): ChatModelResponse["response"] {
  const calls = (m.toolCalls ?? []).map((c) => ({ type: "functionCall" as const, name: c.name, params: jsonOrText(c.arguments), result: results.get(c.id) ?? "" }));
  return m.content.length > 0 || calls.length === 0 ? [m.content, ...calls] : calls;
}

function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
