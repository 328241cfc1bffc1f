/**
 * `flotilla sim`: replay a trace (or synthetic load) through the production
 * router over a simulated fleet, and write the report.
 *
 *   flotilla sim --trace ../shared/data/traces/mooncake_conversation.jsonl --hw h100 --replicas 16 --model llama-3.1-70b --precision fp8 --tp 2 --out out/
 *   flotilla sim --trace trace.csv --fleet fleet.yaml --rate-scale 4 --json
 *   flotilla sim --synthetic --requests 100000 --rate 500 --hw h100 --replicas 100 --model llama-3.1-8b
 *
 * Only the command's definition lives here; the simulator and its reports
 * load when the command runs (sim-run.ts), so `flotilla --help` does not
 * pay for them.
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { policies } from "../scheduler/policies.js";
import type { ProgressStream } from "../sim/progress.js";
import type { ArrivalProcess } from "../sim/synthetic.js";
import type { TraceFormat } from "../sim/traces.js";

export interface SimOptions {
  explain?: number;
  trace?: string;
  format?: TraceFormat;
  fleet?: string;
  hw?: string;
  replicas?: number;
  model?: string;
  precision?: string;
  tp?: number;
  maxBatch?: number;
  policy?: string;
  sample?: number;
  rateScale?: number;
  peakToTrough?: number;
  diurnalPeriod?: number;
  truncate?: number;
  duration?: number;
  synthetic?: boolean;
  requests?: number;
  rate?: number;
  arrival?: ArrivalProcess;
  burstiness?: number;
  inputTokens?: number;
  inputCv?: number;
  outputTokens?: number;
  outputCv?: number;
  prefixGroups?: number;
  prefixTokens?: number;
  prefixShare?: number;
  mtbf?: number;
  repair?: number;
  ttftSlo?: number;
  tpotSlo?: number;
  blockTokens?: number;
  hostKvGb?: number;
  chunkedPrefill?: boolean;
  seed?: number;
  json?: boolean;
  out?: string;
  progress?: boolean;
  profile?: string;
}

export interface SimIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: ProgressStream;
}

/** Files `--out` writes. */
export const OUTPUT_FILES = ["report.json", "report.md", "ttft.svg", "timeline.svg", "replicas.svg", "requests.csv"] as const;

export function num(name: string, opts: { min?: number; int?: boolean; gt?: number } = {}): (v: string) => number {
  return (v) => {
    const x = Number(v);
    if (v.trim() === "" || !Number.isFinite(x)) throw new InvalidArgumentError(`${name} must be a number`);
    if (opts.int === true && !Number.isInteger(x)) throw new InvalidArgumentError(`${name} must be an integer`);
    if (opts.min !== undefined && x < opts.min) throw new InvalidArgumentError(`${name} must be >= ${opts.min}`);
    if (opts.gt !== undefined && !(x > opts.gt)) throw new InvalidArgumentError(`${name} must be > ${opts.gt}`);
    return x;
  };
}

export function choice<T extends string>(name: string, values: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(", ")}`);
    return v as T;
  };
}

/** The workload options `sim` and `plan` share: a trace and how much of it, or synthetic load. */
export function workloadOptions(command: Command): Command {
  return (
    command
      .option("--trace <path>", "request trace: Mooncake JSONL or Azure CSV")
      .option("--format <format>", "trace format when the extension does not say: mooncake or azure", choice("--format", ["mooncake", "azure"] as const))
      .option("--rate-scale <x>", "replay the trace x times faster", num("--rate-scale", { gt: 0 }))
      .option("--peak-to-trough <r>", "arrivals along a daily curve whose busiest moment is r times its quietest, the mean kept", num("--peak-to-trough", { min: 1 }))
      .option("--diurnal-period <s>", "the daily curve's period in seconds (default 86400)", num("--diurnal-period", { gt: 0 }))
      .option("--truncate <n>", "only the first n requests", num("--truncate", { int: true, min: 1 }))
      .option("--duration <s>", "only requests arriving in the first s seconds (after --rate-scale)", num("--duration", { gt: 0 }))
      .option("--synthetic", "generate load instead of reading a trace")
      .option("--requests <n>", "synthetic: number of requests (default 1000)", num("--requests", { int: true, min: 1 }))
      .option("--rate <r>", "synthetic: mean arrivals per second (default 10)", num("--rate", { gt: 0 }))
      .option("--input-tokens <n>", "synthetic: mean prompt tokens (default 1024)", num("--input-tokens", { min: 1 }))
      .option("--input-cv <cv>", "synthetic: prompt length spread, 0 fixed (default 1)", num("--input-cv", { min: 0 }))
      .option("--output-tokens <n>", "synthetic: mean output tokens (default 128)", num("--output-tokens", { min: 1 }))
      .option("--output-cv <cv>", "synthetic: output length spread, 0 fixed (default 1)", num("--output-cv", { min: 0 }))
      .option("--prefix-groups <g>", "shared prompt prefixes (synthetic, or added to a trace without block hashes)", num("--prefix-groups", { int: true, min: 0 }))
      .option("--prefix-tokens <n>", "tokens of each shared prefix (default 2048)", num("--prefix-tokens", { int: true, min: 0 }))
      .option("--prefix-share <f>", "share of requests starting with a shared prefix (default 1)", num("--prefix-share", { min: 0 }))
  );
}

export function registerSimCommand(program: Command, io: SimIo = { stdout: process.stdout, stderr: process.stderr }): void {
  workloadOptions(program.command("sim").description("replay a trace through the real router over simulated accelerators, in virtual time"))
    .option("--fleet <file>", "fleet file (YAML): islands, router, SLOs, failures")
    .option("--hw <name>", "without --fleet: hardware of every replica (default h100)")
    .option("--replicas <n>", "without --fleet: number of replicas (default 1)", num("--replicas", { int: true, min: 1 }))
    .option("--model <name>", "without --fleet: the model every replica serves")
    .option("--precision <name>", "without --fleet: weight precision (default bf16)")
    .option("--tp <n>", "without --fleet: devices per replica (default: smallest that fits)", num("--tp", { int: true, min: 1 }))
    .option("--max-batch <n>", "without --fleet: sequences per replica at once (default 256)", num("--max-batch", { int: true, min: 1 }))
    .option("--policy <name>", `routing policy: ${Object.keys(policies).join(", ")}`)
    .option("--sample <k>", "candidates drawn per decision in larger fleets (default 16)", num("--sample", { int: true, min: 1 }))
    .option("--arrival <process>", "synthetic: poisson, bursty or uniform (default poisson)", choice("--arrival", ["poisson", "bursty", "uniform"] as const))
    .option("--burstiness <cv>", "synthetic bursty: coefficient of variation of gaps (default 3)", num("--burstiness", { gt: 0 }))
    .option("--mtbf <s>", "mean time between failures of a replica, seconds", num("--mtbf", { gt: 0 }))
    .option("--repair <s>", "mean repair time, seconds (default 600)", num("--repair", { gt: 0 }))
    .option("--ttft-slo <ms>", "goodput SLO on time to first token (default 2000)", num("--ttft-slo", { gt: 0 }))
    .option("--tpot-slo <ms>", "goodput SLO on time per output token (default 100)", num("--tpot-slo", { gt: 0 }))
    .option("--block-tokens <n>", "prefix-cache block size in tokens (default 512)", num("--block-tokens", { int: true, min: 1 }))
    .option("--host-kv-gb <gb>", "host-memory KV tier per GPU, GB, for every island (default 256; 0: none)", num("--host-kv-gb", { min: 0 }))
    .option("--no-chunked-prefill", "prefill whole prompts in their own passes")
    .option("--profile <file>", "engine profile (`flotilla calibrate --out`) for every island without its own profile:")
    .option("--seed <n>", "random seed (default 1)", num("--seed", { int: true }))
    .option("--json", "print the report as JSON on stdout")
    .option("--out <dir>", `write ${OUTPUT_FILES.join(", ")} into this folder`)
    .option("--no-progress", "no progress bar")
    .option("--explain <n>", "print the first n routing decisions: candidates, each scorer's score, the choice, each plugin's time", num("--explain", { int: true, min: 1 }))
    .action(async (opts: SimOptions, cmd: Command) => {
      const { runSim, isUsageError } = await import("./sim-run.js");
      try {
        await runSim(opts, io);
      } catch (err) {
        if (isUsageError(err)) cmd.error(`flotilla sim: ${err.message}`, { exitCode: 2, code: "flotilla.sim.usage" });
        throw err;
      }
    });
}

