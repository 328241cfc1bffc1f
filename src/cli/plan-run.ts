/**
 * What `flotilla plan` does once its options are parsed: the workload, the
 * search (sim/plan.ts), the table or JSON, and the chosen fleet's file.
 * Loaded on demand by plan-command.ts.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { stringify } from "yaml";
import { rowChart } from "../sim/charts.js";
import { FLEET_SHAPES, PlanUsageError, type FleetShape, type PlanInput, type PlanResult, type PlanRow, type Unfit } from "../sim/plan.js";
import { plannedFleet } from "../sim/plan-search.js";
import { planOnThreads } from "../sim/plan-threads.js";
import { KV_LINK_IDS, type KvLinkId } from "../hardware/links.js";
import type { PlanOptions } from "./plan-command.js";
import type { SimIo } from "./sim-command.js";
import { SimUsageError, buildTrace, profileLoader } from "./sim-run.js";

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
  const shapes = list("--shapes", opts.shapes).map((x) => {
    if (!(FLEET_SHAPES as readonly string[]).includes(x)) throw new SimUsageError(`--shapes: unknown shape "${x}"; known: ${FLEET_SHAPES.join(", ")}`);
    return x as FleetShape;
  });
  if (shapes.every((x) => x === "mixed") && new Set(list("--hw", opts.hw)).size < 2) throw new SimUsageError("--shapes mixed pairs two kinds of hardware: name at least two in --hw");
  if (!(KV_LINK_IDS as readonly string[]).includes(opts.kvLink)) throw new SimUsageError(`--kv-link: unknown link "${opts.kvLink}"; known: ${KV_LINK_IDS.join(", ")}`);
  const seed = opts.seed ?? 1;
  // The prefix-cache block size of a fleet file without an engine section.
  const { trace: path, format, requests, rate, inputTokens, inputCv, outputTokens, outputCv, prefixGroups, prefixTokens, prefixShare, rateScale, peakToTrough, diurnalPeriod, duration, truncate } = opts;
  const workload = { trace: path, format, requests, rate, inputTokens, inputCv, outputTokens, outputCv, prefixGroups, prefixTokens, prefixShare, rateScale, peakToTrough, diurnalPeriod, duration, truncate };
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
    shapes,
    ...(opts.pairs === undefined ? {} : { pairsPerShape: opts.pairs }),
    kvLink: opts.kvLink as KvLinkId,
    ...(opts.exhaustive === true ? { exhaustive: true } : {}),
    limits: { ...(opts.maxPowerKw === undefined ? {} : { facilityKw: opts.maxPowerKw }), ...(opts.maxUsdPerHour === undefined ? {} : { usdPerHour: opts.maxUsdPerHour }) },
    rackKw: opts.rackKw,
    ...(opts.userTokens === undefined ? {} : { userTokensPerMonth: opts.userTokens }),
    seed,
    ...(opts.profile === undefined ? {} : { profile: readProfile(opts.profile) }),
    onCandidate: (row, done, total) => io.stderr.write(`plan: ${done}/${total} ${fleetName(row)}${row.meets ? "" : ": not met"} (${row.replays} replays)\n`),
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

/** A row's fleet in a few words: "b200 fp4 tp2 x 7", or "prefill h100 fp8 tp2 x 3 + decode lpddr-chip fp8 tp4 x 9". */
function fleetName(r: PlanRow): string {
  return r.prefill === undefined ? `${setupName(r)} x ${r.replicas}` : `prefill ${setupName(r.prefill)} x ${r.prefill.replicas} + decode ${setupName(r)} x ${r.replicas}`;
}

/** --profile, read once (the search's worker threads get its parameters); a file that cannot be used is a usage error naming it. */
function readProfile(path: string): NonNullable<PlanInput["profile"]> {
  const full = resolve(path);
  try {
    return { path: full, engine: profileLoader(undefined)(full) };
  } catch (err) {
    throw new SimUsageError(`--profile: ${(err as Error).message}`);
  }
}

/** The chosen fleet as a fleet file `flotilla sim --fleet` replays. */
function fleetFile(input: PlanInput, best: PlanRow): string {
  const candidate = { shape: best.shape, setup: best, ...(best.prefill === undefined ? {} : { prefill: best.prefill }) };
  return stringify(plannedFleet(input, candidate, best.prefill === undefined ? [best.replicas] : [best.prefill.replicas, best.replicas]));
}

/** Each fleet that meets the objective by its cost per million output tokens; the frontier in a second colour. */
function costChart(input: PlanInput, result: PlanResult): string {
  const met = result.rows.filter((r) => r.meets);
  const frontier = new Set(result.frontier);
  return rowChart({
    title: `Fleets for ${input.model} that meet the objective`,
    subtitle: `${(input.slo.share * 100).toFixed(1)}% within TTFT ${input.slo.ttftMs} ms and TPOT ${input.slo.tpotMs} ms; the Pareto frontier (money, energy, devices) in orange`,
    xLabel: "$ per million output tokens",
    labels: met.map(fleetName),
    values: met.map((r) => r.usdPerMTok),
    colors: met.map((r) => (frontier.has(r) ? 1 : 0)),
  });
}

function render(input: PlanInput, result: PlanResult, out: string | undefined): string {
  const perUser = input.userTokensPerMonth !== undefined;
  const moved = result.rows.some((r) => r.kvTransfer !== undefined);
  const lines = [
    `${input.model}, ${input.trace.count} requests over ${(input.trace.arrivalMs[input.trace.count - 1]! / 1000).toFixed(0)} s; objective: ${(input.slo.share * 100).toFixed(1)}% of requests within TTFT ${input.slo.ttftMs} ms and TPOT ${input.slo.tpotMs} ms`,
    "",
    `| fleet | shape | devices | met | $/M tok |${perUser ? " $/user-mo |" : ""} J/tok | $/h | kW mean | kW peak | racks | TTFT p99 ms | TPOT p99 ms |${moved ? " KV moved GB |" : ""}`,
    `|---|---|---:|---:|---:|${perUser ? "---:|" : ""}---:|---:|---:|---:|---:|---:|---:|${moved ? "---:|" : ""}`,
  ];
  const frontier = new Set(result.frontier);
  for (const r of result.rows) {
    const mark = r === result.best ? " (chosen)" : frontier.has(r) ? " (frontier)" : "";
    const met = `${(r.goodShare * 100).toFixed(1)}%${r.meets ? "" : " ✗"}`;
    const user = perUser ? ` ${(r.usdPerUserMonth ?? 0).toFixed(2)} |` : "";
    const kv = moved ? ` ${r.kvTransfer === undefined ? "—" : r.kvTransfer.gb.toFixed(1)} |` : "";
    lines.push(`| ${fleetName(r)}${mark} | ${r.shape} | ${r.devices} | ${met} | ${r.usdPerMTok.toFixed(3)} |${user} ${r.joulesPerToken.toFixed(2)} | ${r.usdPerHour.toFixed(2)} | ${r.facilityKw.toFixed(2)} | ${r.peakKw.toFixed(1)} | ${r.racks} | ${r.ttftP99Ms.toFixed(0)} | ${r.tpotP99Ms.toFixed(1)} |${kv}`);
  }
  const blank = ` |${perUser ? " |" : ""} | | | | | | |${moved ? " |" : ""}`;
  for (const u of result.unfit) lines.push(`| ${setupName(u)} | — | — | — | ${u.share === undefined ? "does not fit: " : "cannot meet it: "}${u.reason}${blank}`);
  lines.push("");
  if (result.ruledOut > 0) lines.push(`${result.ruledOut} of ${result.candidates} candidates were ruled out by the hardware model without a replay: their requests could not meet the objective even alone, or its bound or estimate put them past a fleet above (by ${input.objective})`);
  if (result.best === undefined) lines.push(infeasible(input, result));
  else lines.push(`chosen by ${input.objective}: ${fleetName(result.best)}${out === undefined ? "" : `, written to ${resolve(out)}`}`);
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
      return `${within}. The closest: ${fleetName(closest)}, ${(closest.goodShare * 100).toFixed(1)}% of requests within it; the binding limit is ${limit}, which allows no more replicas`;
    }
    const ttft = closest.ttftP99Ms / input.slo.ttftMs >= closest.tpotP99Ms / input.slo.tpotMs;
    const binding = ttft ? `TTFT (p99 ${closest.ttftP99Ms.toFixed(0)} ms against ${input.slo.ttftMs} ms)` : `TPOT (p99 ${closest.tpotP99Ms.toFixed(1)} ms against ${input.slo.tpotMs} ms)`;
    return `${within}. The closest: ${fleetName(closest)}, ${(closest.goodShare * 100).toFixed(1)}% of requests within it; the binding limit is ${binding}`;
  }
  if (bounded !== undefined) return `${within}. The closest: ${setupName(bounded)}, where ${bounded.reason}`;
  if (result.ruledOut > 0) return `no candidate in the space can meet the objective: the requests of every one of the ${result.candidates} would miss it even alone on idle replicas (a split fleet's KV crossing counted); loosen the objective or add faster hardware`;
  return "no setup in the space can serve the model: none fits (above); add hardware with more memory, larger --tp, or a lower --precision";
}
