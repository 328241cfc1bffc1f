/**
 * Where the repository's files are, and how to start one of its TypeScript
 * entry points, whichever way the tests run: `npm test` compiles src/, test/
 * and bench/ once into .test-build/ and runs plain JavaScript (no loader
 * hooks in any test process or in the processes tests start: 629 -> 406
 * CPU-seconds for the 140 files on a 2-core machine); a single file run by
 * hand (`node --import tsx --test test/x/y.test.ts`) runs from source.
 */
import { resolve } from "node:path";

/** True in the compiled copy under .test-build/. */
export const COMPILED = import.meta.url.endsWith(".js");
/** The repository's root (where package.json is), in either case. */
export const ROOT = resolve(import.meta.dirname, COMPILED ? "../.." : "..");

/** A path from the repository's root: fixtures, docs, examples, ../shared. */
export const repoPath = (...parts: string[]): string => resolve(ROOT, ...parts);

/** The node arguments that run `source` (a .ts path from the root): its compiled copy, or the source through tsx. */
export function script(source: string): string[] {
  return COMPILED ? [resolve(ROOT, ".test-build", source.replace(/\.ts$/, ".js"))] : ["--import", "tsx", resolve(ROOT, source)];
}

/** `flotilla` itself: spawn(process.execPath, [...CLI, "serve", ...]). */
export const CLI = script("src/cli/run.ts");
