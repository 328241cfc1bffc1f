/**
 * `flotilla serve`'s definition. The gateway, engines and stores load when
 * the command runs (serve-run.ts), so `flotilla --help` does not pay for them.
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { knownPolicies } from "../scheduler/policies.js";

export interface ServeOptions {
  model?: string;
  config?: string;
  port?: number;
  host?: string;
  parallel?: number;
  context?: number;
  policy?: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  logPrompts?: boolean;
  simReport?: string[];
}

export const DEFAULT_PORT = 8080;
export const DEFAULT_HOST = "127.0.0.1";

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve models behind an OpenAI-compatible API (with no options: a built-in tiny model)")
    .option("-m, --model <path>", "serve one GGUF file with the local engine")
    .option("-c, --config <file>", "serve the fleet described in a YAML fleet file")
    .option("-p, --port <n>", `port to listen on (default ${DEFAULT_PORT})`, intArg("port", 0, 65535))
    .option("--host <addr>", `address to bind (default ${DEFAULT_HOST})`)
    .option("--parallel <n>", "sequences generated at once per local replica (with --model)", intArg("parallel", 1, 256))
    .option("--context <n>", "context window per sequence, in tokens (with --model)", intArg("context", 16, 1 << 20))
    .option("--policy <name>", `routing policy: ${knownPolicies.join(", ")}`)
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent", "warn")
    .option("--log-prompts", "log every prompt (with its request id); off by default, as prompts may be private")
    .option("--sim-report <dir>", "open this `flotilla sim --out` folder in the /ui dashboard (repeatable)", (dir: string, dirs: string[] = []) => [...dirs, dir])
    .action(async (opts: ServeOptions) => {
      // Serving a GGUF file here (the default model, or --model): the llama.cpp runtime loads
      // off the JS thread while the gateway's modules load on it.
      if (opts.config === undefined) await (await import("../engines/local.js")).llamaRuntimeUnderway();
      const { serve } = await import("./serve-run.js");
      await serve(opts);
    });
}

function intArg(name: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}
