/**
 * What `flotilla sim` does once its options are parsed: the fleet and the
 * trace, the simulation, and the report printed and written. Loaded on
 * demand by sim-command.ts.
 */
import { readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { renderCharts } from "../sim/charts.js";
import { explainDecision, type DecisionListener } from "../scheduler/decision.js";
import { parseEngineProfile } from "../hardware/profile-file.js";
import type { EngineParams } from "../hardware/index.js";
import { FleetFileError, resolveSimFleet, type ProfileLoader, type SimFleet } from "../sim/fleet-file.js";
import { renderMarkdown, renderSummary } from "../sim/markdown.js";
import { progressBar } from "../sim/progress.js";
import { buildReport, reportJson, requestsCsv } from "../sim/report.js";
import type { SimReport } from "../sim/report.js";
import { simulate } from "../sim/simulator.js";
import { syntheticTrace, withSyntheticPrefixes } from "../sim/synthetic.js";
import type { Trace } from "../sim/traces.js";
import { TraceError, limitDuration, loadTrace, scaleRate, truncateTrace, withDiurnalRate } from "../sim/traces.js";
import { OUTPUT_FILES, type SimIo, type SimOptions } from "./sim-command.js";

/** A mistake in what the user gave (names, files, values): exit code 2. */
export class SimUsageError extends Error {
  override readonly name = "SimUsageError";
}

/** Whether `err` is the user's mistake (exit code 2) rather than a fault. */
export function isUsageError(err: unknown): err is Error {
  return err instanceof SimUsageError || err instanceof FleetFileError || err instanceof TraceError;
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
  // --profile: every island without its own; absolute, as it is relative to the working directory, not the fleet file
  const profile = opts.profile;
  if (profile !== undefined && Array.isArray(raw.islands)) {
    raw.islands = raw.islands.map((isl: unknown) => (typeof isl === "object" && isl !== null && !("profile" in isl) ? { ...isl, profile: resolve(profile) } : isl));
  }
  if (opts.seed !== undefined) raw.seed = opts.seed;
  return { raw, source };
}

/** The trace a run replays: read (--trace) or generated (--synthetic), then scaled, cut and truncated as asked. */
export async function buildTrace(opts: SimOptions, blockTokens: number, seed: number): Promise<Trace> {
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
  if (opts.peakToTrough !== undefined) trace = withDiurnalRate(trace, { peakToTrough: opts.peakToTrough, ...(opts.diurnalPeriod === undefined ? {} : { periodS: opts.diurnalPeriod }) });
  else if (opts.diurnalPeriod !== undefined) throw new SimUsageError("--diurnal-period shapes the curve --peak-to-trough gives; give that too");
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

/**
 * Reads islands' `profile:` files, relative to the fleet file's folder (the
 * working directory without one); each file is read once however many
 * islands name it.
 */
export function profileLoader(fleetPath: string | undefined): ProfileLoader {
  const base = fleetPath === undefined ? process.cwd() : dirname(resolve(fleetPath));
  const loaded = new Map<string, EngineParams>();
  return (path) => {
    const full = resolve(base, path);
    const hit = loaded.get(full);
    if (hit !== undefined) return hit;
    let text: string;
    try {
      text = readFileSync(full, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`cannot read profile ${full}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`);
    }
    const engine = parseEngineProfile(text, path).engine;
    loaded.set(full, engine);
    return engine;
  };
}

/** Runs the command: simulate, then print and write the report. Returns the report. */
export async function runSim(opts: SimOptions, io: SimIo): Promise<SimReport> {
  const { raw, source } = await rawFleet(opts);
  const fleet = resolveSimFleet(raw, source, { loadProfile: profileLoader(opts.fleet) });
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
