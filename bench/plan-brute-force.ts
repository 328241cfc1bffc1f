/**
 * The plan's search against brute force (issue 16). On a slice of the
 * Mooncake conversation trace, `flotilla plan`'s search (the hardware
 * model's bounds prune, the twin verifies the survivors, a few pairs of
 * each disaggregated shape) and brute force (every candidate replayed,
 * every pair, each sized by the same bisection in the twin) over the same
 * space of aggregated, disaggregated and mixed fleets; both on the same
 * threads. Prints each one's best fleet per shape and overall by the
 * objective, the plan's against brute force's (the goal: within 5%),
 * replays and wall time.
 *
 *   node --import tsx bench/plan-brute-force.ts [--minutes 10] [--hw h100,b200,lpddr-chip] [--precision fp8] [--tp 1,2,4,8]
 *     [--ttft-slo 10000] [--tpot-slo 100] [--slo-share 0.99] [--objective cost|energy|devices] [--threads 2] [--trace PATH]
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { FLEET_SHAPES, type PlanInput, type PlanResult, type PlanRow } from "../src/sim/plan.js";
import { planOnThreads } from "../src/sim/plan-threads.js";
import { limitDuration, loadTrace } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const tracePath = arg("trace", "../shared/data/traces/mooncake_conversation.jsonl");
if (!existsSync(tracePath)) {
  console.log(`skipped: ${tracePath} is not here (the shared traces are not part of this repository)`);
  process.exit(0);
}
const list = (name: string, fallback: string): string[] => arg(name, fallback).split(",");
const trace = limitDuration(await loadTrace(tracePath), Number(arg("minutes", "10")) * 60_000);
const input: PlanInput = {
  model: arg("model", "llama-3.1-70b"),
  hardware: list("hw", "h100,b200,lpddr-chip"),
  precisions: list("precision", "fp8"),
  tps: list("tp", "1,2,4,8").map(Number),
  trace,
  slo: { ttftMs: Number(arg("ttft-slo", "10000")), tpotMs: Number(arg("tpot-slo", "100")), share: Number(arg("slo-share", "0.99")) },
  objective: arg("objective", "cost") as PlanInput["objective"],
  maxReplicas: 256,
  shapes: FLEET_SHAPES,
};
const threads = Number(arg("threads", String(availableParallelism())));

async function timed(label: string, run: PlanInput): Promise<{ label: string; result: PlanResult; wallS: number; replays: number }> {
  const t0 = performance.now();
  const result = await planOnThreads(run, threads);
  const wallS = (performance.now() - t0) / 1000;
  const replays = result.rows.reduce((s, r) => s + r.replays, 0);
  console.error(`${label}: ${wallS.toFixed(1)} s, ${result.rows.length} candidates replayed (${replays} replays)`);
  return { label, result, wallS, replays };
}

const name = (r: PlanRow | undefined): string =>
  r === undefined ? "none met" : `${r.prefill === undefined ? "" : `${r.prefill.hardware} ${r.prefill.precision} tp${r.prefill.tp} x ${r.prefill.replicas} → `}${r.hardware} ${r.precision} tp${r.tp} x ${r.replicas}`;
const cheapest = (result: PlanResult, shape?: string): PlanRow | undefined => result.rows.find((r) => r.meets && (shape === undefined || r.shape === shape));
const measure = (r: PlanRow): number => (input.objective === "energy" ? r.joulesPerToken : input.objective === "devices" ? r.devices : r.usdPerMTok);
const unit = input.objective === "energy" ? "J/tok" : input.objective === "devices" ? "devices" : "$/M tok";

console.error(`${trace.count} requests over ${(trace.arrivalMs[trace.count - 1]! / 60_000).toFixed(1)} min; ${input.hardware.length} hardware x ${input.precisions.length} precisions x ${input.tps.length} TP sizes; ${threads} threads`);
const planned = await timed("plan", input);
const brute = await timed("brute force", { ...input, exhaustive: true });
console.log(`| | plan: fleet | ${unit} | brute force: fleet | ${unit} | plan / brute force |`);
console.log(`|---|---|---:|---|---:|---:|`);
for (const shape of [...FLEET_SHAPES, undefined]) {
  const a = cheapest(planned.result, shape);
  const b = cheapest(brute.result, shape);
  const ratio = a !== undefined && b !== undefined ? (measure(a) / measure(b)).toFixed(3) : "—";
  const value = (r: PlanRow | undefined): string => (r === undefined ? "—" : measure(r).toFixed(3));
  console.log(`| ${shape ?? "**best of all**"} | ${name(a)} | ${value(a)} | ${name(b)} | ${value(b)} | ${ratio} |`);
}
for (const x of [planned, brute]) console.log(`\n${x.label}: ${x.wallS.toFixed(1)} s wall, ${x.result.rows.length} of ${x.result.candidates} candidates replayed, ${x.replays} replays`);
