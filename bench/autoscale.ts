/**
 * Autoscaling over a day, in the twin, with fixed parameters (issue 16):
 * 24 hours of Poisson arrivals whose rate follows a sinusoid with a 4:1
 * peak-to-trough ratio (trough at midnight, peak at noon), 16 requests/s on
 * average; Llama-3.1-70B BF16 on H100s, TP 4, 64 sequences a replica; SLO
 * TTFT 2 s and TPOT 100 ms. Scale-down cooldown 300 s; provisioning delay
 * 180 s, and again with 600 s.
 *
 * Static peak provisioning is the smallest fixed fleet whose SLO attainment
 * over the day is at least 99% (found by bisection in the twin). Each
 * autoscaled run (reactive, predictive; min 1, max twice that fleet,
 * starting at the trough's share of the static fleet at the target, as the
 * day before ended), for each target utilisation in --targets,
 * reports device-hours saved against it, and its attainment against the
 * static fleet's (the goal: >= 99% of it, with >= 30% saved). Charts:
 * replicas over the day beside the arrival rate, at the first target.
 *
 *   node --import tsx bench/autoscale.ts [--rate 16] [--hours 24] [--targets 0.7,0.8,0.9] [--out bench/out]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { stackedLineCharts, type LineChartOptions, type Series } from "../src/sim/charts.js";
import { resolveSimFleet } from "../src/sim/fleet-file.js";
import { buildReport } from "../src/sim/report.js";
import { simulate, type SimResult } from "../src/sim/simulator.js";
import { syntheticTrace } from "../src/sim/synthetic.js";
import { withDiurnalRate } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const rate = Number(arg("rate", "16"));
const hours = Number(arg("hours", "24"));
const outDir = arg("out", "bench/out");
const targets = arg("targets", "0.7,0.8,0.9").split(",").map(Number);
const COOLDOWN_S = 300;
const PEAK_TO_TROUGH = 4;
const TROUGH_OF_PEAK = 1 / PEAK_TO_TROUGH;
const DELAYS_S = [180, 600];
const ISLAND = { name: "h100", hardware: "h100", model: "llama-3.1-70b", precision: "bf16", tp: 4, max_batch: 64 } as const;
const SLO = { ttft_ms: 2000, tpot_ms: 100 };

const trace = withDiurnalRate(
  syntheticTrace({ requests: Math.round(rate * hours * 3600), ratePerS: rate, input: { mean: 1500, cv: 0.5 }, output: { mean: 300, cv: 0.5 }, seed: 24 }),
  { peakToTrough: PEAK_TO_TROUGH, periodS: 86_400, peakAtS: 43_200 },
);

interface Run {
  readonly label: string;
  readonly result: SimResult;
  readonly deviceHours: number;
  readonly attainment: number;
  readonly p99TtftMs: number;
  readonly wallS: number;
}

function run(label: string, island: Record<string, unknown>): Run {
  const t0 = performance.now();
  const result = simulate({ fleet: resolveSimFleet({ islands: [{ ...ISLAND, ...island }], slo: SLO }), trace });
  const report = buildReport(result);
  const deviceHours = (result.replicas.reduce((s, r) => s + r.memberMs, 0) * ISLAND.tp) / 3.6e6;
  const wallS = (performance.now() - t0) / 1000;
  process.stderr.write(`  ${label}: ${deviceHours.toFixed(0)} device-hours, SLO attainment ${(report.goodput.share * 100).toFixed(2)}% (${wallS.toFixed(0)} s)\n`);
  return { label, result, deviceHours, attainment: report.goodput.share, p99TtftMs: report.latency.ttftMs.p99, wallS };
}

/** The smallest static fleet meeting the SLO for >= 99% of the day's requests. */
function staticPeak(): Run {
  const runs = new Map<number, Run>();
  const at = (n: number): Run => {
    if (!runs.has(n)) runs.set(n, run(`static ${n}`, { count: n }));
    return runs.get(n)!;
  };
  let hi = 4;
  while (at(hi).attainment < 0.99) hi *= 2;
  let lo = 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(mid).attainment >= 0.99) hi = mid;
    else lo = mid + 1;
  }
  return at(hi);
}

console.error(`autoscale: ${trace.count} requests over ${hours} h, ${rate} req/s mean, 4:1 peak to trough; ${ISLAND.model} ${ISLAND.precision} on ${ISLAND.hardware} TP ${ISLAND.tp}, max_batch ${ISLAND.max_batch}`);
const fixed = staticPeak();
const peakCount = fixed.result.fleet.islands[0]!.count;
const scaled: { delayS: number; mode: string; target: number; run: Run }[] = [];
for (const target of targets) {
  for (const delayS of DELAYS_S) {
    for (const mode of ["reactive", "predictive"]) {
      const autoscale = { min: 1, max: 2 * peakCount, mode, target_utilisation: target, provisioning_s: delayS, cooldown_s: COOLDOWN_S };
      // The day starts at its trough, as the day before ended: the trough's share of the peak fleet, at the target.
      const count = Math.min(autoscale.max, Math.ceil((peakCount * TROUGH_OF_PEAK) / target));
      scaled.push({ delayS, mode, target, run: run(`${mode}, target ${target}, ${delayS} s`, { count, autoscale }) });
    }
  }
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
console.log(`\n${trace.count.toLocaleString("en")} requests over ${hours} h (${rate} req/s mean, 4:1 sinusoid), ${ISLAND.model} ${ISLAND.precision} on ${ISLAND.hardware} TP ${ISLAND.tp} (max_batch ${ISLAND.max_batch}), SLO TTFT ${SLO.ttft_ms} ms and TPOT ${SLO.tpot_ms} ms, cooldown ${COOLDOWN_S} s\n`);
console.log("| fleet | target utilisation | provisioning delay | device-hours | saved vs static peak | SLO attainment | of static's | TTFT p99 | most replicas | lost |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
const row = (r: Run, target: string, delay: string): void => {
  const most = Math.max(...r.result.timeline.members);
  console.log(`| ${r.label} | ${target} | ${delay} | ${r.deviceHours.toFixed(0)} | ${pct(1 - r.deviceHours / fixed.deviceHours)} | ${pct(r.attainment)} | ${pct(r.attainment / fixed.attainment)} | ${(r.p99TtftMs / 1000).toFixed(2)} s | ${most} | ${r.result.lost} |`);
};
row({ ...fixed, label: `static peak (${peakCount} replicas)` }, "-", "-");
for (const s of scaled) row({ ...s.run, label: `autoscaled, ${s.mode}` }, String(s.target), `${s.delayS} s`);

// Charts: replicas in the fleet over the day, one panel per provisioning delay, over the arrival rate.
const hoursOf = (r: SimResult): number[] => r.timeline.members.map((_, i) => (i * r.timeline.bucketMs) / 3.6e6);
const arrivals = (r: SimResult): Series => {
  const bucket = r.timeline.bucketMs;
  const counts = new Array<number>(r.timeline.members.length).fill(0);
  for (let i = 0; i < trace.count; i++) counts[Math.min(counts.length - 1, Math.floor(trace.arrivalMs[i]! / bucket))]!++;
  return { name: "arrivals (req/s)", x: hoursOf(r), y: counts.map((c) => c / (bucket / 1000)), color: "#999999" };
};
const panels: LineChartOptions[] = DELAYS_S.map((delayS) => ({
  title: `Replicas over the day, provisioning delay ${delayS} s, target utilisation ${targets[0]}`,
  xLabel: "hour",
  yLabel: "replicas",
  steps: true,
  series: [
    { name: `static peak (${peakCount})`, x: [0, hours], y: [peakCount, peakCount], color: "#444444" },
    ...scaled.filter((s) => s.delayS === delayS && s.target === targets[0]).map((s) => ({ name: s.mode, x: hoursOf(s.run.result), y: s.run.result.timeline.members })),
  ],
}));
panels.push({ title: "Arrival rate", xLabel: "hour", yLabel: "requests/s", steps: false, series: [arrivals(fixed.result)] });
await mkdir(outDir, { recursive: true });
const file = join(outDir, "autoscale.svg");
await writeFile(file, stackedLineCharts("Autoscaling over a day (twin)", `${ISLAND.model} on ${ISLAND.hardware} TP ${ISLAND.tp}; 4:1 diurnal, ${rate} req/s mean; cooldown ${COOLDOWN_S} s`, panels));
console.log(`\nchart: ${file}`);
