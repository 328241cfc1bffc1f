/**
 * A simulated accelerator behind the Engine interface, so the live gateway
 * can serve from one (demos, load tests of the controller, failure drills)
 * exactly as it serves from llama.cpp. It runs the simulator's replica model
 * (sim/replica.ts: batching, prefix cache, KV) and paces its passes against
 * the wall clock: `speed` virtual milliseconds per wall millisecond (1 = as
 * fast as the modelled hardware would be; Infinity = as fast as the event
 * loop turns), or against a driver's ManualClock (`clock`: each pass ends
 * when the driver moves that clock past it, so a test runs gateway and
 * replicas in one virtual time). Output text is placeholder words, one per
 * token, four characters each (" sit"), the engine's own four characters
 * per token: a resumed answer's prompt counts exactly its tokens.
 *
 * The simulator does not use this class: it drives ReplicaModel directly
 * from its event loop, with no timers and no Promises.
 */
import { clearImmediate, setImmediate } from "node:timers";
import { ManualClock, type Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import type { GenerationRequest, GenerationResult, Prompt } from "../core/request.js";
import { promptText } from "../core/request.js";
import { findHardware, findModel, findPrecision, makeEnergyProfile, makePerfProfile, smallestFittingTp } from "../hardware/index.js";
import type { PerfProfile } from "../hardware/index.js";
import { ReplicaModel, SimSeq } from "./replica.js";
import type { Engine, EngineLoad, TextSink } from "../engines/engine.js";

export interface SimEngineOptions {
  readonly hardware: string;
  readonly model: string;
  /** Default "bf16". */
  readonly precision?: string;
  /** Devices per replica; default the smallest power of two that fits. */
  readonly tp?: number;
  /** Sequences at once (default 64). */
  readonly maxBatch?: number;
  /** Requests waiting before `overloaded` (default 256). */
  readonly maxQueue?: number;
  /** Tokens per prefix block (default 512); prompts are hashed in blocks of 4 characters per token. */
  readonly blockTokens?: number;
  /** Virtual ms per wall ms (default 1). */
  readonly speed?: number;
  /** Tokens generated when a request sets no max_tokens (default 64). */
  readonly defaultMaxTokens?: number;
  /** Overrides the hardware model's KV capacity, in tokens. */
  readonly kvCapacityTokens?: number;
  /** Paces passes on this clock instead of the wall clock (`speed` is then unused). */
  readonly clock?: ManualClock;
}

const CHARS_PER_TOKEN = 4;
const WORDS = [" sit", " nam", " est", " hic", " vel", " rem", " non", " qui"] as const;

interface InFlight {
  readonly seq: SimSeq;
  readonly onText: TextSink;
  readonly resolve: (r: GenerationResult) => void;
  readonly reject: (err: unknown) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
  readonly lengthCapped: boolean;
  emitted: number;
}

/** Prefix-chained block hashes of text (FNV-1a over each chunk, seeded with the previous block's hash). */
export function textBlocks(text: string, charsPerBlock: number): Int32Array {
  const n = Math.ceil(text.length / charsPerBlock);
  const out = new Int32Array(n);
  let h = 0x811c9dc5;
  for (let b = 0; b < n; b++) {
    const end = Math.min(text.length, (b + 1) * charsPerBlock);
    for (let i = b * charsPerBlock; i < end; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    out[b] = h & 0x7fffffff;
  }
  return out;
}

export class SimEngine implements Engine {
  readonly kind = "sim" as const;
  readonly contextSize: number;
  readonly profile: PerfProfile;
  /** Virtual time: the sum of the passes run so far. */
  readonly clock: Clock;

  readonly #clock: ManualClock;
  /** The driver's clock passes are paced on, when one is given. */
  readonly #paced: ManualClock | undefined;
  readonly #replica: ReplicaModel;
  readonly #maxQueue: number;
  readonly #speed: number;
  readonly #defaultMaxTokens: number;
  readonly #charsPerBlock: number;
  readonly #inFlight = new Map<SimSeq, InFlight>();
  /** Requests the last pass finished, settled once the replica model has returned. */
  readonly #finishedSeqs: SimSeq[] = [];
  #ready = false;
  /** Cancels the pass under way; undefined when none is. */
  #cancelPass: (() => void) | undefined;
  #nextId = 0;

  constructor(opts: SimEngineOptions) {
    const hw = findHardware(opts.hardware);
    const model = findModel(opts.model);
    const precision = findPrecision(opts.precision ?? "bf16");
    const tp = opts.tp ?? smallestFittingTp({ model, hardware: hw, precision }) ?? 1;
    this.profile = makePerfProfile(model, hw, precision, { tp });
    if (!this.profile.fits) throw new RangeError(`${model.id} in ${precision.id} does not fit on ${hw.id} with tp ${tp}`);
    const blockTokens = opts.blockTokens ?? 512;
    this.#replica = new ReplicaModel(
      {
        profile: this.profile,
        energy: makeEnergyProfile(this.profile, hw, precision),
        maxBatch: opts.maxBatch ?? 64,
        blockTokens,
        ...(opts.kvCapacityTokens !== undefined ? { kvCapacityTokens: opts.kvCapacityTokens } : {}),
      },
      { firstToken: () => {}, finished: (seq) => this.#finishedSeqs.push(seq) },
    );
    this.contextSize = Math.min(model.contextLength, this.#replica.kvCapacityTokens);
    this.#maxQueue = opts.maxQueue ?? 256;
    this.#paced = opts.clock;
    this.#clock = opts.clock ?? new ManualClock();
    this.#speed = opts.speed ?? 1;
    if (!(this.#speed > 0)) throw new RangeError(`speed must be > 0, got ${this.#speed}`);
    this.#defaultMaxTokens = opts.defaultMaxTokens ?? 64;
    this.#charsPerBlock = blockTokens * CHARS_PER_TOKEN;
    this.clock = this.#clock;
  }

  /** The replica model's counters (passes, tokens, cache hits, energy). */
  get counters(): ReplicaModel["counters"] {
    return this.#replica.counters;
  }

  async start(): Promise<void> {
    this.#ready = true;
  }

  isReady(): boolean {
    return this.#ready;
  }

  load(): EngineLoad {
    return { active: this.#replica.active, queued: this.#replica.queued, slots: this.#replica.maxBatch, maxQueue: this.#maxQueue };
  }

  /** Four characters per token: the simulated replica's whole notion of a tokenizer. */
  countPromptTokens(prompt: Prompt, continuation?: string): number {
    const given = prompt.kind === "tokens" ? prompt.ids.length : 0;
    return given + Math.max(1, Math.ceil((promptText(prompt).length + (continuation?.length ?? 0)) / CHARS_PER_TOKEN));
  }

  generate(request: GenerationRequest, onText: TextSink, signal: AbortSignal): Promise<GenerationResult> {
    if (!this.#ready) return Promise.reject(new FlotillaError("engine_unavailable", "the simulated replica is not running"));
    if (signal.aborted) return Promise.reject(new FlotillaError("cancelled", "the request was cancelled"));
    const text = promptText(request.prompt) + (request.continuation ?? "");
    const input = Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN));
    const output = Math.max(1, request.sampling.maxTokens ?? this.#defaultMaxTokens);
    if (input + output > this.contextSize) {
      return Promise.reject(
        new FlotillaError("context_length_exceeded", `this replica's context window is ${this.contextSize} tokens; the prompt is ${input} tokens plus ${output} to generate`, {
          param: request.prompt.kind === "chat" ? "messages" : "prompt",
        }),
      );
    }
    // The router's own capacity rule (filters.ts, has-capacity): what it lets through, the engine takes.
    if (this.#replica.active + this.#replica.queued >= this.#replica.maxBatch + this.#maxQueue) {
      return Promise.reject(new FlotillaError("overloaded", `all ${this.#replica.maxBatch} sequences are busy and ${this.#maxQueue} requests are waiting`, { retryAfterS: 1 }));
    }
    const seq = new SimSeq(this.#nextId++, input, output, textBlocks(text, this.#charsPerBlock));
    return new Promise<GenerationResult>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#inFlight.delete(seq)) return;
        this.#replica.cancel(seq);
        reject(new FlotillaError("cancelled", "the request was cancelled"));
      };
      this.#inFlight.set(seq, { seq, onText, resolve, reject, signal, onAbort, lengthCapped: request.sampling.maxTokens !== undefined, emitted: 0 });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#replica.enqueue(seq);
      this.#kick();
    });
  }

  /** Takes the replica down as a device failure would: in-flight requests fail with `engine_unavailable`. */
  fail(): void {
    this.#ready = false;
    this.#cancelPass?.();
    this.#cancelPass = undefined;
    this.#replica.failAll();
    this.#finishedSeqs.length = 0;
    const err = new FlotillaError("engine_unavailable", "the simulated replica failed");
    for (const f of this.#inFlight.values()) {
      f.signal.removeEventListener("abort", f.onAbort);
      f.reject(err);
    }
    this.#inFlight.clear();
  }

  /** Brings a failed replica back (empty cache). */
  repair(): void {
    this.#ready = true;
  }

  async close(): Promise<void> {
    this.fail();
  }

  /** Starts the next pass if none is under way and there is work. */
  #kick(): void {
    if (this.#cancelPass !== undefined || this.#replica.stepping || !this.#ready) return;
    const now = this.#clock.now();
    const ms = this.#replica.beginStep(now);
    if (ms < 0) return;
    const done = (): void => {
      this.#cancelPass = undefined;
      if (this.#paced === undefined) this.#clock.advanceTo(now + ms);
      this.#replica.endStep(now + ms);
      // Text and results go out only now, outside the replica model: a listener may
      // cancel or fail this engine from its callback.
      for (const f of [...this.#inFlight.values()]) this.#emit(f);
      for (const seq of this.#finishedSeqs.splice(0)) this.#finished(seq);
      this.#kick();
    };
    this.#cancelPass = this.#schedule(ms, done);
  }

  /** Runs `done` once `ms` of virtual time have passed; returns what cancels it. */
  #schedule(ms: number, done: () => void): () => void {
    if (this.#paced !== undefined) {
      const cancel = new AbortController();
      void this.#paced.sleep(ms, cancel.signal).then(() => {
        if (!cancel.signal.aborted) done();
      });
      return () => cancel.abort();
    }
    if (this.#speed === Infinity) {
      const timer = setImmediate(done);
      return () => clearImmediate(timer);
    }
    const timer = setTimeout(done, ms / this.#speed);
    return () => clearTimeout(timer);
  }

  #emit(f: InFlight): void {
    while (f.emitted < f.seq.generated && this.#inFlight.get(f.seq) === f) {
      f.onText(WORDS[f.emitted % WORDS.length]!, 1);
      f.emitted++;
    }
  }

  #finished(seq: SimSeq): void {
    const f = this.#inFlight.get(seq);
    if (f === undefined) return;
    this.#inFlight.delete(seq);
    f.signal.removeEventListener("abort", f.onAbort);
    f.resolve({
      finishReason: f.lengthCapped ? "length" : "stop",
      usage: { promptTokens: seq.input, completionTokens: seq.output, cachedTokens: seq.cachedTokens },
    });
  }
}
