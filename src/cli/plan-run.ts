/**
 * What `flotilla plan` does once its options are parsed: the workload, the
 * search (sim/plan.ts), the table or JSON, and the chosen fleet's file.
 * Loaded on demand by plan-command.ts.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { stringify } from "yaml";
import { rowChart } from "../sim/charts.js";
import { PlanUsageError, type PlanInput, type PlanResult, type PlanRow, type Unfit } from "../sim/plan.js";
import { planOnThreads } from "../sim/plan-threads.js";
import type { PlanOptions } from "./plan-command.js";
import type { SimIo } from "./sim-command.js";
import { SimUsageError, buildTrace } from "./sim-run.js";

/** Runs the plan and prints it; true when some setup met the objective. */
export async function runPlan(opts: PlanOptions, io: SimIo): Promise<boolean> {
  if (opts.model === undefined) throw new SimUsageError("give --model NAME: the model to plan a fleet for");
  if (opts.sloShare > 1) throw new SimUsageError("--slo-share must be between 0 and 1");
  const list = (flag: string, v: string): string[] => {
    const items = v.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    if (items.length === 0) throw new SimUsageError(`${flag} must name at least one`);
    return items;
  };
  const tps = list("--tp", opts.tp).map((t) => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < 1) throw new SimUsageError(`--tp sizes must be positive integers, got "${t}"`);
    return n;
  });
  const seed = opts.seed ?? 1;
  // The prefix-cache block size of a fleet file without an engine section.
  const { trace: path, format, requests, rate, inputTokens, inputCv, outputTokens, outputCv, rateScale, peakToTrough, diurnalPeriod, duration, truncate } = opts;
  const workload = { trace: path, format, requests, rate, inputTokens, inputCv, outputTokens, outputCv, rateScale, peakToTrough, diurnalPeriod, duration, truncate };
  const given = Object.fromEntries(Object.entries(workload).filter(([, v]) => v !== undefined));
  const trace = await buildTrace({ ...given, synthetic: opts.synthetic === true || path === undefined }, 512, seed);
  const input: PlanInput = {
    model: opts.model,
    hardware: list("--hw", opts.hw),
    precisions: list("--precision", opts.precision),
    tps,
    trace,
    slo: { ttftMs: opts.ttftSlo, tpotMs: opts.tpotSlo, share: opts.sloShare },
    objective: opts.objective,
    maxReplicas: opts.maxReplicas,
    limits: { ...(opts.maxPowerKw === undefined ? {} : { facilityKw: opts.maxPowerKw }), ...(opts.maxUsdPerHour === undefined ? {} : { usdPerHour: opts.maxUsdPerHour }) },
    rackKw: opts.rackKw,
    ...(opts.userTokens === undefined ? {} : { userTokensPerMonth: opts.userTokens }),
    seed,
    onCandidate: (row, done, total) => io.stderr.write(`plan: ${done}/${total} ${setupName(row)}: ${row.meets ? `${row.replicas} replicas` : `not met at ${row.replicas}`} (${row.replays} replays)\n`),
  };
  let result: PlanResult;
  try {
    result = await planOnThreads(input, opts.threads);
  } catch (err) {
    if (err instanceof PlanUsageError) throw new SimUsageError(err.message);
    throw err;
  }
  if (opts.out !== undefined && result.best !== undefined) await writeFile(resolve(opts.out), fleetFile(input, result.best));
  if (opts.chart !== undefined) await writeFile(resolve(opts.chart), costChart(input, result));
  io.stdout.write(opts.json === true ? `${JSON.stringify({ ...result, objective: input.objective, slo: input.slo }, null, 2)}\n` : render(input, result, opts.out));
  return result.best !== undefined;
}

const setupName = (r: { hardware: string; precision: string; tp: number }): string => `${r.hardware} ${r.precision} tp${r.tp}`;

/** The chosen fleet as a fleet file `flotilla sim --fleet` replays. */
function fleetFile(input: PlanInput, best: PlanRow): string {
  return stringify({
    islands: [{ name: "planned", hardware: best.hardware, count: best.replicas, model: input.model, precision: best.precision, tp: best.tp }],
    slo: { ttft_ms: input.slo.ttftMs, tpot_ms: input.slo.tpotMs },
    seed: input.seed ?? 1,
  });
}

/** Each fleet that meets the objective by its cost per million output tokens; the frontier in a second colour. */
function costChart(input: PlanInput, result: PlanResult): string {
  const met = result.rows.filter((r) => r.meets);
  const frontier = new Set(result.frontier);
  return rowChart({
    title: `Fleets for ${input.model} that meet the objective`,
    subtitle: `${(input.slo.share * 100).toFixed(1)}% within TTFT ${input.slo.ttftMs} ms and TPOT ${input.slo.tpotMs} ms; the Pareto frontier (money, energy, devices) in orange`,
    xLabel: "$ per million output tokens",
    labels: met.map((r) => `${setupName(r)} x ${r.replicas}`),
    values: met.map((r) => r.usdPerMTok),
    colors: met.map((r) => (frontier.has(r) ? 1 : 0)),
  });
}

function render(input: PlanInput, result: PlanResult, out: string | undefined): string {
  const perUser = input.userTokensPerMonth !== undefined;
  const lines = [
    `${input.model}, ${input.trace.count} requests over ${(input.trace.arrivalMs[input.trace.count - 1]! / 1000).toFixed(0)} s; objective: ${(input.slo.share * 100).toFixed(1)}% of requests within TTFT ${input.slo.ttftMs} ms and TPOT ${input.slo.tpotMs} ms`,
    "",
    `| setup | replicas | devices | met | $/M tok |${perUser ? " $/user-mo |" : ""} J/tok | $/h | kW mean | kW peak | racks | TTFT p99 ms | TPOT p99 ms |`,
    `|---|---:|---:|---:|---:|${perUser ? "---:|" : ""}---:|---:|---:|---:|---:|---:|---:|`,
  ];
  const frontier = new Set(result.frontier);
  for (const r of result.rows) {
    const mark = r === result.best ? " (chosen)" : frontier.has(r) ? " (frontier)" : "";
    const met = `${(r.goodShare * 100).toFixed(1)}%${r.meets ? "" : " ✗"}`;
    const user = perUser ? ` ${(r.usdPerUserMonth ?? 0).toFixed(2)} |` : "";
    lines.push(`| ${setupName(r)}${mark} | ${r.replicas} | ${r.devices} | ${met} | ${r.usdPerMTok.toFixed(3)} |${user} ${r.joulesPerToken.toFixed(2)} | ${r.usdPerHour.toFixed(2)} | ${r.facilityKw.toFixed(2)} | ${r.peakKw.toFixed(1)} | ${r.racks} | ${r.ttftP99Ms.toFixed(0)} | ${r.tpotP99Ms.toFixed(1)} |`);
  }
  for (const u of result.unfit) lines.push(`| ${setupName(u)} | — | — | — | ${u.share === undefined ? "does not fit: " : "cannot meet it: "}${u.reason} |${perUser ? " |" : ""} | | | | | | |`);
  lines.push("");
  if (result.best === undefined) lines.push(infeasible(input, result));
  else lines.push(`chosen by ${input.objective}: ${setupName(result.best)} x ${result.best.replicas}${out === undefined ? "" : `, written to ${resolve(out)}`}`);
  return `${lines.join("\n")}\n`;
}

/** No setup met the objective: the closest one, and which limit bound it. */
function infeasible(input: PlanInput, result: PlanResult): string {
  const within = `no setup met the objective within ${input.maxReplicas} replicas`;
  const closest = result.rows.reduce<PlanRow | undefined>((a, r) => (a === undefined || r.goodShare > a.goodShare ? r : a), undefined);
  const bounded = result.unfit.filter((u) => u.share !== undefined).reduce<Unfit | undefined>((a, u) => (a === undefined || u.share! > a.share! ? u : a), undefined);
  if (closest !== undefined && (bounded === undefined || closest.goodShare >= bounded.share!)) {
    if (closest.cappedBy !== undefined) {
      const limit = closest.cappedBy === "power" ? `the power limit (${input.limits?.facilityKw} kW at peak)` : `the money limit (${input.limits?.usdPerHour} USD an hour)`;
      return `${within}. The closest: ${setupName(closest)} x ${closest.replicas}, ${(closest.goodShare * 100).toFixed(1)}% of requests within it; the binding limit is ${limit}, which allows no more replicas`;
    }
    const ttft = closest.ttftP99Ms / input.slo.ttftMs >= closest.tpotP99Ms / input.slo.tpotMs;
    const binding = ttft ? `TTFT (p99 ${closest.ttftP99Ms.toFixed(0)} ms against ${input.slo.ttftMs} ms)` : `TPOT (p99 ${closest.tpotP99Ms.toFixed(1)} ms against ${input.slo.tpotMs} ms)`;
    return `${within}. The closest: ${setupName(closest)} x ${closest.replicas}, ${(closest.goodShare * 100).toFixed(1)}% of requests within it; the binding limit is ${binding}`;
  }
  if (bounded !== undefined) return `${within}. The closest: ${setupName(bounded)}, where ${bounded.reason}`;
  return "no setup in the space can serve the model: none fits (above); add hardware with more memory, larger --tp, or a lower --precision";
}
