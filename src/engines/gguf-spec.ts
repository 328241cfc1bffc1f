import { modelSpecFromGguf, precisionFromGgufFileType, type ModelSpec, type PrecisionSpec } from "../hardware/index.js";

/** What a GGUF file's metadata says for the hardware model: the model's shape, and its weights' precision where the file type names one. */
export interface GgufSpec {
  readonly spec: ModelSpec;
  readonly precision: PrecisionSpec | undefined;
}

/**
 * Reads a GGUF file's metadata, not its tensors, through node-llama-cpp,
 * which is loaded only when asked: pricing a fleet file's local replicas
 * and `flotilla estimate --gguf` both need it, most commands never do.
 */
export async function readGgufSpec(path: string): Promise<GgufSpec> {
  const { readGgufFileInfo } = await import("node-llama-cpp");
  const info = await readGgufFileInfo(path, { readTensorInfo: false });
  const meta = info.metadata as unknown as Record<string, unknown>;
  const spec = modelSpecFromGguf(meta);
  const general = meta["general"] as { file_type?: unknown } | undefined;
  const fileType = Number(general?.file_type);
  return { spec, precision: Number.isFinite(fileType) ? precisionFromGgufFileType(fileType) : undefined };
}
