/**
 * Number formats: how many bytes a weight occupies, which matrix unit rate the
 * arithmetic runs at, and the default KV-cache format that goes with them.
 */
import { UnknownNameError } from "./errors.js";

/** The matrix-unit rates a device may publish. */
export type ComputeFormat = "bf16" | "fp8" | "fp4";
/** KV-cache element formats. */
export type KvFormat = "bf16" | "fp8";

export interface PrecisionSpec {
  /** Canonical lower-case id, e.g. "bf16", "fp8", "q4_k_m". */
  readonly id: string;
  readonly label: string;
  /** Average bytes per weight, including block scales. */
  readonly bytesPerWeight: number;
  /** The matrix rate the arithmetic wants (falls back to a slower one where the device lacks it). */
  readonly compute: ComputeFormat;
  /** The KV-cache format engines use with these weights by default. */
  readonly kv: KvFormat;
  /** "gguf" formats are llama.cpp's block quantizations. */
  readonly family: "float" | "gguf";
  readonly source: string;
}

/** Bytes per element of a KV-cache format. */
export const KV_BYTES: Readonly<Record<KvFormat, number>> = { bf16: 2, fp8: 1 };

function gguf(id: string, label: string, bitsPerWeight: number, source: string): PrecisionSpec {
  return { id, label, bytesPerWeight: bitsPerWeight / 8, compute: "bf16", kv: "bf16", family: "gguf", source };
}

const GGML = "ggml block layout (ggml-common.h)";

export const PRECISIONS: readonly PrecisionSpec[] = [
  { id: "bf16", label: "BF16", bytesPerWeight: 2, compute: "bf16", kv: "bf16", family: "float", source: "16-bit float" },
  { id: "fp8", label: "FP8 (E4M3)", bytesPerWeight: 1, compute: "fp8", kv: "fp8", family: "float", source: "8-bit float; FP8 KV cache as TRT-LLM sets with FP8 quantization" },
  // NVFP4: 4-bit E2M1 values plus one FP8 (E4M3) scale per 16 values = 4.5 bits (NVIDIA Blackwell NVFP4 format).
  // KV stays FP8, as in NVIDIA's FP4 checkpoints (nvidia/Llama-3.3-70B-Instruct-FP4).
  { id: "fp4", label: "FP4 (NVFP4, block-scaled)", bytesPerWeight: 4.5 / 8, compute: "fp4", kv: "fp8", family: "float", source: "NVFP4: E2M1 + E4M3 scale per 16 values" },
  // MXFP4 (OCP microscaling): E2M1 plus one E8M0 scale per 32 values = 4.25 bits.
  { id: "mxfp4", label: "MXFP4 (block-scaled)", bytesPerWeight: 4.25 / 8, compute: "fp4", kv: "fp8", family: "float", source: "OCP Microscaling spec v1.0" },
  gguf("f32", "GGUF F32", 32, GGML),
  gguf("f16", "GGUF F16", 16, GGML),
  gguf("q8_0", "GGUF Q8_0", 8.5, `${GGML}: 32 int8 + fp16 scale = 34 B / 32`),
  gguf("q6_k", "GGUF Q6_K", 6.5625, `${GGML}: 210 B / 256`),
  gguf("q5_1", "GGUF Q5_1", 6, `${GGML}: 24 B / 32`),
  gguf("q5_0", "GGUF Q5_0", 5.5, `${GGML}: 22 B / 32`),
  gguf("q5_k", "GGUF Q5_K", 5.5, `${GGML}: 176 B / 256`),
  // Mixed files: _M variants keep some tensors (attn_v, ffn_down halves, output) at Q6_K; figures are
  // file size / parameter count for Llama-2-7B in llama.cpp's quantize README table (approximate).
  gguf("q5_k_m", "GGUF Q5_K_M", 5.68, "llama.cpp quantize table (file bits per weight, approx.)"),
  gguf("q4_1", "GGUF Q4_1", 5, `${GGML}: 20 B / 32`),
  gguf("q4_k_m", "GGUF Q4_K_M", 4.85, "llama.cpp quantize table (file bits per weight, approx.)"),
  gguf("q4_k", "GGUF Q4_K", 4.5, `${GGML}: 144 B / 256`),
  gguf("q4_k_s", "GGUF Q4_K_S", 4.58, "llama.cpp quantize table (file bits per weight, approx.)"),
  gguf("q4_0", "GGUF Q4_0", 4.5, `${GGML}: 16 B nibbles + fp16 scale = 18 B / 32`),
  gguf("iq4_xs", "GGUF IQ4_XS", 4.25, `${GGML}: 136 B / 256`),
  gguf("q3_k", "GGUF Q3_K", 3.4375, `${GGML}: 110 B / 256`),
  gguf("q2_k", "GGUF Q2_K", 2.625, `${GGML}: 84 B / 256`),
];

const ALIASES: Readonly<Record<string, string>> = {
  fp16: "bf16",
  float16: "bf16",
  bfloat16: "bf16",
  half: "bf16",
  e4m3: "fp8",
  float8: "fp8",
  nvfp4: "fp4",
  q8: "q8_0",
  q4: "q4_0",
  q6: "q6_k",
  "q4_k_l": "q4_k_m",
};

const BY_ID = new Map(PRECISIONS.map((p) => [p.id, p]));

/** Canonical ids, for error messages and `flotilla catalog`. */
export function knownPrecisions(): string[] {
  return [...PRECISIONS.map((p) => p.id), ...Object.keys(ALIASES).filter((a) => a === "fp16")];
}

/** Looks a precision up by id or alias, case-insensitively; GGUF names like "Q4_K_M" or "q4-k-m" work. */
export function findPrecision(name: string): PrecisionSpec {
  const key = name.trim().toLowerCase().replace(/-/g, "_");
  const spec = BY_ID.get(ALIASES[key] ?? key);
  if (spec === undefined) throw new UnknownNameError("precision", name, knownPrecisions());
  return spec;
}

/** GGUF `general.file_type` codes (llama.cpp's LLAMA_FTYPE enum) to a precision id. */
const GGUF_FILE_TYPES: Readonly<Record<number, string>> = {
  0: "f32",
  1: "f16",
  2: "q4_0",
  3: "q4_1",
  7: "q8_0",
  8: "q5_0",
  9: "q5_1",
  10: "q2_k",
  11: "q3_k",
  12: "q3_k",
  13: "q3_k",
  14: "q4_k_s",
  15: "q4_k_m",
  16: "q5_k",
  17: "q5_k_m",
  18: "q6_k",
  30: "iq4_xs",
  32: "bf16",
  38: "mxfp4",
  39: "fp4",
};

/** The precision a GGUF file's `general.file_type` stands for, or undefined for an unlisted code. */
export function precisionFromGgufFileType(fileType: number): PrecisionSpec | undefined {
  const id = GGUF_FILE_TYPES[fileType];
  return id === undefined ? undefined : BY_ID.get(id);
}
