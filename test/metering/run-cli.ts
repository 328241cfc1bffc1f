import { buildProgram } from "../../src/cli/main.js";

/**
 * Runs `flotilla ...args` in this process; returns what it printed. It
 * captures all of stdout meanwhile, the test runner's reports too, so a file
 * that uses it holds one test.
 */
export async function flotilla(...args: string[]): Promise<{ out: string; err: string }> {
  let out = "";
  let err = "";
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    await buildProgram().parseAsync(["node", "flotilla", ...args]);
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
  return { out, err };
}
