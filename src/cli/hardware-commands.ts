/**
 * `flotilla estimate` and `flotilla catalog`: the hardware model from the
 * command line. Formatting is pure (exported, testable without a process);
 * the action handlers only parse, call hardware/, and write.
 */
import { readFile } from "node:fs/promises";
import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { readGgufSpec } from "../engines/gguf-spec.js";
import {
  PRECISIONS,
  UnknownNameError,
  allHardware,
  allModels,
  estimate,
  findHardware,
  findModel,
  findPrecision,
  kvBytesPerToken,
  modelStats,
  paramsOn,
  smallestFittingTp,
} from "../hardware/index.js";
import type { EngineParams, Estimate, EstimateInput, HardwareSpec, KvFormat, ModelSpec, PrecisionSpec, Pricing } from "../hardware/index.js";

// ---------------------------------------------------------------------------
// number formatting

function group(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Three significant figures, grouped thousands above 1000. */
export function num(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "n/a";
  const a = Math.abs(x);
  if (a >= 1000) return group(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return "0";
  return x.toPrecision(3);
}

function ms(x: number): string {
  return x >= 10_000 ? `${num(x / 1000)} s` : `${num(x)} ms`;
}

function bytes(b: number): string {
  if (b >= 1024 ** 3) return `${num(b / 1024 ** 3)} GiB`;
  if (b >= 1024 ** 2) return `${num(b / 1024 ** 2)} MiB`;
  if (b >= 1024) return `${num(b / 1024)} KiB`;
  return `${num(b)} B`;
}

/** Renders rows as an aligned text table; columns listed in `right` are right-aligned. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

// ---------------------------------------------------------------------------
// estimate output

/** A person-readable report of one estimate. */
export function formatEstimate(e: Estimate): string {
  const title = `${e.model} on ${e.hardware}${e.tp > 1 ? ` x${e.tp} (${e.expertParallel ? "expert" : "tensor"} parallel)` : ""}, ${e.precision} weights, ${e.kvPrecision} KV; ${e.inputTokens} in / ${e.outputTokens} out, batch ${e.batch}`;
  const pairs: [string, string][] = [
    ["weights per device", `${num(e.weightsGiBPerDevice)} GiB`],
    ["KV cache per token", `${bytes(e.kvBytesPerToken)} (whole model)`],
    ["KV capacity", `${group(e.kvCapacityTokens)} tokens = ${group(e.kvMaxBatch)} sequences of ${e.inputTokens + e.outputTokens}`],
    ["TTFT, request alone", ms(e.ttftMs)],
    ["TTFT, batch prefilled together", ms(e.batchTtftMs)],
    ["time per output token", `${ms(e.tpotMs)} (${e.decodeBound}-bound)`],
    ["decode tokens/s", num(e.decodeTokensPerS)],
    ["throughput (prefill included)", `${num(e.tokensPerS)} tok/s total, ${num(e.tokensPerSPerDevice)} tok/s per device`],
    ["power", `${num(e.powerWPerDevice)} W per device${e.powerCapped ? " (at TDP)" : ""}`],
    ["energy", `${num(e.tokensPerJoule)} tokens/J (${num(e.joulesPerToken)} J/token incl. PUE)`],
    ["cost", `$${num(e.usdPerMTok)}/Mtok ($${num(e.deviceUsdPerMTok)} device + $${num(e.energyUsdPerMTok)} energy)`],
  ];
  if (e.userMonth !== undefined) {
    pairs.push(["cost per user-month", `$${num(e.userMonth.usd)} for ${group(e.userMonth.requestsPerMonth)} requests (${num(e.userMonth.joules / 3.6e6)} kWh)`]);
  }
  const width = Math.max(...pairs.map(([k]) => k.length));
  const lines = [title, "", ...pairs.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)];
  if (!e.fits) lines.push("", `  warning: batch ${e.batch} does not fit: the KV cache holds ${group(e.kvMaxBatch)} sequences of this length`);
  return lines.join("\n");
}

export type ComparisonRow = { readonly hardware: string; readonly estimate?: Estimate; readonly problem?: string };

/** One line per hardware, for `--hw a,b,c`. */
export function formatComparison(rows: readonly ComparisonRow[]): string {
  const userMonth = rows.some((r) => r.estimate?.userMonth !== undefined);
  const header = ["hardware", "tp", "batch", "TTFT ms", "batch TTFT s", "TPOT ms", "tok/s", "tok/s/dev", "tok/J", "$/Mtok", "W/dev", "KV tokens", ...(userMonth ? ["$/user-month"] : []), "note"];
  const body = rows.map((r) => {
    const e = r.estimate;
    if (e === undefined) return [r.hardware, ...new Array<string>(header.length - 2).fill(""), r.problem ?? ""];
    return [
      r.hardware,
      String(e.tp),
      String(e.batch),
      num(e.ttftMs),
      num(e.batchTtftMs / 1000),
      num(e.tpotMs),
      num(e.tokensPerS),
      num(e.tokensPerSPerDevice),
      num(e.tokensPerJoule),
      num(e.usdPerMTok),
      num(e.powerWPerDevice),
      group(e.kvCapacityTokens),
      ...(userMonth ? [e.userMonth !== undefined ? num(e.userMonth.usd) : ""] : []),
      e.fits ? "" : `batch > KV capacity (${group(e.kvMaxBatch)})`,
    ];
  });
  const first = rows.find((r) => r.estimate !== undefined)?.estimate;
  const title =
    first === undefined
      ? ""
      : `${first.model}, ${first.precision}, ${first.inputTokens} in / ${first.outputTokens} out\n\n`;
  return title + renderTable(header, body, new Set(header.map((_, i) => i).filter((i) => i > 0 && i < header.length - 1)));
}

// ---------------------------------------------------------------------------
// catalog output

function assumed(hw: HardwareSpec, field: string): boolean {
  return hw.assumed.some((a) => a === field || field.startsWith(`${a}.`) || a.startsWith(`${field}.`));
}

function mark(hw: HardwareSpec, field: string, text: string): string {
  return assumed(hw, field) ? `${text}*` : text;
}

export function formatHardwareCatalog(hardware: readonly HardwareSpec[] = allHardware()): string {
  const header = ["id", "name", "BF16", "FP8", "FP4", "memory", "GB/s", "TDP W", "scale-up GB/s", "$/h", "price $"];
  const rows = hardware.map((h) => [
    h.id,
    h.name,
    mark(h, "peakTflops.bf16", num(h.peakTflops.bf16)),
    h.peakTflops.fp8 !== undefined ? mark(h, "peakTflops.fp8", num(h.peakTflops.fp8)) : h.peakTflops.int8 !== undefined ? `(int8 ${num(h.peakTflops.int8)})` : "-",
    h.peakTflops.fp4 !== undefined ? num(h.peakTflops.fp4) : "-",
    mark(h, "memoryGiB", `${num(h.memoryGiB)} GiB ${h.memoryType}`),
    mark(h, "memoryGBs", num(h.memoryGBs)),
    mark(h, "tdpW", num(h.tdpW)),
    mark(h, "link.bidirGBs", `${num(h.link.bidirGBs)} ${h.link.name}`),
    mark(h, "price.rentUsdPerHour", num(h.price.rentUsdPerHour)),
    h.price.purchaseUsd !== undefined ? mark(h, "price.purchaseUsd", group(h.price.purchaseUsd)) : "not sold",
  ]);
  return `Hardware (dense TFLOPS; * = assumption, see docs/hardware-model.md)\n\n${renderTable(header, rows, new Set([2, 3, 4, 6, 7, 9, 10]))}`;
}

export function formatModelCatalog(): string {
  const header = ["id", "params B", "active B", "layers", "hidden", "heads/kv", "experts", "context", "KV/token bf16"];
  const rows = allModels().map((m) => {
    const s = modelStats(m);
    return [
      m.id,
      num(s.totalParams / 1e9),
      num(s.activeParams / 1e9),
      String(m.layers),
      String(m.hidden),
      m.mla !== undefined ? `${m.heads}/MLA` : `${m.heads}/${m.kvHeads}`,
      m.moe !== undefined ? `${m.moe.activeExperts} of ${m.moe.experts}${m.moe.sharedExperts > 0 ? ` +${m.moe.sharedExperts}` : ""}` : "-",
      group(m.contextLength),
      bytes(kvBytesPerToken(m, "bf16")),
    ];
  });
  return `Models\n\n${renderTable(header, rows, new Set([1, 2, 3, 4, 7, 8]))}`;
}

export function formatPrecisionCatalog(): string {
  const rows = PRECISIONS.map((p) => [p.id, p.label, (p.bytesPerWeight * 8).toFixed(p.bytesPerWeight * 8 >= 10 ? 0 : 3).replace(/\.?0+$/, ""), p.compute, p.kv]);
  return `Precisions (fp16 is accepted for bf16)\n\n${renderTable(["id", "format", "bits/weight", "matrix rate", "KV"], rows, new Set([2]))}`;
}

export function formatCatalog(): string {
  return [formatHardwareCatalog(), formatModelCatalog(), formatPrecisionCatalog()].join("\n\n");
}

// ---------------------------------------------------------------------------
// commands

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer");
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number");
  return n;
}

function kvFormat(value: string): KvFormat {
  const v = value.toLowerCase();
  if (v === "bf16" || v === "fp16") return "bf16";
  if (v === "fp8") return "fp8";
  throw new InvalidArgumentError("expected bf16 or fp8");
}

function pricing(value: string): Pricing {
  if (value === "rent" || value === "purchase") return value;
  throw new InvalidArgumentError("expected rent or purchase");
}

export interface EstimateOptions {
  /** A catalog id, or a spec (e.g. from a GGUF file). */
  model?: string | ModelSpec;
  gguf?: string;
  hw: string;
  tp?: number;
  precision: string | PrecisionSpec;
  input: number;
  output: number;
  batch?: number;
  kvPrecision?: KvFormat;
  expertParallel?: boolean;
  pricing?: Pricing;
  pue?: number;
  usdPerKwh?: number;
  requestsPerDay?: number;
  json?: boolean;
  /** An engine profile file (`flotilla calibrate --out`); read into `engine` before runEstimate. */
  profile?: string;
  /** The engine's parameters; default the built-in ones. */
  engine?: EngineParams;
}

/** Builds the estimates `flotilla estimate` prints; throws UnknownNameError for unknown names. */
export function runEstimate(o: EstimateOptions): ComparisonRow[] {
  if (o.model === undefined) throw new RangeError("give a model: --model <id> or --gguf <file>");
  const model = typeof o.model === "string" ? findModel(o.model) : o.model;
  const precision = typeof o.precision === "string" ? findPrecision(o.precision) : o.precision;
  const ids = o.hw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const hardware = ids.map((id) => findHardware(id));
  return hardware.map((hw) => {
    const base: Omit<EstimateInput, "tp"> = {
      model,
      hardware: hw,
      precision,
      inputTokens: o.input,
      outputTokens: o.output,
      ...(o.batch !== undefined ? { batch: o.batch } : {}),
      ...(o.kvPrecision !== undefined ? { kvPrecision: o.kvPrecision } : {}),
      ...(o.expertParallel === true ? { expertParallel: true } : {}),
      ...(o.pricing !== undefined ? { pricing: o.pricing } : {}),
      ...(o.pue !== undefined ? { pue: o.pue } : {}),
      ...(o.usdPerKwh !== undefined ? { usdPerKwh: o.usdPerKwh } : {}),
      ...(o.requestsPerDay !== undefined ? { usage: { requestsPerDay: o.requestsPerDay } } : {}),
      ...(o.engine !== undefined ? { params: paramsOn(o.engine, hw.id) } : {}),
    };
    // the smallest degree whose KV cache holds the requested batch (or one sequence)
    const tp = o.tp ?? smallestFittingTp(base, (o.batch ?? 1) * (o.input + o.output));
    if (tp === undefined) return { hardware: hw.id, problem: `does not fit within ${hw.link.maxDevices} devices` };
    const e = estimate({ ...base, tp });
    if (e.kvCapacityTokens < 1) return { hardware: hw.id, problem: `weights do not fit at tp ${tp}` };
    return { hardware: hw.id, estimate: e };
  });
}

/** A profile file that cannot be read or is not valid: the user's mistake (exit code 2). */
export class ProfileReadError extends Error {
  override readonly name = "ProfileReadError";
}

/**
 * Reads an engine profile. The parser (and zod with it) loads only here, so
 * `flotilla --help` and a plain `estimate` do not pay for it.
 */
export async function readProfile(path: string): Promise<EngineParams> {
  const { parseEngineProfile, ProfileFileError } = await import("../hardware/profile-file.js");
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new ProfileReadError(`cannot read profile ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  try {
    return parseEngineProfile(text, path).engine;
  } catch (err) {
    if (err instanceof ProfileFileError) throw new ProfileReadError(err.message);
    throw err;
  }
}

function writer(cmd: Command): (s: string) => void {
  const out = cmd.configureOutput().writeOut;
  return out !== undefined ? out : (s: string) => void process.stdout.write(s);
}

/** Adds `estimate` and `catalog` to the flotilla program. */
export function registerHardwareCommands(program: Command): void {
  program
    .command("estimate")
    .description("speed, energy and cost of a model on hardware (the hardware model; no device needed)")
    .option("-m, --model <id>", "model id, e.g. llama-3.1-70b (see `flotilla catalog`)")
    .option("--gguf <file>", "a local GGUF file instead of --model: shape and precision from its metadata")
    .requiredOption("--hw <ids>", "hardware id, or a comma-separated list to compare, e.g. h100,h200,lpddr-chip")
    .option("--tp <n>", "tensor-parallel degree (default: the smallest that fits)", positiveInt)
    .option("-p, --precision <p>", "weights: bf16 (fp16), fp8, fp4, or a GGUF type like q4_k_m", "bf16")
    .option("--input <n>", "prompt tokens per request", nonNegativeInt, 1000)
    .option("--output <n>", "generated tokens per request", positiveInt, 1000)
    .option("--batch <n>", "concurrent sequences (default: as many as the KV cache holds, up to 2048)", positiveInt)
    .option("--kv-precision <p>", "KV cache: bf16 or fp8 (default: follows the weights)", kvFormat)
    .option("--expert-parallel", "MoE: split experts across the tp devices, attention data-parallel")
    .option("--pricing <kind>", "rent or purchase (amortised over 4 years)", pricing)
    .option("--pue <x>", "data-centre PUE (default 1.2)", positiveNumber)
    .option("--usd-per-kwh <x>", "electricity price (default 0.10)", positiveNumber)
    .option("--requests-per-day <n>", "add cost per user-month for this many requests a day", positiveNumber)
    .option("--profile <file>", "an engine profile fitted by `flotilla calibrate` (default: the built-in parameters)")
    .option("--json", "machine-readable output")
    .action(async function (this: Command, opts: EstimateOptions) {
      let rows: ComparisonRow[];
      try {
        let run = opts.profile !== undefined ? { ...opts, engine: await readProfile(opts.profile) } : opts;
        if (opts.gguf !== undefined) {
          if (opts.model !== undefined) throw new RangeError("give --model or --gguf, not both");
          const { spec, precision } = await readGgufSpec(opts.gguf);
          const explicit = this.getOptionValueSource("precision") !== "default";
          run = { ...run, model: spec, precision: explicit || precision === undefined ? opts.precision : precision };
        }
        rows = runEstimate(run);
      } catch (err) {
        if (err instanceof UnknownNameError || err instanceof RangeError || err instanceof ProfileReadError) {
          this.error(`error: ${err.message}`, { exitCode: 2, code: "flotilla.invalidArgument" });
        }
        if (opts.gguf !== undefined && err instanceof Error) {
          this.error(`error: cannot read GGUF metadata from ${opts.gguf}: ${err.message}`, { exitCode: 2, code: "flotilla.invalidArgument" });
        }
        throw err;
      }
      const write = writer(this);
      if (opts.json === true) {
        const data = rows.map((r) => r.estimate ?? { hardware: r.hardware, error: r.problem });
        write(JSON.stringify(data.length === 1 ? data[0] : data, null, 2) + "\n");
        return;
      }
      const only = rows.length === 1 ? rows[0] : undefined;
      if (only?.estimate !== undefined) write(formatEstimate(only.estimate) + "\n");
      else write(formatComparison(rows) + "\n");
    });

  program
    .command("catalog")
    .description("list the hardware, models and precisions the hardware model knows")
    .option("--json", "machine-readable output")
    .action(function (this: Command, opts: { json?: boolean }) {
      const write = writer(this);
      if (opts.json === true) {
        const models = allModels().map((m) => ({ ...m, stats: modelStats(m) }));
        write(JSON.stringify({ hardware: allHardware(), models, precisions: PRECISIONS }, null, 2) + "\n");
        return;
      }
      write(formatCatalog() + "\n");
    });
}
