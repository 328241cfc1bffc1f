/**
 * `flotilla sim`: replay a trace (or synthetic load) through the production
 * router over a simulated fleet, and write the report.
 *
 *   flotilla sim --trace ../shared/data/traces/mooncake_conversation.jsonl --hw h100 --replicas 16 --model llama-3.1-70b --precision fp8 --tp 2 --out out/
 *   flotilla sim --trace trace.csv --fleet fleet.yaml --rate-scale 4 --json
 *   flotilla sim --synthetic --requests 100000 --rate 500 --hw h100 --replicas 100 --model llama-3.1-8b
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { policies } from "../scheduler/policies.js";
import { renderCharts } from "../sim/charts.js";
import { explainDecision, type DecisionListener } from "../scheduler/decision.js";
import { FleetFileError, resolveSimFleet, type SimFleet } from "../sim/fleet-file.js";
import { renderMarkdown, renderSummary } from "../sim/markdown.js";
import type { ProgressStream } from "../sim/progress.js";
import { progressBar } from "../sim/progress.js";
import { buildReport, reportJson, requestsCsv } from "../sim/report.js";
import type { SimReport } from "../sim/report.js";
import { simulate } from "../sim/simulator.js";
import type { ArrivalProcess } from "../sim/synthetic.js";
import { syntheticTrace, withSyntheticPrefixes } from "../sim/synthetic.js";
import type { Trace, TraceFormat } from "../sim/traces.js";
import { TraceError, limitDuration, loadTrace, scaleRate, truncateTrace } from "../sim/traces.js";

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
}

export interface SimIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: ProgressStream;
}

/** Files `--out` writes. */
export const OUTPUT_FILES = ["report.json", "report.md", "ttft.svg", "timeline.svg", "replicas.svg", "requests.csv"] as const;

/** A mistake in what the user gave (names, files, values): exit code 2. */
export class SimUsageError extends Error {
  override readonly name = "SimUsageError";
}

function num(name: string, opts: { min?: number; int?: boolean; gt?: number } = {}): (v: string) => number {
  return (v) => {
    const x = Number(v);
    if (v.trim() === "" || !Number.isFinite(x)) throw new InvalidArgumentError(`${name} must be a number`);
    if (opts.int === true && !Number.isInteger(x)) throw new InvalidArgumentError(`${name} must be an integer`);
    if (opts.min !== undefined && x < opts.min) throw new InvalidArgumentError(`${name} must be >= ${opts.min}`);
    if (opts.gt !== undefined && !(x > opts.gt)) throw new InvalidArgumentError(`${name} must be > ${opts.gt}`);
    return x;
  };
}

function choice<T extends string>(name: string, values: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(", ")}`);
    return v as T;
  };
}

export function registerSimCommand(program: Command, io: SimIo = { stdout: process.stdout, stderr: process.stderr }): void {
  program
    .command("sim")
    .description("replay a trace through the real router over simulated accelerators, in virtual time")
    .option("--trace <path>", "request trace: Mooncake JSONL or Azure CSV")
    .option("--format <format>", "trace format when the extension does not say: mooncake or azure", choice("--format", ["mooncake", "azure"] as const))
    .option("--fleet <file>", "fleet file (YAML): islands, router, SLOs, failures")
    .option("--hw <name>", "without --fleet: hardware of every replica (default h100)")
    .option("--replicas <n>", "without --fleet: number of replicas (default 1)", num("--replicas", { int: true, min: 1 }))
    .option("--model <name>", "without --fleet: the model every replica serves")
    .option("--precision <name>", "without --fleet: weight precision (default bf16)")
    .option("--tp <n>", "without --fleet: devices per replica (default: smallest that fits)", num("--tp", { int: true, min: 1 }))
    .option("--max-batch <n>", "without --fleet: sequences per replica at once (default 256)", num("--max-batch", { int: true, min: 1 }))
    .option("--policy <name>", `routing policy: ${Object.keys(policies).join(", ")}`)
    .option("--sample <k>", "candidates drawn per decision in larger fleets (default 16)", num("--sample", { int: true, min: 1 }))
    .option("--rate-scale <x>", "replay the trace x times faster", num("--rate-scale", { gt: 0 }))
    .option("--truncate <n>", "only the first n requests", num("--truncate", { int: true, min: 1 }))
    .option("--duration <s>", "only requests arriving in the first s seconds (after --rate-scale)", num("--duration", { gt: 0 }))
    .option("--synthetic", "generate load instead of reading a trace")
    .option("--requests <n>", "synthetic: number of requests (default 1000)", num("--requests", { int: true, min: 1 }))
    .option("--rate <r>", "synthetic: mean arrivals per second (default 10)", num("--rate", { gt: 0 }))
    .option("--arrival <process>", "synthetic: poisson, bursty or uniform (default poisson)", choice("--arrival", ["poisson", "bursty", "uniform"] as const))
    .option("--burstiness <cv>", "synthetic bursty: coefficient of variation of gaps (default 3)", num("--burstiness", { gt: 0 }))
    .option("--input-tokens <n>", "synthetic: mean prompt tokens (default 1024)", num("--input-tokens", { min: 1 }))
    .option("--input-cv <cv>", "synthetic: prompt length spread, 0 fixed (default 1)", num("--input-cv", { min: 0 }))
    .option("--output-tokens <n>", "synthetic: mean output tokens (default 128)", num("--output-tokens", { min: 1 }))
    .option("--output-cv <cv>", "synthetic: output length spread, 0 fixed (default 1)", num("--output-cv", { min: 0 }))
    .option("--prefix-groups <g>", "shared prompt prefixes (synthetic, or added to a trace without block hashes)", num("--prefix-groups", { int: true, min: 0 }))
    .option("--prefix-tokens <n>", "tokens of each shared prefix (default 2048)", num("--prefix-tokens", { int: true, min: 0 }))
    .option("--prefix-share <f>", "share of requests starting with a shared prefix (default 1)", num("--prefix-share", { min: 0 }))
    .option("--mtbf <s>", "mean time between failures of a replica, seconds", num("--mtbf", { gt: 0 }))
    .option("--repair <s>", "mean repair time, seconds (default 600)", num("--repair", { gt: 0 }))
    .option("--ttft-slo <ms>", "goodput SLO on time to first token (default 2000)", num("--ttft-slo", { gt: 0 }))
    .option("--tpot-slo <ms>", "goodput SLO on time per output token (default 100)", num("--tpot-slo", { gt: 0 }))
    .option("--block-tokens <n>", "prefix-cache block size in tokens (default 512)", num("--block-tokens", { int: true, min: 1 }))
    .option("--host-kv-gb <gb>", "host-memory KV tier per GPU, GB, for every island (default 256; 0: none)", num("--host-kv-gb", { min: 0 }))
    .option("--no-chunked-prefill", "prefill whole prompts in their own passes")
    .option("--seed <n>", "random seed (default 1)", num("--seed", { int: true }))
    .option("--json", "print the report as JSON on stdout")
    .option("--out <dir>", `write ${OUTPUT_FILES.join(", ")} into this folder`)
    .option("--no-progress", "no progress bar")
    .option("--explain <n>", "print the first n routing decisions: candidates, each scorer's score, the choice, each plugin's time", num("--explain", { int: true, min: 1 }))
    .action(async (opts: SimOptions, cmd: Command) => {
      try {
        await runSim(opts, io);
      } catch (err) {
        if (err instanceof SimUsageError || err instanceof FleetFileError || err instanceof TraceError) {
          cmd.error(`flotilla sim: ${err.message}`, { exitCode: 2, code: "flotilla.sim.usage" });
        }
        throw err;
      }
    });
}

/** The raw fleet-file object, from the file or from the shortcuts, with command-line overrides applied. */
async function rawFleet(opts: SimOptions): Promise<{ raw: Record<string, unknown>; source: string }> {
  let raw: Record<string, unknown>;
  let source: string;
  if (opts.fleet !== undefined) {
    const shortcuts = (["hw", "replicas", "model", "precision", "tp", "maxBatch"] as const).filter((k) => opts[k] !== undefined);
    if (shortcuts.length > 0) throw new SimUsageError(`give either --fleet or the shortcuts (--hw, --replicas, --model, --precision, --tp, --max-batch), not both`);
    const path = resolve(opts.fleet);
    source = opts.fleet;
    const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new SimUsageError(`cannot read fleet file ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
    });
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      if (err instanceof YAMLParseError) throw new FleetFileError(`${source}:${err.linePos?.[0]?.line ?? "?"}: not valid YAML: ${err.message.split("\n")[0]}`);
      throw err;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new FleetFileError(`${source}: expected a mapping with "islands"`);
    raw = { ...(parsed as Record<string, unknown>) };
  } else {
    if (opts.model === undefined) throw new SimUsageError("give --fleet FILE, or --model NAME (with --hw, --replicas, --precision, --tp)");
    source = "command line";
    raw = {
      islands: [
        {
          name: "replicas",
          hardware: opts.hw ?? "h100",
          count: opts.replicas ?? 1,
          model: opts.model,
          ...(opts.precision !== undefined ? { precision: opts.precision } : {}),
          ...(opts.tp !== undefined ? { tp: opts.tp } : {}),
          ...(opts.maxBatch !== undefined ? { max_batch: opts.maxBatch } : {}),
        },
      ],
    };
  }
  const section = (key: string): Record<string, unknown> => {
    const v = raw[key];
    const obj = typeof v === "object" && v !== null && !Array.isArray(v) ? { ...(v as Record<string, unknown>) } : {};
    raw[key] = obj;
    return obj;
  };
  if (opts.policy !== undefined) section("router").policy = opts.policy;
  if (opts.sample !== undefined) section("router").sample = opts.sample;
  if (opts.ttftSlo !== undefined) section("slo").ttft_ms = opts.ttftSlo;
  if (opts.tpotSlo !== undefined) section("slo").tpot_ms = opts.tpotSlo;
  if (opts.mtbf !== undefined) section("failures").mtbf_s = opts.mtbf;
  if (opts.repair !== undefined) section("failures").repair_s = opts.repair;
  if (opts.blockTokens !== undefined) section("engine").block_tokens = opts.blockTokens;
  if (opts.chunkedPrefill === false) section("engine").chunked_prefill = false;
  if (opts.hostKvGb !== undefined && Array.isArray(raw.islands)) {
    raw.islands = raw.islands.map((isl: unknown) => (typeof isl === "object" && isl !== null ? { ...isl, host_kv_gb: opts.hostKvGb } : isl));
  }
  if (opts.seed !== undefined) raw.seed = opts.seed;
  return { raw, source };
}

async function buildTrace(opts: SimOptions, blockTokens: number, seed: number): Promise<Trace> {
  let trace: Trace;
  const prefix =
    opts.prefixGroups !== undefined && opts.prefixGroups > 0
      ? { groups: opts.prefixGroups, prefixTokens: opts.prefixTokens ?? 2048, share: opts.prefixShare ?? 1, blockTokens, seed: seed + 1 }
      : undefined;
  if (opts.prefixShare !== undefined && opts.prefixShare > 1) throw new SimUsageError("--prefix-share must be between 0 and 1");
  if (opts.synthetic === true) {
    if (opts.trace !== undefined) throw new SimUsageError("give either --trace or --synthetic, not both");
    trace = syntheticTrace({
      requests: opts.requests ?? 1000,
      ratePerS: opts.rate ?? 10,
      arrival: opts.arrival ?? "poisson",
      ...(opts.burstiness !== undefined ? { burstiness: opts.burstiness } : {}),
      input: { mean: opts.inputTokens ?? 1024, cv: opts.inputCv ?? 1, min: 1, max: 32_768 },
      output: { mean: opts.outputTokens ?? 128, cv: opts.outputCv ?? 1, min: 1, max: 4096 },
      ...(prefix !== undefined ? { prefix } : {}),
      seed,
    });
  } else {
    if (opts.trace === undefined) throw new SimUsageError("give --trace PATH (Mooncake JSONL or Azure CSV), or --synthetic");
    trace = await loadTrace(resolve(opts.trace), opts.format);
    if (prefix !== undefined) {
      if (trace.blockTokens !== 0) throw new SimUsageError(`${trace.name} has its own prefix blocks; --prefix-groups is for traces without them`);
      trace = withSyntheticPrefixes(trace, prefix);
    }
  }
  if (opts.rateScale !== undefined) trace = scaleRate(trace, opts.rateScale);
  if (opts.duration !== undefined) trace = limitDuration(trace, opts.duration * 1000);
  if (opts.truncate !== undefined) trace = truncateTrace(trace, opts.truncate);
  return trace;
}

/** Prints the first `n` decisions, one JSON line each (on stderr with --json, so stdout stays one document). */
function decisionPrinter(fleet: SimFleet, n: number, out: { write(s: string): unknown }): DecisionListener {
  const names = fleet.islands.flatMap((isl) => Array.from({ length: isl.count }, (_, j) => `${isl.name}/${j}`));
  let heard = 0;
  return (d) => {
    if (heard++ >= n) return;
    out.write(`${JSON.stringify({ decision: heard, at_ms: Math.round(d.atMs * 1000) / 1000, prompt_tokens: d.promptTokens, max_tokens: d.maxTokens, ...explainDecision(d, names) })}\n`);
  };
}

/** Runs the command: simulate, then print and write the report. Returns the report. */
export async function runSim(opts: SimOptions, io: SimIo): Promise<SimReport> {
  const { raw, source } = await rawFleet(opts);
  const fleet = resolveSimFleet(raw, source);
  let trace: Trace;
  try {
    trace = await buildTrace(opts, fleet.blockTokens, fleet.seed);
  } catch (err) {
    if (err instanceof RangeError) throw new SimUsageError(err.message);
    throw err;
  }
  if (trace.blockTokens !== 0 && trace.blockTokens !== fleet.blockTokens) {
    throw new SimUsageError(`the trace's prefix blocks are ${trace.blockTokens} tokens but the cache's are ${fleet.blockTokens}; use --block-tokens ${trace.blockTokens} (or engine.block_tokens in the fleet file)`);
  }
  const bar = opts.progress === false ? undefined : progressBar(io.stderr);
  const explained = opts.explain === undefined ? undefined : decisionPrinter(fleet, opts.explain, opts.json === true ? io.stderr : io.stdout);
  const result = simulate({
    fleet,
    trace,
    ...(bar !== undefined ? { onProgress: (p) => bar.update(p) } : {}),
    ...(explained !== undefined ? { onDecision: explained } : {}),
  });
  if (bar !== undefined) {
    bar.done({ resolved: trace.count - result.unfinished, total: trace.count, simMs: result.endMs, events: result.events, wallMs: result.wallMs });
  }
  const report = buildReport(result);
  if (opts.out !== undefined) {
    const dir = resolve(opts.out);
    await mkdir(dir, { recursive: true });
    const charts = renderCharts(result, report);
    const md = renderMarkdown(report, { charts: { ttft: "ttft.svg", timeline: "timeline.svg", replicas: "replicas.svg" } });
    await Promise.all([
      writeFile(resolve(dir, "report.json"), reportJson(report)),
      writeFile(resolve(dir, "report.md"), md),
      writeFile(resolve(dir, "requests.csv"), requestsCsv(result)),
      ...Object.entries(charts).map(([name, svg]) => writeFile(resolve(dir, name), svg)),
    ]);
  }
  if (opts.json === true) io.stdout.write(reportJson(report));
  else {
    io.stdout.write(`${renderSummary(report)}\n`);
    if (opts.out !== undefined) io.stdout.write(`report written to ${resolve(opts.out)}/ (${OUTPUT_FILES.join(", ")})\n`);
  }
  return report;
}
