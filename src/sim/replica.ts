/**
 * One simulated replica: iteration-level continuous batching, a prefix cache
 * of KV blocks, and KV-memory accounting with preemption. Pure and
 * synchronous: the owner (the simulator's event loop, or the live SimEngine)
 * calls `beginStep(now)`, waits the returned milliseconds in its own notion of
 * time, then calls `endStep(now)`. No timers, no Promises.
 *
 * A step is one forward pass. With chunked prefill (the default, as vLLM V1
 * and SGLang run), every running sequence in decode contributes one token and
 * prompts fill the rest of the pass's token budget in chunks; a prompt's first
 * token comes out of the pass that finishes it. Without chunking, a step
 * either prefills newly admitted prompts whole (decoders wait, as vLLM V0's
 * default did) or decodes.
 *
 * Memory: KV is counted in tokens against the replica's capacity after
 * weights. Prompt tokens covered by prefix blocks live in shared,
 * reference-counted blocks (`PrefixCache`); everything else a sequence writes
 * (generated tokens, prompts without block hashes, recomputed output) is
 * private to it. Blocks no running sequence uses stay cached until memory is
 * needed (LRU). When decoding outgrows memory, the most recently admitted
 * sequence is preempted: its KV is dropped and it waits at the head of the
 * queue to be recomputed (prompt plus the tokens it had generated).
 *
 * Host tier (optional, `hostKvTokens`): blocks evicted from HBM are kept in
 * host memory (CPU DRAM), an LRU of its own, as vLLM's CPU offloading,
 * LMCache, SGLang's HiCache and Mooncake's store do. At admission the
 * request's chain is looked up in both tiers: the leading run of blocks found
 * in either is a hit, and those found only in host memory are copied back
 * over the host link. The copy is synchronous, as a KV connector's default
 * load is: the pass that admits the sequence starts with it, so that pass
 * (and every sequence in it) takes the load time longer. Writing evicted
 * blocks to host memory runs the other way on a full-duplex link, overlapped
 * with compute, so it costs energy but no time.
 *
 * Disaggregation (`role`): a prefill replica hands a sequence off once its
 * prompt is in KV and its first token is out (`ReplicaListener.prefilled`),
 * releasing its KV to the prefix cache; a sequence whose KV arrives from
 * elsewhere (`SimSeq.kvReady`) is admitted straight into decode, its KV
 * private to it, and computes nothing before its next token.
 */
import type { EnergyProfile, PerfProfile } from "../hardware/index.js";
import { decodeStepJoules, decodeStepMs, gemmFlops, passMs, prefillJoules, prefillMs, weightBytesRead } from "../hardware/index.js";
import { BlockLru, PrefixCache } from "./lru.js";

const EMPTY_BLOCKS = new Int32Array(0);

/**
 * Host-to-device bandwidth per GPU, GB/s, where none is given. PCIe 5.0 x16
 * (H100/H200 SXM's host interface, NVIDIA datasheet: 128 GB/s both ways) is
 * 32 GT/s x 16 lanes x 128/130 = 63 GB/s each way. Assumption: copies reach
 * about 80% of that, 50 GB/s; less where GPUs share a PCIe switch's uplink.
 */
export const DEFAULT_HOST_LINK_GBS = 50;

/** One request as a replica sees it. Fields are mutated by the replica; owners read them. */
export class SimSeq {
  /** The owner's id for the request (the simulator's request index). */
  readonly id: number;
  /** Prompt tokens. */
  readonly input: number;
  /** Tokens to generate, at least 1. */
  readonly output: number;
  /** Prefix block hashes live in `blocks[blockStart, blockEnd)`. */
  readonly blocks: ArrayLike<number>;
  readonly blockStart: number;
  readonly blockEnd: number;

  /** Tokens generated so far (kept across preemption and re-routing). */
  generated = 0;
  /** 0 waiting, 1 prefilling, 2 decoding, 3 finished. */
  phase = 0;

  // State of the current admission.
  /** Tokens this admission prefills: the prompt plus any output being recomputed. */
  promptTokens = 0;
  /** Tokens of `promptTokens` in KV (starts at the cache hit). */
  prefilled = 0;
  /** Prompt tokens this admission found in the prefix cache. */
  cachedTokens = 0;
  /** Prompt tokens covered by prefix blocks. */
  coveredTokens = 0;
  /** `generated` when admitted; tokens generated since are private KV. */
  generatedAtAdmit = 0;
  /** Prefill tokens in the pass under way. */
  chunk = 0;
  /** Admission order on this replica: the newest is preempted first. */
  admitOrder = 0;
  /** Position in the replica's decoding list. */
  slot = -1;
  /** Its KV (prompt and output so far) arrived from a prefill replica: it is admitted straight into decode. */
  kvReady = false;

  constructor(id: number, input: number, output: number, blocks: ArrayLike<number> = EMPTY_BLOCKS, blockStart = 0, blockEnd = blocks.length) {
    if (!(input >= 1) || !Number.isInteger(input)) throw new RangeError(`request ${id}: prompt tokens must be a positive integer, got ${input}`);
    if (!(output >= 1) || !Number.isInteger(output)) throw new RangeError(`request ${id}: output tokens must be a positive integer, got ${output}`);
    this.id = id;
    this.input = input;
    this.output = output;
    this.blocks = blocks;
    this.blockStart = blockStart;
    this.blockEnd = blockEnd;
  }

  get blockCount(): number {
    return this.blockEnd - this.blockStart;
  }
}

export interface ReplicaParams {
  readonly profile: PerfProfile;
  readonly energy: EnergyProfile;
  /** The same passes at the devices' physical limit (hardware/roofline.ts): counted as `rooflineMs` where given. */
  readonly roofline?: PerfProfile;
  /** Sequences running at once (vLLM max_num_seqs). */
  readonly maxBatch: number;
  /** KV tokens the replica holds; Infinity for an unlimited cache. Default: the profile's. */
  readonly kvCapacityTokens?: number;
  /** Tokens per prefix block (default 512, as the Mooncake traces). */
  readonly blockTokens?: number;
  /** Chunked prefill (default true). */
  readonly chunkedPrefill?: boolean;
  /** Tokens per pass: the chunked-prefill budget (default: the profile's maxTokensPerPass). */
  readonly stepTokens?: number;
  /** KV tokens the host-memory tier holds (Infinity: unlimited); 0, the default, for no host tier. */
  readonly hostKvTokens?: number;
  /** Host-to-device bandwidth per device, GB/s: each device loads its own shard of a block (default DEFAULT_HOST_LINK_GBS). */
  readonly hostLinkGBs?: number;
  /** Prefill replicas hand sequences off after their first token (default both: they decode here). */
  readonly role?: "prefill" | "decode" | "both";
}

/** Hears what a step did. Called synchronously from `endStep` (and `failAll`/`cancel` never call it). */
export interface ReplicaListener {
  /** The request's first output token came out at `now`. */
  firstToken(seq: SimSeq, now: number): void;
  /** The request generated its last token at `now` and left the replica. */
  finished(seq: SimSeq, now: number): void;
  /** A prefill replica's sequence has its prompt in KV and its latest token out at `now`, and left to decode elsewhere. */
  prefilled?(seq: SimSeq, now: number): void;
}

/** Counters a replica keeps for reports. */
export interface ReplicaCounters {
  steps: number;
  /** Milliseconds spent in passes. */
  busyMs: number;
  /** What those passes would have taken at the physical limit (0 without a roofline profile). */
  rooflineMs: number;
  /** Joules per device over all passes, before PUE. */
  joulesPerDevice: number;
  outputTokens: number;
  /** Prompt tokens computed (cache hits excluded, recomputation included). */
  prefillTokens: number;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number;
  /** Block lookups at admission, and those found in HBM or the host tier (counted along the chain until the first miss). */
  blockRefs: number;
  blockHits: number;
  /** Of `blockHits`, those found only in the host tier, and loaded over the host link. */
  hostBlockHits: number;
  /** Milliseconds passes spent loading blocks from the host tier (included in `busyMs`). */
  hostLoadMs: number;
  /** Blocks written to the host tier when HBM evicted them (those it did not hold already). */
  hostStores: number;
  admissions: number;
  completed: number;
  preemptions: number;
  /** Sequences a prefill replica handed off to decode elsewhere. */
  handoffs: number;
}

const WAITING = 0;
const PREFILLING = 1;
const DECODING = 2;
const FINISHED = 3;

/** A FIFO that can also push to the front (preempted sequences go back first). */
class SeqQueue {
  #items: (SimSeq | undefined)[] = new Array<SimSeq | undefined>(8);
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  peek(): SimSeq | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  push(seq: SimSeq): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) % this.#items.length] = seq;
    this.#length++;
  }

  unshift(seq: SimSeq): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1 + this.#items.length) % this.#items.length;
    this.#items[this.#head] = seq;
    this.#length++;
  }

  shift(): SimSeq | undefined {
    if (this.#length === 0) return undefined;
    const seq = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#length--;
    return seq;
  }

  remove(seq: SimSeq): boolean {
    const all = this.drain();
    let found = false;
    for (const s of all) {
      if (s === seq && !found) found = true;
      else this.push(s);
    }
    return found;
  }

  drain(): SimSeq[] {
    const out: SimSeq[] = [];
    for (let s = this.shift(); s !== undefined; s = this.shift()) out.push(s);
    return out;
  }

  #grow(): void {
    const items = new Array<SimSeq | undefined>(this.#items.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = this.#items[(this.#head + i) % this.#items.length];
    this.#items = items;
    this.#head = 0;
  }
}

export class ReplicaModel {
  readonly profile: PerfProfile;
  readonly energy: EnergyProfile;
  readonly roofline: PerfProfile | undefined;
  readonly maxBatch: number;
  readonly kvCapacityTokens: number;
  readonly blockTokens: number;
  readonly chunkedPrefill: boolean;
  readonly stepTokens: number;
  /** Blocks the host tier holds (0: none). */
  readonly hostCapacityBlocks: number;
  readonly hostLinkGBs: number;
  /** Hands sequences off after prefill (role: prefill). */
  readonly prefillOnly: boolean;
  // Counters live on the replica itself (one object to touch per step, not two).
  #steps = 0;
  #busyMs = 0;
  #rooflineMs = 0;
  #joulesPerDevice = 0;
  #outputTokens = 0;
  #prefillTokens = 0;
  #cachedTokens = 0;
  #blockRefs = 0;
  #blockHits = 0;
  #hostBlockHits = 0;
  #hostLoadMs = 0;
  #hostStores = 0;
  #admissions = 0;
  #completed = 0;
  #preemptions = 0;
  #handoffs = 0;

  readonly #listener: ReplicaListener;
  readonly #cache = new PrefixCache();
  /** The host-memory tier; undefined when there is none. */
  readonly #host: BlockLru | undefined;
  /** Time and energy (per device) to load one block from the host tier, and to store one there. */
  readonly #loadMsPerBlock: number;
  readonly #loadJoulesPerBlock: number;
  readonly #storeJoulesPerBlock: number;
  /** Blocks the pass being planned loads from the host tier. */
  #passLoads = 0;
  readonly #waiting = new SeqQueue();
  /** Admitted, prompt not yet fully in KV; in admission order. */
  #prefilling: SimSeq[] = [];
  /** In decode; unordered (swap-remove by `slot`). */
  readonly #decoding: SimSeq[] = [];
  /** KV tokens outside prefix blocks, over all running sequences. */
  #privateTokens = 0;
  /** The cache's resident blocks, mirrored after every cache operation so the per-step memory check reads this object only. */
  #resident = 0;
  /** Sum of (prompt + generated) over decoding sequences: what a decode step attends to. */
  #decodeContext = 0;
  #admitCounter = 0;
  #stepping = false;
  /** Non-chunked mode: the step under way prefills (true) or decodes (false). */
  #prefillStep = false;
  #stepMs = 0;
  #stepJoules = 0;
  #stepRooflineMs = 0;

  constructor(params: ReplicaParams, listener: ReplicaListener) {
    this.profile = params.profile;
    this.energy = params.energy;
    this.roofline = params.roofline;
    if (!Number.isInteger(params.maxBatch) || params.maxBatch < 1) throw new RangeError(`maxBatch must be a positive integer, got ${params.maxBatch}`);
    this.maxBatch = params.maxBatch;
    this.kvCapacityTokens = params.kvCapacityTokens ?? params.profile.kvCapacityTokens;
    if (!(this.kvCapacityTokens > 0)) throw new RangeError(`KV capacity must be positive, got ${this.kvCapacityTokens}`);
    this.blockTokens = params.blockTokens ?? 512;
    if (!Number.isInteger(this.blockTokens) || this.blockTokens < 1) throw new RangeError(`block size must be a positive integer, got ${this.blockTokens}`);
    this.chunkedPrefill = params.chunkedPrefill ?? true;
    this.stepTokens = params.stepTokens ?? params.profile.maxTokensPerPass;
    if (!Number.isInteger(this.stepTokens) || this.stepTokens < 1) throw new RangeError(`step token budget must be a positive integer, got ${this.stepTokens}`);
    const hostTokens = params.hostKvTokens ?? 0;
    if (!(hostTokens >= 0)) throw new RangeError(`host KV capacity must be >= 0, got ${hostTokens}`);
    this.hostLinkGBs = params.hostLinkGBs ?? DEFAULT_HOST_LINK_GBS;
    if (!(this.hostLinkGBs > 0) || this.hostLinkGBs === Infinity) throw new RangeError(`host link bandwidth must be a positive number, got ${this.hostLinkGBs}`);
    this.hostCapacityBlocks = Math.floor(hostTokens / this.blockTokens);
    this.#host = this.hostCapacityBlocks > 0 ? new BlockLru(this.hostCapacityBlocks) : undefined;
    const t = hostTransfer(this.profile, this.energy, this.blockTokens, this.hostLinkGBs);
    this.#loadMsPerBlock = t.loadMs;
    this.#loadJoulesPerBlock = t.loadJoules;
    this.#storeJoulesPerBlock = t.storeJoules;
    this.prefillOnly = params.role === "prefill";
    this.#listener = listener;
  }

  /** A snapshot of the counters. */
  get counters(): ReplicaCounters {
    return {
      steps: this.#steps,
      busyMs: this.#busyMs,
      rooflineMs: this.#rooflineMs,
      joulesPerDevice: this.#joulesPerDevice,
      outputTokens: this.#outputTokens,
      prefillTokens: this.#prefillTokens,
      cachedTokens: this.#cachedTokens,
      blockRefs: this.#blockRefs,
      blockHits: this.#blockHits,
      hostBlockHits: this.#hostBlockHits,
      hostLoadMs: this.#hostLoadMs,
      hostStores: this.#hostStores,
      admissions: this.#admissions,
      completed: this.#completed,
      preemptions: this.#preemptions,
      handoffs: this.#handoffs,
    };
  }
  /** Output tokens so far (the counter the event loop reads after every pass). */
  get outputTokens(): number {
    return this.#outputTokens;
  }

  /** Sequences admitted (prefilling or decoding): the router's `active`. */
  get active(): number {
    return this.#prefilling.length + this.#decoding.length;
  }
  /** Sequences waiting for admission: the router's `queued`. */
  get queued(): number {
    return this.#waiting.length;
  }
  /** A step is under way (its end is scheduled). */
  get stepping(): boolean {
    return this.#stepping;
  }
  /** Work to do: something running or waiting. */
  get busy(): boolean {
    return this.active > 0 || this.#waiting.length > 0;
  }
  /** KV tokens in use by running sequences (pinned blocks plus private tokens). */
  get committedKvTokens(): number {
    return this.#cache.pinnedBlocks * this.blockTokens + this.#privateTokens;
  }
  /** KV tokens resident, cached blocks included. */
  get residentKvTokens(): number {
    return this.#cache.residentBlocks * this.blockTokens + this.#privateTokens;
  }
  /** Whether the prefix cache holds block `hash`, in HBM or in the host tier. */
  cachedBlock(hash: number): boolean {
    return this.#cache.has(hash) || this.#host?.has(hash) === true;
  }
  /** Whether block `hash` is in the host tier. */
  hostBlock(hash: number): boolean {
    return this.#host?.has(hash) === true;
  }
  /** Blocks in the host tier. */
  get hostBlocks(): number {
    return this.#host?.size ?? 0;
  }
  /** Leading blocks of a chain either tier holds (what a prefix-aware router would score). */
  prefixHits(blocks: ArrayLike<number>, start = 0, end = blocks.length): number {
    const cache = this.#cache;
    const host = this.#host;
    let i = start;
    while (i < end && (cache.has(blocks[i]!) || host?.has(blocks[i]!) === true)) i++;
    return i - start;
  }

  /** Queues a request; it is admitted at a step boundary. */
  enqueue(seq: SimSeq): void {
    seq.phase = WAITING;
    this.#waiting.push(seq);
  }

  /**
   * Starts the next pass at `now` and returns its duration in milliseconds, or
   * -1 when there is nothing to do (the replica goes idle). Must not be called
   * while a step is under way.
   */
  beginStep(_now: number): number {
    if (this.#stepping) throw new Error("beginStep called while a step is under way");
    const ms = this.chunkedPrefill ? this.#planChunked() : this.#planUnchunked();
    if (ms < 0) return -1;
    this.#stepping = true;
    this.#stepMs = ms;
    return ms;
  }

  /** Ends the pass begun last at `now`: tokens come out, finished requests leave, memory is settled. */
  endStep(now: number): void {
    if (!this.#stepping) throw new Error("endStep called with no step under way");
    this.#stepping = false;
    this.#steps++;
    this.#busyMs += this.#stepMs;
    this.#rooflineMs += this.#stepRooflineMs;
    this.#joulesPerDevice += this.#stepJoules;
    let produced = 0;

    // Decoders advance one token (in unchunked prefill steps they wait).
    if (this.chunkedPrefill || !this.#prefillStep) {
      const dec = this.#decoding;
      const n = dec.length; // those of the pass: sequences join the list only below
      this.#decodeContext += n;
      this.#privateTokens += n;
      produced += n;
      for (let i = dec.length - 1; i >= 0; i--) {
        const seq = dec[i]!;
        if (++seq.generated >= seq.output) this.#finish(seq, now);
      }
    }

    // Prompts whose last chunk ran produce their next token.
    if (this.#prefilling.length > 0) {
      const still: SimSeq[] = [];
      for (const seq of this.#prefilling) {
        if (seq.chunk > 0) {
          seq.prefilled += seq.chunk;
          seq.chunk = 0;
        }
        if (seq.prefilled < seq.promptTokens) {
          still.push(seq);
          continue;
        }
        const first = seq.generated === 0;
        seq.generated++;
        produced++;
        this.#privateTokens++;
        if (first) this.#listener.firstToken(seq, now);
        if (this.prefillOnly && seq.generated < seq.output) {
          this.#release(seq);
          seq.phase = FINISHED;
          this.#handoffs++;
          this.#listener.prefilled?.(seq, now);
        } else if (seq.generated >= seq.output) {
          this.#release(seq);
          seq.phase = FINISHED;
          this.#completed++;
          this.#listener.finished(seq, now);
        } else {
          seq.phase = DECODING;
          seq.slot = this.#decoding.length;
          this.#decoding.push(seq);
          this.#decodeContext += seq.input + seq.generated;
        }
      }
      this.#prefilling = still;
    }
    this.#outputTokens += produced;
    this.#settleMemory();
  }

  /**
   * The device failed: every request leaves (running and waiting, oldest
   * first), KV and cache are lost, and a step under way is abandoned.
   */
  failAll(): SimSeq[] {
    const out: SimSeq[] = [...this.#prefilling, ...this.#decoding].sort((a, b) => a.admitOrder - b.admitOrder);
    out.push(...this.#waiting.drain());
    this.#prefilling = [];
    this.#decoding.length = 0;
    this.#cache.clear();
    this.#host?.clear(); // the engine process, and the host memory it held, go with the device
    this.#resident = 0;
    this.#privateTokens = 0;
    this.#decodeContext = 0;
    this.#stepping = false;
    for (const seq of out) {
      seq.phase = WAITING;
      seq.chunk = 0;
      seq.slot = -1;
      seq.kvReady = false; // its KV went with the device
    }
    return out;
  }

  /** Removes a request wherever it is (a client gave up); its KV is freed. Returns whether it was here. */
  cancel(seq: SimSeq): boolean {
    if (seq.phase === WAITING) return this.#waiting.remove(seq);
    if (seq.phase === PREFILLING) {
      const i = this.#prefilling.indexOf(seq);
      if (i < 0) return false;
      this.#prefilling.splice(i, 1);
      this.#release(seq);
      seq.phase = FINISHED;
      return true;
    }
    if (seq.phase === DECODING && this.#decoding[seq.slot] === seq) {
      this.#removeDecoding(seq);
      this.#release(seq);
      seq.phase = FINISHED;
      return true;
    }
    return false;
  }

  // -------------------------------------------------------------------------

  /** Chunked: decode tokens first, then prompt chunks (continuing ones, then new admissions) up to the budget. */
  #planChunked(): number {
    const p = this.profile;
    this.#admitTransferred();
    const decoders = this.#decoding.length;
    let budget = this.stepTokens - decoders;
    let prefillTokens = 0;
    let prefillAttnPairs = 0;
    let prefillKv = 0;
    let prefillSeqs = 0;
    for (const seq of this.#prefilling) {
      if (budget <= 0) break;
      const chunk = Math.min(seq.promptTokens - seq.prefilled, budget);
      seq.chunk = chunk;
      budget -= chunk;
      prefillTokens += chunk;
      prefillAttnPairs += chunk * (seq.prefilled + chunk / 2);
      prefillKv += seq.prefilled + chunk;
      prefillSeqs++;
    }
    while (budget > 0 && this.#waiting.length > 0 && this.#admitHead()) {
      const seq = this.#prefilling[this.#prefilling.length - 1]!;
      const chunk = Math.min(seq.promptTokens - seq.prefilled, budget);
      seq.chunk = chunk;
      budget -= chunk;
      prefillTokens += chunk;
      prefillAttnPairs += chunk * (seq.prefilled + chunk / 2);
      prefillKv += seq.prefilled + chunk;
      prefillSeqs++;
    }
    const tokens = decoders + prefillTokens;
    if (tokens === 0) return -1;
    this.#prefillTokens += prefillTokens;
    if (prefillTokens === 0) return this.#decodeStep(decoders);
    const attnFlops = this.#decodeContext * p.attnFlopsPerPairDecode + prefillAttnPairs * p.attnFlopsPerPairPrefill;
    const kvBytes = (this.#decodeContext + prefillKv) * p.kvBytesPerToken;
    const ms = passMs(p, tokens, attnFlops, kvBytes, decoders + prefillSeqs);
    // The roofline profile has the same model shape, so the same FLOPs and bytes.
    this.#stepRooflineMs = this.roofline === undefined ? 0 : passMs(this.roofline, tokens, attnFlops, kvBytes, decoders + prefillSeqs);
    this.#stepJoules = passJoules(p, this.energy, tokens, attnFlops, kvBytes, ms);
    return ms + this.#takeLoads();
  }

  /**
   * The host-tier loads of the pass being planned (admissions counted them in
   * `#passLoads`): their time, which the pass waits for before it computes,
   * and their energy go to the pass.
   */
  #takeLoads(): number {
    const blocks = this.#passLoads;
    if (blocks === 0) return 0;
    this.#passLoads = 0;
    const ms = blocks * this.#loadMsPerBlock;
    this.#hostLoadMs += ms;
    this.#stepJoules += blocks * this.#loadJoulesPerBlock;
    return ms;
  }

  /** Unchunked: admit and prefill whole prompts when any wait, else decode. */
  #planUnchunked(): number {
    const p = this.profile;
    this.#admitTransferred();
    let ms = 0;
    let joules = 0;
    let roofMs = 0;
    let tokens = 0;
    // Admit while the prompts fit one pass's budget (the first always goes, however long).
    while (this.#waiting.length > 0) {
      const head = this.#waiting.peek()!;
      const need = head.input + head.generated;
      if (tokens > 0 && tokens + need > this.stepTokens) break;
      if (!this.#admitHead()) break;
      const seq = this.#prefilling[this.#prefilling.length - 1]!;
      const fresh = seq.promptTokens - seq.prefilled;
      seq.chunk = fresh;
      tokens += fresh;
      ms += prefillMs(p, fresh, seq.prefilled);
      joules += prefillJoules(p, this.energy, fresh, seq.prefilled);
      if (this.roofline !== undefined) roofMs += prefillMs(this.roofline, fresh, seq.prefilled);
    }
    if (tokens > 0) {
      this.#prefillStep = true;
      this.#stepJoules = joules;
      this.#stepRooflineMs = roofMs;
      this.#prefillTokens += tokens;
      return ms + this.#takeLoads();
    }
    const decoders = this.#decoding.length;
    if (decoders === 0) return -1;
    this.#prefillStep = false;
    return this.#decodeStep(decoders);
  }

  /** A pass of decode tokens only: its time, and its energy and time at the limit for endStep. */
  #decodeStep(decoders: number): number {
    this.#stepJoules = decodeStepJoules(this.profile, this.energy, decoders, this.#decodeContext);
    this.#stepRooflineMs = this.roofline === undefined ? 0 : decodeStepMs(this.roofline, decoders, this.#decodeContext);
    return decodeStepMs(this.profile, decoders, this.#decodeContext);
  }

  /**
   * Admits the head of the queue if a running slot is free and its KV fits
   * (evicting cached blocks as needed); a request always gets in when nothing
   * else runs, so an oversized one cannot wedge the replica.
   */
  #admitHead(): boolean {
    if (this.active >= this.maxBatch) return false;
    const seq = this.#waiting.peek()!;
    if (seq.kvReady) return false; // waits for #admitTransferred at the next pass
    const bs = this.blockTokens;
    const cache = this.#cache;
    const { blocks, blockStart, blockEnd } = seq;
    const promptTokens = seq.input + seq.generated;
    const covered = Math.min(seq.input, (blockEnd - blockStart) * bs);
    const privateNew = promptTokens - covered;
    if (this.kvCapacityTokens !== Infinity && this.active > 0) {
      // Blocks not pinned by someone else need memory (cached ones stop being evictable).
      const unpinned = cache.unpinned(blocks, blockStart, blockEnd);
      const committed = cache.pinnedBlocks * bs + this.#privateTokens;
      if (committed + unpinned * bs + privateNew > this.kvCapacityTokens) return false;
    }
    this.#waiting.shift();
    // The leading run of blocks found in either tier; those only in host memory are loaded (and stay there too).
    const host = this.#host;
    let end = blockStart;
    let loads = 0;
    for (; end < blockEnd; end++) {
      const h = blocks[end]!;
      if (cache.has(h)) continue;
      if (host === undefined || !host.touch(h)) break;
      loads++;
    }
    const hits = end - blockStart;
    cache.acquire(blocks, blockStart, blockEnd);
    this.#resident = cache.residentBlocks;
    this.#blockRefs += blockEnd - blockStart;
    this.#blockHits += hits;
    this.#hostBlockHits += loads;
    this.#passLoads += loads;
    this.#admissions++;
    const cached = Math.max(0, Math.min(hits * bs, covered, promptTokens - 1));
    this.#cachedTokens += cached;
    seq.phase = PREFILLING;
    seq.promptTokens = promptTokens;
    seq.prefilled = cached;
    seq.cachedTokens = cached;
    seq.coveredTokens = covered;
    seq.generatedAtAdmit = seq.generated;
    seq.chunk = 0;
    seq.admitOrder = this.#admitCounter++;
    this.#privateTokens += privateNew;
    this.#prefilling.push(seq);
    this.#evictToFit();
    return true;
  }

  /**
   * Admits the sequences at the head of the queue whose KV arrived from a
   * prefill replica, while a slot is free and their KV fits (the first always,
   * when nothing else runs): straight into decode, so the pass being planned
   * carries their next token. Their KV is private (no prefix blocks pinned).
   */
  #admitTransferred(): void {
    const waiting = this.#waiting;
    for (let seq = waiting.peek(); seq?.kvReady === true && this.active < this.maxBatch; seq = waiting.peek()) {
      const tokens = seq.input + seq.generated;
      if (this.kvCapacityTokens !== Infinity && this.active > 0 && this.committedKvTokens + tokens > this.kvCapacityTokens) return;
      waiting.shift();
      this.#admissions++;
      seq.promptTokens = tokens;
      seq.prefilled = tokens;
      seq.cachedTokens = 0;
      seq.coveredTokens = 0;
      seq.generatedAtAdmit = seq.generated;
      seq.chunk = 0;
      seq.admitOrder = this.#admitCounter++;
      this.#privateTokens += tokens;
      seq.phase = DECODING;
      seq.slot = this.#decoding.length;
      this.#decoding.push(seq);
      this.#decodeContext += tokens;
      this.#evictToFit();
    }
  }

  /** Frees a sequence's KV: its blocks become cached (if no one else pins them), its private tokens go. */
  #release(seq: SimSeq): void {
    if (!seq.kvReady) this.#cache.release(seq.blocks, seq.blockStart, seq.blockEnd);
    this.#resident = this.#cache.residentBlocks;
    this.#privateTokens -= seq.promptTokens - seq.coveredTokens + (seq.generated - seq.generatedAtAdmit);
  }

  #finish(seq: SimSeq, now: number): void {
    this.#removeDecoding(seq);
    this.#release(seq);
    seq.phase = FINISHED;
    this.#completed++;
    this.#listener.finished(seq, now);
  }

  #removeDecoding(seq: SimSeq): void {
    const dec = this.#decoding;
    const last = dec.pop()!;
    if (last !== seq) {
      dec[seq.slot] = last;
      last.slot = seq.slot;
    }
    seq.slot = -1;
    this.#decodeContext -= seq.input + seq.generated;
  }

  /** Evicts cached blocks while resident KV exceeds capacity; the host tier, if any, keeps them. */
  #evictToFit(): void {
    const bs = this.blockTokens;
    const cap = this.kvCapacityTokens;
    if (this.#resident * bs + this.#privateTokens <= cap) return;
    const cache = this.#cache;
    const host = this.#host;
    while (cache.residentBlocks * bs + this.#privateTokens > cap) {
      const h = cache.evictOldest();
      if (h === undefined) break;
      // A block loaded from host memory is still there: refreshing it costs no copy.
      if (host !== undefined && !host.touch(h)) {
        host.insertAbsent(h);
        this.#hostStores++;
        this.#joulesPerDevice += this.#storeJoulesPerBlock;
      }
    }
    this.#resident = cache.residentBlocks;
  }

  /** After a step: evict cached blocks, then preempt the newest sequences, until running KV fits. */
  #settleMemory(): void {
    const bs = this.blockTokens;
    if (this.#resident * bs + this.#privateTokens <= this.kvCapacityTokens) return;
    this.#evictToFit();
    while (this.#cache.pinnedBlocks * bs + this.#privateTokens > this.kvCapacityTokens && this.active > 1) {
      this.#preemptNewest();
      this.#evictToFit();
    }
  }

  #preemptNewest(): void {
    let victim: SimSeq | undefined;
    for (const s of this.#prefilling) if (victim === undefined || s.admitOrder > victim.admitOrder) victim = s;
    for (const s of this.#decoding) if (victim === undefined || s.admitOrder > victim.admitOrder) victim = s;
    if (victim === undefined) return;
    if (victim.phase === PREFILLING) this.#prefilling.splice(this.#prefilling.indexOf(victim), 1);
    else this.#removeDecoding(victim);
    this.#release(victim);
    victim.kvReady = false; // recomputed here: prompt and output so far
    victim.phase = WAITING;
    victim.chunk = 0;
    this.#waiting.unshift(victim);
    this.#preemptions++;
  }
}

/**
 * Joules per device of one pass over `tokens` tokens (before PUE), from the
 * same activity terms as hardware/'s decodeStepJoules: FLOPs, bytes moved,
 * link bytes, and static power over the pass, capped at TDP.
 */
export function passJoules(p: PerfProfile, e: EnergyProfile, tokens: number, attnFlops: number, kvBytes: number, ms: number): number {
  if (tokens <= 0) return 0;
  const s = ms / 1000;
  const pj =
    gemmFlops(p, tokens) * e.pjPerFlopGemm +
    attnFlops * e.pjPerFlopAttn +
    (weightBytesRead(p, tokens) + kvBytes + tokens * p.activationBytesPerToken) * e.pjPerByteMemory +
    tokens * p.commBytesPerToken * e.pjPerByteLink;
  return Math.min(e.tdpW * s, e.staticW * s + pj * 1e-12);
}

/**
 * Moving one block of KV between host memory and HBM, per device (each of the
 * tp devices moves its own shard over its own host link): the load's time,
 * and the energy of a load and of a store. Energy counts the device's side
 * only: the link's SerDes (the catalog's link pJ/bit, a scale-up link's
 * figure standing in for PCIe's: an assumption) and the HBM access, plus
 * static power while a pass waits for a load; host DRAM is the CPU's.
 */
export function hostTransfer(p: PerfProfile, e: EnergyProfile, blockTokens: number, linkGBs: number): { loadMs: number; loadJoules: number; storeJoules: number } {
  const bytes = blockTokens * p.kvBytesPerToken;
  const loadMs = bytes / (linkGBs * 1e6);
  const moveJoules = bytes * (e.pjPerByteLink + e.pjPerByteMemory) * 1e-12;
  return { loadMs, loadJoules: moveJoules + (e.staticW * loadMs) / 1000, storeJoules: moveJoules };
}
