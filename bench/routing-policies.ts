/**
 * Which router sustains the most load? For each named policy, on the Mooncake
 * and Azure conversation traces, the highest replay rate (x the trace's own)
 * at which >= 90% of requests meet the SLO (TTFT <= 2 s, TPOT <= 100 ms), by
 * bisection over --rate-scale in the simulator, plus hit rate, p99 TTFT,
 * $/Mtok and J/token at that rate. Writes a bar chart to --out.
 *
 *   node --import tsx bench/routing-policies.ts [--replicas 8] [--tp 2] [--steps 7] [--out bench/out]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { barChart } from "../src/sim/charts.js";
import { resolvePolicy, resolveSimFleet } from "../src/sim/fleet-file.js";
import { buildReport, type SimReport } from "../src/sim/report.js";
import { simulate } from "../src/sim/simulator.js";
import { loadTrace, scaleRate, type Trace } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const replicas = Number(arg("replicas", "8"));
const tp = Number(arg("tp", "2"));
const steps = Number(arg("steps", "7"));
const outDir = arg("out", "bench/out");
const policyNames = ["round-robin", "least-loaded", "power-of-two", "prefix-aware", "cost-aware"];
const traces = ["mooncake_conversation.jsonl", "azure2023_conv.csv"];
const fleet = resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count: replicas, model: "llama-3.1-70b", precision: "fp8", tp }] });

function run(trace: Trace, policy: string, scale: number): SimReport {
  return buildReport(simulate({ fleet, trace: scaleRate(trace, scale), policy: resolvePolicy(policy) }));
}

/** Highest scale in [lo, hi] with goodput >= 90%, by bisection in log space; 0 when even lo fails. */
function sustainable(trace: Trace, policy: string): { scale: number; report: SimReport | undefined } {
  let lo = 1 / 64;
  let hi = 64;
  let best: SimReport | undefined;
  const ok = (s: number): SimReport | undefined => {
    const r = run(trace, policy, s);
    return r.goodput.share >= 0.9 ? r : undefined;
  };
  best = ok(lo);
  if (best === undefined) return { scale: 0, report: undefined };
  for (let i = 0; i < steps; i++) {
    const mid = Math.sqrt(lo * hi);
    const r = ok(mid);
    if (r === undefined) hi = mid;
    else {
      lo = mid;
      best = r;
    }
  }
  return { scale: lo, report: best };
}

console.log(`routing policies: ${replicas} x H100 TP${tp} (${replicas * tp} GPUs), Llama-3.1-70B FP8, SLO TTFT <= 2 s and TPOT <= 100 ms for >= 90% of requests\n`);
const bars: { label: string; value: number }[] = [];
for (const name of traces) {
  const trace = await loadTrace(resolve(import.meta.dirname, "../../shared/data/traces", name));
  const baseRate = trace.count / ((trace.arrivalMs[trace.count - 1]! - trace.arrivalMs[0]!) / 1000);
  console.log(`### ${name} (${trace.count} requests, ${baseRate.toFixed(2)} req/s as recorded)\n`);
  console.log("| policy | max rate at >= 90% SLO (req/s) | x recorded | block hit rate | p99 TTFT ms | $/Mtok | J/token |");
  console.log("|---|---|---|---|---|---|---|");
  for (const policy of policyNames) {
    const t = performance.now();
    const { scale, report } = sustainable(trace, policy);
    const rate = scale * baseRate;
    bars.push({ label: `${name.startsWith("mooncake") ? "MC" : "AZ"} ${policy}`, value: rate });
    const cells = report === undefined ? ["-", "-", "-", "-"] : [(report.cache.hitRate * 100).toFixed(2) + "%", report.latency.ttftMs.p99.toFixed(0), report.cost.usdPerMTok.toFixed(2), report.energy.joulesPerToken.toFixed(2)];
    console.log(`| ${policy} | ${rate.toFixed(2)} | ${scale.toFixed(3)} | ${cells.join(" | ")} |`);
    process.stderr.write(`  ${name} ${policy}: ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  console.log("");
}
await mkdir(outDir, { recursive: true });
await writeFile(
  resolve(outDir, "routing-policies.svg"),
  barChart({ title: "Highest request rate meeting the SLO for 90% of requests", subtitle: `${replicas} x H100 TP${tp}, Llama-3.1-70B FP8 (MC = Mooncake, AZ = Azure)`, xLabel: "trace and policy", yLabel: "requests/s", labels: bars.map((b) => b.label), values: bars.map((b) => b.value) }),
);
console.log(`chart: ${resolve(outDir, "routing-policies.svg")}`);
