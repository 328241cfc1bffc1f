/**
 * Model catalog (architecture shapes from each model's published config.json),
 * parameter accounting, and a ModelSpec built from GGUF metadata.
 */
import { UnknownNameError } from "./errors.js";

export interface MoeSpec {
  /** Routed experts per MoE layer. */
  readonly experts: number;
  /** Routed experts each token uses (top-k). */
  readonly activeExperts: number;
  /** Always-on shared experts per MoE layer. */
  readonly sharedExperts: number;
  /** Intermediate size of one routed expert. */
  readonly expertFfn: number;
  /** Intermediate size of all shared experts together; defaults to sharedExperts x expertFfn. */
  readonly sharedFfn?: number;
  /** Leading layers with a dense FFN (of size `ffn`) instead of experts. */
  readonly denseLayers: number;
}

/** Multi-head latent attention (DeepSeek-V2/V3): the cache holds one compressed latent per token and layer. */
export interface MlaSpec {
  /** 0 where queries are not low-rank. */
  readonly qLoraRank: number;
  readonly kvLoraRank: number;
  readonly ropeHeadDim: number;
  readonly nopeHeadDim: number;
  readonly vHeadDim: number;
}

export interface ModelSpec {
  readonly id: string;
  readonly name: string;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Dense FFN intermediate size (for MoE models: the size of the leading dense layers' FFN). */
  readonly ffn: number;
  readonly vocab: number;
  /** Output head shares the embedding table. */
  readonly tiedEmbeddings: boolean;
  /** Gated FFN (SwiGLU: gate, up, down = 3 matrices) or plain (2 matrices). */
  readonly gatedFfn: boolean;
  readonly contextLength: number;
  readonly moe?: MoeSpec;
  readonly mla?: MlaSpec;
  readonly source: string;
}

/** Counts derived from a spec; router and norm weights are left out (well under 0.1% of any model here). */
export interface ModelStats {
  readonly totalParams: number;
  readonly activeParams: number;
  /** The input embedding table (looked up, not streamed, each pass). */
  readonly embeddingParams: number;
  /** Weights every forward pass reads whatever the routing: attention, dense FFNs, shared experts, output head. */
  readonly denseReadParams: number;
  /** One routed expert's weights summed over all MoE layers. */
  readonly expertParams: number;
  readonly routedExperts: number;
  readonly activeRoutedExperts: number;
  readonly moeLayers: number;
  /** Matmul FLOPs per token over all linear layers: 2 x (denseRead + active experts). */
  readonly linearFlopsPerToken: number;
  /** Attention FLOPs per (query token, cached token) pair over all layers, decode form (MLA absorbed). */
  readonly attnFlopsPerPairDecode: number;
  /** The same for prefill (MLA not absorbed). */
  readonly attnFlopsPerPairPrefill: number;
  /** KV-cache elements per token over all layers (K and V for GQA; latent + rope key for MLA). */
  readonly kvElementsPerToken: number;
  /**
   * Activation elements each token writes (and the next kernel reads) over all layers, outside
   * the weights: hidden-size tensors every tensor-parallel rank holds whole (norms, residuals),
   * and tensors split across ranks (q/k/v, attention output, FFN intermediates, MoE dispatch copies).
   */
  readonly activationElementsReplicated: number;
  readonly activationElementsSplit: number;
}

export function attentionParamsPerLayer(m: ModelSpec): number {
  const h = m.hidden;
  if (m.mla !== undefined) {
    const a = m.mla;
    const qk = a.nopeHeadDim + a.ropeHeadDim;
    const q = a.qLoraRank > 0 ? h * a.qLoraRank + a.qLoraRank * m.heads * qk : h * m.heads * qk;
    const kvA = h * (a.kvLoraRank + a.ropeHeadDim);
    const kvB = a.kvLoraRank * m.heads * (a.nopeHeadDim + a.vHeadDim);
    const o = m.heads * a.vHeadDim * h;
    return q + kvA + kvB + o;
  }
  return h * m.heads * m.headDim * 2 + h * m.kvHeads * m.headDim * 2;
}

export function modelStats(m: ModelSpec): ModelStats {
  const mats = m.gatedFfn ? 3 : 2;
  const attn = attentionParamsPerLayer(m) * m.layers;
  const embedding = m.vocab * m.hidden;
  const head = m.vocab * m.hidden; // read every pass; the same table when tied
  const tables = m.tiedEmbeddings ? embedding : embedding + head;
  const moe = m.moe;
  const moeLayers = moe === undefined ? 0 : m.layers - moe.denseLayers;
  const denseFfnLayers = m.layers - moeLayers;
  const denseFfn = denseFfnLayers * mats * m.hidden * m.ffn;
  const expertParams = moe === undefined ? 0 : moeLayers * mats * m.hidden * moe.expertFfn;
  const sharedFfn = moe === undefined ? 0 : (moe.sharedFfn ?? moe.sharedExperts * moe.expertFfn);
  const shared = moeLayers * mats * m.hidden * sharedFfn;
  const routed = moe?.experts ?? 0;
  const active = moe?.activeExperts ?? 0;
  const denseRead = attn + denseFfn + shared + head;
  let pairDecode: number;
  let pairPrefill: number;
  let kvElements: number;
  if (m.mla !== undefined) {
    const a = m.mla;
    // absorbed: scores over (latent + rope key), values over the latent
    pairDecode = 2 * m.heads * (a.kvLoraRank + a.ropeHeadDim) + 2 * m.heads * a.kvLoraRank;
    pairPrefill = 2 * m.heads * (a.nopeHeadDim + a.ropeHeadDim) + 2 * m.heads * a.vHeadDim;
    kvElements = (a.kvLoraRank + a.ropeHeadDim) * m.layers;
  } else {
    pairDecode = 4 * m.heads * m.headDim;
    pairPrefill = pairDecode;
    kvElements = 2 * m.kvHeads * m.headDim * m.layers;
  }
  // per layer: two norms in and out plus two residual adds over the hidden state
  const replicated = 6 * m.hidden * m.layers;
  const attnAct =
    m.mla !== undefined
      ? m.heads * (m.mla.nopeHeadDim + m.mla.ropeHeadDim + m.mla.vHeadDim) + m.mla.kvLoraRank + m.mla.ropeHeadDim + m.heads * m.mla.vHeadDim
      : (m.heads + 2 * m.kvHeads) * m.headDim + m.heads * m.headDim;
  // gated FFN: gate and up outputs, then the activation's output
  const denseFfnAct = (mats === 3 ? 3 : 2) * m.ffn;
  // MoE: each token's copies are scattered to its k experts and gathered back (none needed when
  // every expert takes every token)
  const dispatch = moe === undefined || active >= routed ? 0 : 2 * active * m.hidden;
  const moeAct = moe === undefined ? 0 : (mats === 3 ? 3 : 2) * (active * moe.expertFfn + sharedFfn) + dispatch;
  const split = attnAct * m.layers + denseFfnAct * denseFfnLayers + moeAct * moeLayers;
  return {
    totalParams: tables + attn + denseFfn + shared + routed * expertParams,
    activeParams: tables + attn + denseFfn + shared + active * expertParams,
    embeddingParams: embedding,
    denseReadParams: denseRead,
    expertParams,
    routedExperts: routed,
    activeRoutedExperts: active,
    moeLayers,
    linearFlopsPerToken: 2 * (denseRead + active * expertParams),
    attnFlopsPerPairDecode: pairDecode * m.layers,
    attnFlopsPerPairPrefill: pairPrefill * m.layers,
    kvElementsPerToken: kvElements,
    activationElementsReplicated: replicated,
    activationElementsSplit: split,
  };
}

interface DenseShape {
  id: string;
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  contextLength: number;
  source: string;
  headDim?: number;
  tiedEmbeddings?: boolean;
}

function dense(s: DenseShape): ModelSpec {
  return {
    id: s.id,
    name: s.name,
    layers: s.layers,
    hidden: s.hidden,
    heads: s.heads,
    kvHeads: s.kvHeads,
    headDim: s.headDim ?? s.hidden / s.heads,
    ffn: s.ffn,
    vocab: s.vocab,
    tiedEmbeddings: s.tiedEmbeddings ?? false,
    gatedFfn: true,
    contextLength: s.contextLength,
    source: s.source,
  };
}

export const MODELS: readonly ModelSpec[] = [
  // meta-llama/Llama-2-70b-hf config.json
  dense({ id: "llama-2-70b", name: "Llama-2-70B", layers: 80, hidden: 8192, heads: 64, kvHeads: 8, ffn: 28672, vocab: 32000, contextLength: 4096, source: "meta-llama/Llama-2-70b-hf config.json" }),
  // meta-llama/Llama-2-7b-hf config.json (multi-head attention: 32 KV heads)
  dense({ id: "llama-2-7b", name: "Llama-2-7B", layers: 32, hidden: 4096, heads: 32, kvHeads: 32, ffn: 11008, vocab: 32000, contextLength: 4096, source: "meta-llama/Llama-2-7b-hf config.json" }),
  // LLaMA-1 7B (Touvron et al. 2023, table 2): same shape as Llama-2-7B, 2k context
  dense({ id: "llama-7b", name: "LLaMA-7B", layers: 32, hidden: 4096, heads: 32, kvHeads: 32, ffn: 11008, vocab: 32000, contextLength: 2048, source: "LLaMA paper (arXiv 2302.13971) table 2" }),
  // meta-llama/Llama-3.1-8B config.json
  dense({ id: "llama-3.1-8b", name: "Llama-3.1-8B", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 128256, contextLength: 131072, source: "meta-llama/Llama-3.1-8B config.json" }),
  // meta-llama/Llama-3.1-70B config.json (Llama-3.3-70B has the same shape)
  dense({ id: "llama-3.1-70b", name: "Llama-3.1-70B", layers: 80, hidden: 8192, heads: 64, kvHeads: 8, ffn: 28672, vocab: 128256, contextLength: 131072, source: "meta-llama/Llama-3.1-70B config.json" }),
  // meta-llama/Llama-3.1-405B config.json
  dense({ id: "llama-3.1-405b", name: "Llama-3.1-405B", layers: 126, hidden: 16384, heads: 128, kvHeads: 8, ffn: 53248, vocab: 128256, contextLength: 131072, source: "meta-llama/Llama-3.1-405B config.json" }),
  // Qwen/Qwen3-32B config.json (head_dim 128 is not hidden/heads here)
  dense({ id: "qwen3-32b", name: "Qwen3-32B", layers: 64, hidden: 5120, heads: 64, kvHeads: 8, headDim: 128, ffn: 25600, vocab: 151936, contextLength: 40960, source: "Qwen/Qwen3-32B config.json" }),
  // mistralai/Mistral-7B-v0.1 config.json
  dense({ id: "mistral-7b", name: "Mistral-7B", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 32000, contextLength: 32768, source: "mistralai/Mistral-7B-v0.1 config.json" }),
  {
    // mistralai/Mixtral-8x7B-v0.1 config.json
    ...dense({ id: "mixtral-8x7b", name: "Mixtral-8x7B", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 32000, contextLength: 32768, source: "mistralai/Mixtral-8x7B-v0.1 config.json" }),
    moe: { experts: 8, activeExperts: 2, sharedExperts: 0, expertFfn: 14336, denseLayers: 0 },
  },
  {
    // mistralai/Mixtral-8x22B-v0.1 config.json
    ...dense({ id: "mixtral-8x22b", name: "Mixtral-8x22B", layers: 56, hidden: 6144, heads: 48, kvHeads: 8, ffn: 16384, vocab: 32768, contextLength: 65536, source: "mistralai/Mixtral-8x22B-v0.1 config.json" }),
    moe: { experts: 8, activeExperts: 2, sharedExperts: 0, expertFfn: 16384, denseLayers: 0 },
  },
  {
    // Qwen/Qwen3-30B-A3B config.json: 128 experts, 8 active, moe_intermediate_size 768
    ...dense({ id: "qwen3-30b-a3b", name: "Qwen3-30B-A3B", layers: 48, hidden: 2048, heads: 32, kvHeads: 4, headDim: 128, ffn: 6144, vocab: 151936, contextLength: 40960, source: "Qwen/Qwen3-30B-A3B config.json" }),
    moe: { experts: 128, activeExperts: 8, sharedExperts: 0, expertFfn: 768, denseLayers: 0 },
  },
  {
    // Qwen/Qwen3-235B-A22B config.json: 128 experts, 8 active, moe_intermediate_size 1536
    ...dense({ id: "qwen3-235b-a22b", name: "Qwen3-235B-A22B", layers: 94, hidden: 4096, heads: 64, kvHeads: 4, headDim: 128, ffn: 12288, vocab: 151936, contextLength: 40960, source: "Qwen/Qwen3-235B-A22B config.json" }),
    moe: { experts: 128, activeExperts: 8, sharedExperts: 0, expertFfn: 1536, denseLayers: 0 },
  },
  {
    // deepseek-ai/DeepSeek-V3 config.json: 61 layers (first 3 dense, intermediate 18432), 256 routed + 1 shared
    // expert of 2048, top-8; MLA q_lora_rank 1536, kv_lora_rank 512, qk_rope 64, qk_nope 128, v_head 128.
    // (The multi-token-prediction module, 14B, is not counted.)
    ...dense({ id: "deepseek-v3", name: "DeepSeek-V3", layers: 61, hidden: 7168, heads: 128, kvHeads: 128, headDim: 128, ffn: 18432, vocab: 129280, contextLength: 163840, source: "deepseek-ai/DeepSeek-V3 config.json" }),
    moe: { experts: 256, activeExperts: 8, sharedExperts: 1, expertFfn: 2048, denseLayers: 3 },
    mla: { qLoraRank: 1536, kvLoraRank: 512, ropeHeadDim: 64, nopeHeadDim: 128, vHeadDim: 128 },
  },
  // The built-in model `flotilla serve` runs with no other (src/gguf DEFAULT_TINY_SHAPE, a 259-token byte vocabulary,
  // output head written apart): its GGUF metadata reads as this shape, so rows a gateway served it with find it here.
  dense({ id: "flotilla-tiny-random-v1", name: "flotilla-tiny-random-v1", layers: 2, hidden: 64, heads: 4, kvHeads: 2, ffn: 256, vocab: 259, contextLength: 4096, source: "src/gguf/random-llama.ts DEFAULT_TINY_SHAPE" }),
];

/**
 * Other names of the same shape only: another spelling, or a release whose
 * config.json is the same architecture (Llama 3.3 70B is 3.1 70B's; DeepSeek
 * R1 is V3's). A different model is never an alias, however close: Llama 3
 * 70B has an 8K window where 3.1 has 128K, and "mixtral" could be 8x7b or
 * 8x22b; such names are refused with the near ones suggested.
 */
const ALIASES: Readonly<Record<string, string>> = {
  "llama-3.3-70b": "llama-3.1-70b",
  "llama2-70b": "llama-2-70b",
  "llama2-7b": "llama-2-7b",
  "deepseek-r1": "deepseek-v3",
};

export function allModels(): readonly ModelSpec[] {
  return MODELS;
}

export function knownModels(): string[] {
  return MODELS.map((m) => m.id);
}

/** Looks a model up by id or alias, case-insensitively ("-instruct" suffixes are ignored). */
export function findModel(name: string): ModelSpec {
  const key = name.trim().toLowerCase().replace(/-instruct$/, "");
  const id = ALIASES[key] ?? key;
  const m = MODELS.find((s) => s.id === id);
  if (m === undefined) throw new UnknownNameError("model", name, knownModels());
  return m;
}

// ---------------------------------------------------------------------------
// GGUF metadata

/** Reads a dotted key from flat (`{"llama.block_count": 32}`) or nested (node-llama-cpp) metadata. */
function metaValue(meta: Record<string, unknown>, key: string): unknown {
  if (key in meta) return meta[key];
  let node: unknown = meta;
  for (const part of key.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "bigint") return Number(v);
  // per-layer arrays (some architectures vary heads or FFN by layer): take the largest
  if (Array.isArray(v) && v.length > 0) {
    const nums = v.map(asNumber).filter((x): x is number => x !== undefined);
    return nums.length > 0 ? Math.max(...nums) : undefined;
  }
  return undefined;
}

function requireNumber(meta: Record<string, unknown>, key: string): number {
  const v = asNumber(metaValue(meta, key));
  if (v === undefined || v <= 0) throw new Error(`GGUF metadata lacks a positive number at "${key}"`);
  return v;
}

function optionalNumber(meta: Record<string, unknown>, key: string): number | undefined {
  return asNumber(metaValue(meta, key));
}

/**
 * Builds a ModelSpec from GGUF metadata keys (`general.architecture`,
 * `<arch>.block_count`, `<arch>.embedding_length`, `<arch>.attention.head_count`,
 * `<arch>.attention.head_count_kv`, `<arch>.feed_forward_length`,
 * `<arch>.expert_count`, `<arch>.expert_used_count`, `<arch>.context_length`,
 * the tokenizer's token list...). Accepts node-llama-cpp's nested `metadata`
 * object or a flat record of dotted keys. Pure: the caller reads the file.
 * GGUF does not say whether the output head is tied; it is taken as untied.
 */
export function modelSpecFromGguf(metadata: Record<string, unknown>, opts: { id?: string } = {}): ModelSpec {
  const archRaw = metaValue(metadata, "general.architecture");
  if (typeof archRaw !== "string" || archRaw === "") throw new Error('GGUF metadata lacks "general.architecture"');
  const a = archRaw;
  const layers = requireNumber(metadata, `${a}.block_count`);
  const hidden = requireNumber(metadata, `${a}.embedding_length`);
  const heads = requireNumber(metadata, `${a}.attention.head_count`);
  const kvHeads = optionalNumber(metadata, `${a}.attention.head_count_kv`) ?? heads;
  const keyLength = optionalNumber(metadata, `${a}.attention.key_length`);
  const valueLength = optionalNumber(metadata, `${a}.attention.value_length`);
  const expertCount = optionalNumber(metadata, `${a}.expert_count`) ?? 0;
  const expertUsed = optionalNumber(metadata, `${a}.expert_used_count`) ?? 0;
  const expertFfn = optionalNumber(metadata, `${a}.expert_feed_forward_length`);
  const ffnRaw = optionalNumber(metadata, `${a}.feed_forward_length`);
  const ffn = ffnRaw ?? expertFfn;
  if (ffn === undefined) throw new Error(`GGUF metadata lacks "${a}.feed_forward_length"`);
  const tokens = metaValue(metadata, "tokenizer.ggml.tokens");
  const vocab =
    optionalNumber(metadata, `${a}.vocab_size`) ??
    (Array.isArray(tokens) ? tokens.length : undefined) ??
    optionalNumber(metadata, "tokenizer.ggml.token_count");
  if (vocab === undefined) throw new Error(`GGUF metadata gives no vocabulary size ("${a}.vocab_size" or tokenizer.ggml.tokens)`);
  const contextLength = optionalNumber(metadata, `${a}.context_length`) ?? 4096;
  const nameRaw = metaValue(metadata, "general.name");
  const name = typeof nameRaw === "string" && nameRaw !== "" ? nameRaw : a;
  const id = opts.id ?? slug(name);

  let mla: MlaSpec | undefined;
  const kvLora = optionalNumber(metadata, `${a}.attention.kv_lora_rank`);
  let headDim = keyLength ?? hidden / heads;
  if (kvLora !== undefined && kvLora > 0) {
    const rope = optionalNumber(metadata, `${a}.rope.dimension_count`) ?? 64;
    // Newer llama.cpp conversions store the absorbed shapes in key/value_length and the
    // per-head ones in key_length_mla/value_length_mla.
    const qk = optionalNumber(metadata, `${a}.attention.key_length_mla`) ?? keyLength ?? 192;
    const v = optionalNumber(metadata, `${a}.attention.value_length_mla`) ?? valueLength ?? 128;
    mla = { qLoraRank: optionalNumber(metadata, `${a}.attention.q_lora_rank`) ?? 0, kvLoraRank: kvLora, ropeHeadDim: rope, nopeHeadDim: qk - rope, vHeadDim: v };
    headDim = qk;
  }

  let moe: MoeSpec | undefined;
  if (expertCount > 1 && expertUsed > 0) {
    const shared = optionalNumber(metadata, `${a}.expert_shared_count`) ?? 0;
    const sharedFfn = optionalNumber(metadata, `${a}.expert_shared_feed_forward_length`);
    const perExpert = expertFfn ?? ffn;
    moe = {
      experts: expertCount,
      activeExperts: expertUsed,
      sharedExperts: shared,
      expertFfn: perExpert,
      denseLayers: optionalNumber(metadata, `${a}.leading_dense_block_count`) ?? 0,
      ...(sharedFfn !== undefined ? { sharedFfn: sharedFfn * Math.max(1, shared) } : {}),
    };
  }

  return {
    id,
    name,
    layers,
    hidden,
    heads,
    kvHeads,
    headDim,
    ffn,
    vocab,
    tiedEmbeddings: false,
    gatedFfn: true,
    contextLength,
    ...(moe !== undefined ? { moe } : {}),
    ...(mla !== undefined ? { mla } : {}),
    source: `GGUF metadata (${a})`,
  };
}

function slug(s: string): string {
  const out = s.toLowerCase().replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "");
  return out === "" ? "gguf-model" : out;
}
