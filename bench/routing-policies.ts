/**
 * Which router sustains the most load? For each named policy, on the Mooncake
 * and Azure conversation traces, the highest replay rate (x the trace's own)
 * at which >= 90% of requests meet the SLO (TTFT <= 2 s, TPOT <= 100 ms), by
 * bisection over the rate scale in the simulator, plus the block hit rate
 * (HBM and host-memory tier), p99 TTFT, $/Mtok and J/token at that rate.
 *
 * Before that it says how many requests could meet the TTFT SLO at all: alone
 * on an idle replica, with no cache and with a perfect one. Where more than
 * 10% cannot, no policy can reach 90% at any rate.
 *
 * Two views of the Mooncake trace, labelled apart: its arrivals as recorded
 * (rounded to 3 s: about ten requests arrive at once, so slowing the replay
 * never thins the bursts), and the same requests with each run of equal
 * timestamps spread over its 3 s (`spreadTies`). The SLO is the same in both.
 *
 *   node --import tsx bench/routing-policies.ts [--replicas 8] [--tp 2] [--host-kv-gb 256] [--steps 6] [--out bench/out]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { prefillMs, type PerfProfile } from "../src/hardware/index.js";
import { feasibleMask, memoised, perfectHits, probeOf, sustainable, type Probe } from "./lib/slo-rate.js";
import { rowChart } from "../src/sim/charts.js";
import { DEFAULT_HOST_KV_GB, resolvePolicy, resolveSimFleet, type SimFleet } from "../src/sim/fleet-file.js";
import { seededRandom } from "../src/sim/random.js";
import { hostTransfer } from "../src/sim/replica.js";
import { buildReport, type SimReport } from "../src/sim/report.js";
import { simulate } from "../src/sim/simulator.js";
import { loadTrace, scaleRate, spreadTies, type Trace } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const replicas = Number(arg("replicas", "8"));
const tp = Number(arg("tp", "2"));
const hostKvGb = Number(arg("host-kv-gb", String(DEFAULT_HOST_KV_GB)));
const steps = Number(arg("steps", "6"));
const outDir = arg("out", "bench/out");
const policyNames = ["round-robin", "least-loaded", "power-of-two", "prefix-aware", "cost-aware"];
const TRACES = resolve(import.meta.dirname, "../../shared/data/traces");
const fleetFor = (t: number, count: number): SimFleet =>
  resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count, model: "llama-3.1-70b", precision: "fp8", tp: t, host_kv_gb: hostKvGb }] });
const fleet = fleetFor(tp, replicas);
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** Shares of requests whose TTFT alone on an idle replica exceeds the SLO: no cache, perfect cache in HBM, perfect cache loaded from host memory. */
function infeasible(trace: Trace, f: SimFleet): { none: number; hbm: number; host: number } {
  const isl = f.islands[0]!;
  const p: PerfProfile = isl.profile;
  const load = hostTransfer(p, isl.energy, f.blockTokens, isl.hostLinkGBs).loadMs;
  const cached = perfectHits(trace);
  let none = 0;
  let hbm = 0;
  let host = 0;
  for (let i = 0; i < trace.count; i++) {
    const n = trace.inputTokens[i]!;
    const c = cached[i]!;
    if (prefillMs(p, n) > f.slo.ttftMs) none++;
    const warm = prefillMs(p, n - c, c);
    if (warm > f.slo.ttftMs) hbm++;
    if (warm + Math.ceil(c / f.blockTokens) * load > f.slo.ttftMs) host++;
  }
  return { none: none / trace.count, hbm: hbm / trace.count, host: host / trace.count };
}

function probe(trace: Trace, policy: string, scale: number, feasible: Uint8Array): Probe {
  return probeOf(simulate({ fleet, trace: scaleRate(trace, scale), policy: resolvePolicy(policy) }), trace, fleet, feasible);
}

const hitCells = (r: SimReport): string => `${pct(r.cache.hitRate)} (${pct(r.cache.hbmHitRate)} + ${pct(r.cache.hostHitRate)})`;

console.log(
  `routing policies: ${replicas} x H100 TP${tp} (${replicas * tp} GPUs), Llama-3.1-70B FP8, host KV tier ${hostKvGb} GB/GPU at ${fleet.islands[0]!.hostLinkGBs} GB/s; SLO TTFT <= 2 s and TPOT <= 100 ms for >= 90% of requests\n`,
);

const mooncake = await loadTrace(resolve(TRACES, "mooncake_conversation.jsonl"));
console.log("### Who can meet TTFT <= 2 s at all (Mooncake, alone on an idle replica)\n");
console.log("| fleet | no cache | perfect cache in HBM | perfect cache, loaded from host memory |");
console.log("|---|---|---|---|");
for (const t of [2, 4, 8]) {
  const s = infeasible(mooncake, fleetFor(t, 16 / t));
  console.log(`| ${16 / t} x TP${t} | ${pct(s.none)} cannot | ${pct(s.hbm)} cannot | ${pct(s.host)} cannot |`);
}
console.log("");

const views: { label: string; short: string; trace: Trace }[] = [
  { label: "mooncake_conversation.jsonl, arrivals as recorded", short: "MC", trace: mooncake },
  { label: "mooncake_conversation.jsonl, equal timestamps spread over their 3 s (seed 1)", short: "MC spread", trace: spreadTies(mooncake, seededRandom(1)) },
  { label: "azure2023_conv.csv", short: "AZ", trace: await loadTrace(resolve(TRACES, "azure2023_conv.csv")) },
];
const bars: { label: string; value: number }[] = [];
for (const v of views) {
  const trace = v.trace;
  const baseRate = trace.count / ((trace.arrivalMs[trace.count - 1]! - trace.arrivalMs[0]!) / 1000);
  const feasible = feasibleMask(trace, fleet);
  let nFeasible = 0;
  for (const f of feasible) nFeasible += f;
  console.log(`### ${v.label} (${trace.count} requests, ${baseRate.toFixed(2)} req/s as recorded; ${pct(nFeasible / trace.count)} can meet TTFT <= 2 s alone with a perfect cache)\n`);
  console.log("| policy | max rate, >= 90% of all requests meet the SLO (req/s) | x recorded | block hits there: all (HBM + host) | p99 TTFT ms | $/Mtok | J/token | max rate, >= 90% of feasible requests meet it (req/s) | x recorded | block hits there |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  const rates = { all: new Map<string, number>(), feasible: new Map<string, number>() };
  for (const policy of policyNames) {
    const t = performance.now();
    const { run, runs } = memoised((scale) => probe(trace, policy, scale, feasible));
    const all = sustainable(run, (p) => p.all >= 0.9, steps);
    const feas = sustainable(run, (p) => p.feasible >= 0.9, steps);
    rates.all.set(policy, all.scale * baseRate);
    rates.feasible.set(policy, feas.scale * baseRate);
    bars.push({ label: `${v.short} ${policy}`, value: all.scale * baseRate });
    if (v.short.startsWith("MC")) bars.push({ label: `${v.short} ${policy} (feasible)`, value: feas.scale * baseRate });
    const r = all.at?.report;
    const cells = r === undefined ? ["-", "-", "-", "-"] : [hitCells(r), r.latency.ttftMs.p99.toFixed(0), r.cost.usdPerMTok.toFixed(2), r.energy.joulesPerToken.toFixed(2)];
    const fr = feas.at?.report;
    console.log(
      `| ${policy} | ${(all.scale * baseRate).toFixed(2)} | ${all.scale.toFixed(3)} | ${cells.join(" | ")} | ${(feas.scale * baseRate).toFixed(2)} | ${feas.scale.toFixed(3)} | ${fr === undefined ? "-" : hitCells(fr)} |`,
    );
    process.stderr.write(`  ${v.short} ${policy}: ${runs()} runs, ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  for (const [what, m] of [["all requests", rates.all], ["feasible requests", rates.feasible]] as const) {
    const pa = m.get("prefix-aware")!;
    const ratio = (other: string): string => (m.get(other)! > 0 ? `${(pa / m.get(other)!).toFixed(2)}x` : pa > 0 ? "unbounded (it sustains no rate)" : "n/a (neither sustains any rate)");
    console.log(`\n${what}: prefix-aware vs round-robin ${ratio("round-robin")}; vs least-loaded ${ratio("least-loaded")}`);
  }
  console.log("");
}

// The same fleet at the recorded rate: what routing changes when no rate meets the bar.
console.log("### mooncake_conversation.jsonl at the recorded rate (x1), arrivals as recorded\n");
console.log("| policy | goodput | block hits: all (HBM + host) | share of the 36.64% bound | p50 / p99 TTFT ms | p99 TPOT ms | $/Mtok | J/token |");
console.log("|---|---|---|---|---|---|---|---|");
for (const policy of policyNames) {
  const r = buildReport(simulate({ fleet, trace: mooncake, policy: resolvePolicy(policy) }));
  console.log(
    `| ${policy} | ${pct(r.goodput.share)} | ${hitCells(r)} | ${pct(r.cache.hitRate / 0.3664)} | ${r.latency.ttftMs.p50.toFixed(0)} / ${r.latency.ttftMs.p99.toFixed(0)} | ${r.latency.tpotMs.p99.toFixed(0)} | ${r.cost.usdPerMTok.toFixed(2)} | ${r.energy.joulesPerToken.toFixed(2)} |`,
  );
}
console.log("");

await mkdir(outDir, { recursive: true });
// Mooncake and Azure differ tenfold in sustainable rate: one chart each, so neither flattens the other.
for (const [file, prefix, title] of [
  ["routing-policies-mooncake.svg", "MC", "Mooncake: highest rate at which 90% of requests (or of feasible ones) meet the SLO"],
  ["routing-policies-azure.svg", "AZ", "Azure conversations: highest rate at which 90% of requests meet the SLO"],
] as const) {
  const mine = bars.filter((b) => b.label.startsWith(prefix));
  await writeFile(
    resolve(outDir, file),
    rowChart({
      title,
      subtitle: `${replicas} x H100 TP${tp}, Llama-3.1-70B FP8, host tier ${hostKvGb} GB/GPU (spread = ties spread over 3 s; feasible = requests that can meet TTFT alone)`,
      xLabel: "requests/s",
      labels: mine.map((b) => b.label),
      values: mine.map((b) => b.value),
      colors: mine.map((b) => (b.label.includes("prefix-aware") ? 1 : 0)),
    }),
  );
  console.log(`chart: ${resolve(outDir, file)}`);
}
