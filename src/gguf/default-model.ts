/**
 * The model `flotilla serve` runs when given none: a tiny random llama,
 * written on first use into a cache directory and reused afterwards.
 */
import { randomUUID } from "node:crypto";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { DEFAULT_TINY_SHAPE, randomLlamaFileSize, writeRandomLlama, type RandomLlamaOptions } from "./random-llama.js";

/**
 * The version in the name is the recipe's: any change to the shape, the
 * options or the generator's output must bump it, so a cache written by an
 * older Flotilla is never mistaken for the new model.
 */
export const DEFAULT_MODEL_FILE = "flotilla-tiny-random-v1.gguf";

export const DEFAULT_MODEL_OPTIONS: RandomLlamaOptions = {
  type: "f32",
  seed: 7,
  name: "flotilla-tiny-random-v1",
};

/** `$FLOTILLA_HOME`, else `~/.cache/flotilla`. */
export function defaultCacheDir(): string {
  const home = process.env["FLOTILLA_HOME"];
  return home !== undefined && home !== "" ? home : join(homedir(), ".cache", "flotilla");
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Returns the default model's path, writing it first if it is missing or has
 * the wrong size. The file is written under a unique temporary name in the
 * same directory and renamed into place (atomic on one filesystem), so a crash
 * never leaves a partial model under the real name, and concurrent callers,
 * each renaming its own complete copy of identical bytes, all end with a valid
 * file.
 */
export async function ensureDefaultModel(cacheDir: string = defaultCacheDir()): Promise<{ path: string; created: boolean }> {
  const path = join(cacheDir, DEFAULT_MODEL_FILE);
  // The size is computed from the recipe without generating weights; a file of another size is a stale or foreign one.
  if ((await sizeOf(path)) === randomLlamaFileSize(DEFAULT_TINY_SHAPE, DEFAULT_MODEL_OPTIONS)) {
    return { path, created: false };
  }
  await mkdir(cacheDir, { recursive: true });
  const temp = join(cacheDir, `.${DEFAULT_MODEL_FILE}.${process.pid}.${randomUUID()}.tmp`);
  try {
    await writeRandomLlama(temp, DEFAULT_TINY_SHAPE, { ...DEFAULT_MODEL_OPTIONS, sync: true });
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return { path, created: true };
}
