/**
 * A deterministic random-weight llama model, written as GGUF.
 *
 * Flotilla cannot download weights, yet needs a real model for llama.cpp to
 * load, tokenize with and generate from. Random weights do that: the text is
 * nonsense, but every code path (tokenizer, attention, sampling, KV cache) runs
 * for real, and at full-size shapes the speed is that of a real model of the
 * same shape.
 *
 * The same shape, options and seed always give a byte-identical file: every
 * tensor draws from its own PRNG stream, seeded from the model seed and the
 * tensor's name, so nothing depends on tensor order or chunking.
 */
import {
  kv,
  planGguf,
  writeGguf,
  type GgmlTensorType,
  type GgufFile,
  type GgufLayout,
  type GgufMetadata,
  type GgufTensor,
  type TensorFill,
} from "./writer.js";

// ---------------------------------------------------------------------------
// Shapes

export interface LlamaShape {
  readonly layers: number;
  /** Embedding width (d_model). */
  readonly hidden: number;
  /** Query heads; the head width is hidden / heads. */
  readonly heads: number;
  /** Key/value heads (grouped-query attention when fewer than `heads`). */
  readonly kvHeads: number;
  /** Feed-forward (SwiGLU) inner width. */
  readonly ffn: number;
  /** Context the model advertises (llama.context_length). */
  readonly contextLength: number;
  /** RoPE base frequency; llama.cpp's default of 10000 when absent. */
  readonly ropeFreqBase?: number;
  /** RMSNorm epsilon; 1e-5 when absent. */
  readonly rmsEps?: number;
}

/** A real model's shape, with the vocabulary it really has (pass it as `vocabPadTo` for realistic speed). */
export interface ReferenceShape extends LlamaShape {
  readonly realVocabSize: number;
}

/**
 * Flotilla's built-in model: 631,168 bytes as f32. Two KV heads for four query
 * heads so that the grouped-query path real Llama 3 models take is exercised.
 */
export const DEFAULT_TINY_SHAPE: LlamaShape = {
  layers: 2,
  hidden: 64,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  contextLength: 4096,
};

/**
 * Full-size shapes for speed measurement. The vocabulary written is still the
 * 259-token byte-level one unless `vocabPadTo` says otherwise; a real 128,256
 * vocabulary makes token_embd and output.weight ~500M values each at 8B, and
 * the output matmul is a real share of per-token cost, so pass
 * `vocabPadTo: shape.realVocabSize` when timings must match the real model.
 * Llama 3.2 ties output.weight to token_embd; these files always carry a
 * separate output.weight (same compute, a larger file).
 *
 * Writing is single-threaded JS at roughly 40-80 M weights/s (q8_0 slowest),
 * so an 8B file takes a few minutes; planning one (`randomLlamaFileSize`) is instant.
 */
export const FULL_SIZE_SHAPES = {
  "llama-3.2-1b": { layers: 16, hidden: 2048, heads: 32, kvHeads: 8, ffn: 8192, contextLength: 131072, ropeFreqBase: 500000, rmsEps: 1e-5, realVocabSize: 128256 },
  "llama-3.2-3b": { layers: 28, hidden: 3072, heads: 24, kvHeads: 8, ffn: 8192, contextLength: 131072, ropeFreqBase: 500000, rmsEps: 1e-5, realVocabSize: 128256 },
  "llama-3.1-8b": { layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, contextLength: 131072, ropeFreqBase: 500000, rmsEps: 1e-5, realVocabSize: 128256 },
  "llama-3.1-70b": { layers: 80, hidden: 8192, heads: 64, kvHeads: 8, ffn: 28672, contextLength: 131072, ropeFreqBase: 500000, rmsEps: 1e-5, realVocabSize: 128256 },
} as const satisfies Record<string, ReferenceShape>;

function checkShape(shape: LlamaShape, type: GgmlTensorType): void {
  for (const key of ["layers", "hidden", "heads", "kvHeads", "ffn", "contextLength"] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`shape.${key} must be a positive integer, got ${v}`);
  }
  if (shape.hidden % shape.heads !== 0) throw new RangeError(`hidden ${shape.hidden} is not a multiple of heads ${shape.heads}`);
  if (shape.heads % shape.kvHeads !== 0) throw new RangeError(`heads ${shape.heads} is not a multiple of kvHeads ${shape.kvHeads}`);
  // RoPE rotates pairs of dimensions.
  if ((shape.hidden / shape.heads) % 2 !== 0) throw new RangeError("the head width must be even for RoPE");
  if (type === "q8_0" && (shape.hidden % 32 !== 0 || shape.ffn % 32 !== 0)) {
    throw new RangeError("q8_0 needs hidden and ffn to be multiples of 32 (its block size)");
  }
}

// ---------------------------------------------------------------------------
// PRNG

/**
 * SplitMix32: a Weyl sequence (add the golden-ratio constant) passed through
 * a 32-bit avalanche mixer. Tiny, fast in JS (Math.imul), and good enough for
 * weights; the exact constants matter only in that they never change, since
 * files must stay byte-identical across versions of this code.
 */
export class SplitMix32 {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  nextUint32(): number {
    this.#state = (this.#state + 0x9e3779b9) >>> 0;
    let z = this.#state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in [-1, 1). */
  nextSigned(): number {
    return this.nextUint32() / 0x80000000 - 1;
  }

  /**
   * Fills `out` with uniform values in [-scale, scale), exactly as repeated
   * `scale * nextSigned()` would. The loop keeps the state in a local, which
   * is several times faster than a method call per weight: full-size models
   * have billions of them.
   */
  fillUniform(out: Float32Array, scale: number): void {
    let state = this.#state;
    for (let i = 0; i < out.length; i++) {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      out[i] = scale * (((z ^ (z >>> 16)) >>> 0) / 0x80000000 - 1);
    }
    this.#state = state;
  }
}

/** FNV-1a over the name's UTF-16 code units: turns a tensor name into a stream id. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function streamSeed(seed: number, name: string): number {
  return (new SplitMix32(seed).nextUint32() ^ hashName(name)) >>> 0;
}

// ---------------------------------------------------------------------------
// Vocabulary

/** GGUF token types (llama.cpp's llama_token_type). */
const TokenType = { normal: 1, unknown: 2, control: 3, unused: 5 } as const;

export const UNK_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;
const SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"] as const;
const SPECIAL_TYPES = [TokenType.unknown, TokenType.control, TokenType.control] as const;
/** Byte b is token FIRST_BYTE_TOKEN + b. */
export const FIRST_BYTE_TOKEN = SPECIAL_TOKENS.length;
export const BYTE_VOCAB_SIZE = FIRST_BYTE_TOKEN + 256;

/**
 * GPT-2's byte-to-character table: printable Latin-1 bytes stand for
 * themselves; the other 68 (controls, space, soft hyphen...) are moved to
 * U+0100 onwards in byte order, so every byte is a visible, non-space
 * character that a BPE vocabulary can hold. llama.cpp's "gpt2" tokenizer
 * maps text bytes through this table, and back when detokenizing.
 */
export function gpt2ByteToChar(): string[] {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let moved = 0;
  for (let b = 0; b < 256; b++) chars.push(String.fromCodePoint(printable(b) ? b : 0x100 + moved++));
  return chars;
}

interface Vocabulary {
  readonly tokens: string[];
  readonly types: number[];
}

/**
 * <unk>, <s>, </s>, the 256 byte tokens, then (when padding) unused tokens.
 * With no merges, llama.cpp tokenizes any text to one token per UTF-8 byte,
 * so every string round-trips exactly.
 */
function buildVocabulary(padTo: number | undefined): Vocabulary {
  const tokens: string[] = [...SPECIAL_TOKENS, ...gpt2ByteToChar()];
  const types: number[] = [...SPECIAL_TYPES, ...new Array<number>(256).fill(TokenType.normal)];
  if (padTo !== undefined) {
    if (!Number.isSafeInteger(padTo) || padTo < BYTE_VOCAB_SIZE) {
      throw new RangeError(`vocabPadTo must be an integer >= ${BYTE_VOCAB_SIZE}, got ${padTo}`);
    }
    // Unused tokens are never produced by tokenizing and detokenize to nothing; they exist only to make the
    // embedding and output matrices the real model's size.
    for (let id = tokens.length; id < padTo; id++) {
      tokens.push(`<unused_${id}>`);
      types.push(TokenType.unused);
    }
  }
  return { tokens, types };
}

// ---------------------------------------------------------------------------
// Tensors

export interface RandomLlamaOptions {
  /** Storage type of the matrices; norms are always f32. Default f32. */
  readonly type?: GgmlTensorType;
  /** Unsigned 32-bit seed; default 0. */
  readonly seed?: number;
  /** general.name; default "flotilla-random-llama". */
  readonly name?: string;
  /** Pad the vocabulary with unused tokens to this size, so the output layer costs what a real model's does. */
  readonly vocabPadTo?: number;
}

/** llama.cpp's llama_ftype for a file whose matrices are all `type`. */
const FILE_TYPE: Readonly<Record<GgmlTensorType, number>> = { f32: 0, f16: 1, q8_0: 7 };

/**
 * Uniform ±scale from the tensor's own stream, each row (run of `rowWidth`
 * values) then multiplied by `rowScale(row)`. Restarts the stream at start 0,
 * so a spec can be encoded more than once with the same result.
 */
function uniformFill(seed: number, name: string, scale: number, rowWidth: number, rowScale?: (row: number) => number): TensorFill {
  let rng = new SplitMix32(streamSeed(seed, name));
  return (out, start) => {
    if (start === 0) rng = new SplitMix32(streamSeed(seed, name));
    // Every value is drawn, even one scaled to 0 below, so the stream stays aligned with the element index.
    rng.fillUniform(out, scale);
    if (rowScale === undefined) return;
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) * rowScale(Math.floor((start + i) / rowWidth));
  };
}

const onesFill: TensorFill = (out) => {
  out.fill(1);
};

/**
 * Shapes what the random model says, through the size of each token's output
 * row (its logit is proportional to it). Control and unused tokens get 0: their
 * logit is exactly 0 while some byte token always scores above 0, so greedy
 * decoding never stops early on </s> nor emits an empty unused token, and
 * sampling rarely does. Printable ASCII and newline get 4×: they win nearly
 * every time, so output is readable ASCII instead of mostly invalid UTF-8.
 */
function outputRowScale(token: number): number {
  if (token < FIRST_BYTE_TOKEN || token >= BYTE_VOCAB_SIZE) return 0;
  const byte = token - FIRST_BYTE_TOKEN;
  return (byte >= 0x20 && byte <= 0x7e) || byte === 0x0a ? 4 : 1;
}

/**
 * Weight scales. Matrices are uniform ±1/sqrt(fan_in) (fan_in = dims[0], the
 * input width), so each matmul keeps activations at about the same size. The
 * two that write into the residual stream (attn_output, ffn_down) are further
 * scaled by 1/sqrt(2·layers), as GPT-2 initialises them, so that the sum of all
 * layers' updates stays about the size of the embedding: without it a 32-layer
 * model drowns the current token and greedy decoding repeats one token.
 * Embeddings are uniform ±1. Norm weights are 1: a plain RMS normalisation.
 */
function buildTensors(shape: LlamaShape, type: GgmlTensorType, seed: number, vocabSize: number): GgufTensor[] {
  const headDim = shape.hidden / shape.heads;
  const qWidth = shape.heads * headDim;
  const kvWidth = shape.kvHeads * headDim;
  const residualScale = 1 / Math.sqrt(2 * shape.layers);
  const matrix = (name: string, inWidth: number, outWidth: number, opts: { rowScale?: (row: number) => number; residual?: boolean } = {}): GgufTensor => ({
    name,
    dims: [inWidth, outWidth],
    type,
    values: uniformFill(seed, name, (opts.residual === true ? residualScale : 1) / Math.sqrt(inWidth), inWidth, opts.rowScale),
  });
  const norm = (name: string): GgufTensor => ({ name, dims: [shape.hidden], type: "f32", values: onesFill });

  const tensors: GgufTensor[] = [
    { name: "token_embd.weight", dims: [shape.hidden, vocabSize], type, values: uniformFill(seed, "token_embd.weight", 1, shape.hidden) },
    norm("output_norm.weight"),
    matrix("output.weight", shape.hidden, vocabSize, { rowScale: outputRowScale }),
  ];
  for (let l = 0; l < shape.layers; l++) {
    const blk = `blk.${l}.`;
    tensors.push(
      norm(`${blk}attn_norm.weight`),
      matrix(`${blk}attn_q.weight`, shape.hidden, qWidth),
      matrix(`${blk}attn_k.weight`, shape.hidden, kvWidth),
      matrix(`${blk}attn_v.weight`, shape.hidden, kvWidth),
      matrix(`${blk}attn_output.weight`, qWidth, shape.hidden, { residual: true }),
      norm(`${blk}ffn_norm.weight`),
      matrix(`${blk}ffn_gate.weight`, shape.hidden, shape.ffn),
      matrix(`${blk}ffn_up.weight`, shape.hidden, shape.ffn),
      matrix(`${blk}ffn_down.weight`, shape.ffn, shape.hidden, { residual: true }),
    );
  }
  return tensors;
}

function buildMetadata(shape: LlamaShape, type: GgmlTensorType, name: string, vocab: Vocabulary): GgufMetadata {
  return {
    "general.architecture": kv.string("llama"),
    "general.name": kv.string(name),
    "general.file_type": kv.uint32(FILE_TYPE[type]),
    ...(type === "q8_0" ? { "general.quantization_version": kv.uint32(2) } : {}),
    "llama.vocab_size": kv.uint32(vocab.tokens.length),
    "llama.context_length": kv.uint32(shape.contextLength),
    "llama.embedding_length": kv.uint32(shape.hidden),
    "llama.block_count": kv.uint32(shape.layers),
    "llama.feed_forward_length": kv.uint32(shape.ffn),
    "llama.attention.head_count": kv.uint32(shape.heads),
    "llama.attention.head_count_kv": kv.uint32(shape.kvHeads),
    "llama.rope.dimension_count": kv.uint32(shape.hidden / shape.heads),
    "llama.rope.freq_base": kv.float32(shape.ropeFreqBase ?? 10000),
    "llama.attention.layer_norm_rms_epsilon": kv.float32(shape.rmsEps ?? 1e-5),
    // Byte-level GPT-2 style BPE with no merges: one token per UTF-8 byte.
    "tokenizer.ggml.model": kv.string("gpt2"),
    "tokenizer.ggml.pre": kv.string("default"),
    "tokenizer.ggml.tokens": kv.strings(vocab.tokens),
    "tokenizer.ggml.token_type": kv.numbers("int32", vocab.types),
    "tokenizer.ggml.merges": kv.strings([]),
    "tokenizer.ggml.bos_token_id": kv.uint32(BOS_ID),
    "tokenizer.ggml.eos_token_id": kv.uint32(EOS_ID),
    "tokenizer.ggml.unknown_token_id": kv.uint32(UNK_ID),
    "tokenizer.ggml.add_bos_token": kv.bool(true),
    "tokenizer.ggml.add_eos_token": kv.bool(false),
  };
}

/** The model as a GGUF spec whose tensor data is generated lazily, chunk by chunk. */
export function randomLlamaGguf(shape: LlamaShape, opts: RandomLlamaOptions = {}): GgufFile {
  const type = opts.type ?? "f32";
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be a uint32, got ${seed}`);
  checkShape(shape, type);
  const vocab = buildVocabulary(opts.vocabPadTo);
  return {
    metadata: buildMetadata(shape, type, opts.name ?? "flotilla-random-llama", vocab),
    tensors: buildTensors(shape, type, seed, vocab.tokens.length),
  };
}

/** Size in bytes of the file `writeRandomLlama` would write, without generating any weights. */
export function randomLlamaFileSize(shape: LlamaShape, opts: RandomLlamaOptions = {}): number {
  return planGguf(randomLlamaGguf(shape, opts)).totalSize;
}

/** Writes the model to `path`, streaming: memory stays flat whatever the shape. */
export async function writeRandomLlama(
  path: string,
  shape: LlamaShape,
  opts: RandomLlamaOptions & { readonly sync?: boolean } = {},
): Promise<GgufLayout> {
  return writeGguf(path, randomLlamaGguf(shape, opts), opts.sync === undefined ? {} : { sync: opts.sync });
}
