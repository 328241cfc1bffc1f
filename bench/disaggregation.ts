/**
 * Aggregated, disaggregated and mixed-hardware fleets at equal SLO (issue
 * 16): `flotilla plan`'s search over each shape apart, on the Mooncake
 * conversation trace (long prompts: 12k tokens on average, heavy prefix
 * reuse) and on Azure's 2023 conversation trace (short prompts: about 1k
 * tokens; the trace Splitwise used), for Llama-3.1-70B over the same space.
 * For each trace and shape, the cheapest fleet that meets the objective and
 * its output tokens per dollar and per joule, against the aggregated one.
 *
 *   node --import tsx bench/disaggregation.ts [--hw h100,h200,b200,mi300x,tpu-v6e,lpddr-chip] [--precision bf16,fp8,fp4]
 *     [--tp 1,2,4,8] [--minutes 60] [--threads 2] [--out bench/out]
 *
 * Chart: <out>/disaggregation.svg, output tokens per dollar of each shape's cheapest fleet.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { rowChart } from "../src/sim/charts.js";
import { availableParallelism } from "node:os";
import { FLEET_SHAPES, type PlanInput, type PlanRow } from "../src/sim/plan.js";
import { planOnThreads } from "../src/sim/plan-threads.js";
import { limitDuration, loadTrace } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const TRACES = [
  { name: "Mooncake conversation", short: "Mooncake", path: "../shared/data/traces/mooncake_conversation.jsonl", slo: { ttftMs: 10_000, tpotMs: 100, share: 0.99 } },
  { name: "Azure 2023 conversation", short: "Azure", path: "../shared/data/traces/azure2023_conv.csv", slo: { ttftMs: 2_000, tpotMs: 100, share: 0.99 } },
];
const threads = Number(arg("threads", String(availableParallelism())));

const name = (r: PlanRow): string => `${r.prefill === undefined ? "" : `${r.prefill.hardware} ${r.prefill.precision} tp${r.prefill.tp} x ${r.prefill.replicas} → `}${r.hardware} ${r.precision} tp${r.tp} x ${r.replicas}`;

const bars: { label: string; value: number; trace: number }[] = [];
console.log("| trace | shape | cheapest fleet | devices | $/M tok | tokens per $ | tokens per kJ | per $ vs aggregated | per kJ vs aggregated | TTFT p99 ms | TPOT p99 ms |");
console.log("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const [ti, t] of TRACES.entries()) {
  if (!existsSync(t.path)) {
    console.log(`skipped ${t.name}: ${t.path} is not here`);
    continue;
  }
  const trace = limitDuration(await loadTrace(t.path), Number(arg("minutes", "60")) * 60_000);
  const best = new Map<string, PlanRow>();
  for (const shape of FLEET_SHAPES) {
    const input: PlanInput = {
      model: "llama-3.1-70b",
      hardware: arg("hw", "h100,h200,b200,mi300x,tpu-v6e,lpddr-chip").split(","),
      precisions: arg("precision", "bf16,fp8,fp4").split(","),
      tps: arg("tp", "1,2,4,8").split(",").map(Number),
      trace,
      slo: t.slo,
      objective: "cost",
      maxReplicas: 256,
      shapes: [shape],
    };
    const t0 = performance.now();
    const result = await planOnThreads(input, threads);
    console.error(`${t.name}, ${shape}: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${result.rows.length} replayed`);
    if (result.best !== undefined) best.set(shape, result.best);
  }
  const agg = best.get("aggregated");
  for (const shape of FLEET_SHAPES) {
    const r = best.get(shape);
    if (r === undefined) {
      console.log(`| ${t.name} | ${shape} | none met | | | | | | | | |`);
      continue;
    }
    const perUsd = 1e6 / r.usdPerMTok;
    const perKj = 1000 / r.joulesPerToken;
    bars.push({ label: `${t.short}, ${shape}: ${name(r).replaceAll(" x ", "×").replaceAll("lpddr-chip", "lpddr")}`, value: perUsd, trace: ti });
    const vs = (x: number, y: number | undefined): string => (y === undefined ? "—" : `${(x / y).toFixed(2)}x`);
    console.log(`| ${t.name} | ${shape} | ${name(r)} | ${r.devices} | ${r.usdPerMTok.toFixed(2)} | ${perUsd.toFixed(0)} | ${perKj.toFixed(0)} | ${vs(perUsd, agg && 1e6 / agg.usdPerMTok)} | ${vs(perKj, agg && 1000 / agg.joulesPerToken)} | ${r.ttftP99Ms.toFixed(0)} | ${r.tpotP99Ms.toFixed(1)} |`);
  }
}

const out = arg("out", "bench/out");
await mkdir(out, { recursive: true });
const chart = rowChart({
  title: "Output tokens per dollar, Llama-3.1-70B: the cheapest fleet of each shape",
  subtitle: "Mooncake (long prompts): 99% within TTFT 10 s, TPOT 100 ms; Azure 2023 conversation (short): 99% within TTFT 2 s, TPOT 100 ms",
  xLabel: "output tokens per dollar",
  labels: bars.map((b) => b.label),
  values: bars.map((b) => b.value),
  colors: bars.map((b) => b.trace),
  width: 980,
});
await writeFile(join(out, "disaggregation.svg"), chart);
console.error(`chart: ${join(out, "disaggregation.svg")}`);
