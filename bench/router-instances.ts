/**
 * Several gateways behind one load balancer, in the twin: the Mooncake
 * conversation trace over 8 replicas, requests spread at random over N
 * router instances (each with its own prefix index and its own view of
 * load, engines reporting their load every second), for N = 1, 2, 4, 8,
 * with prefix-aware routing (each gateway's own index only), with
 * prefix-owner (the same, plus the coordination-free owner per
 * conversation start), and with prefix-aware on gateways that tell each
 * other their placements and counts every `--sync` ms (gateway/peer-sync.ts;
 * a list runs each). For each: the block hit rate at the recorded rate,
 * and the highest rate at which >= 90% of the requests that can meet the SLO
 * at all do (the routing benchmark's feasible view; arrivals with each run
 * of equal timestamps spread over their 3 s).
 *
 *   node --import tsx bench/router-instances.ts [--replicas 8] [--steps 5] [--instances 1,2,4,8] [--sync 50] [--out bench/out]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { rowChart } from "../src/sim/charts.js";
import { resolvePolicy, resolveSimFleet } from "../src/sim/fleet-file.js";
import { seededRandom } from "../src/sim/random.js";
import { buildReport } from "../src/sim/report.js";
import { simulate } from "../src/sim/simulator.js";
import { loadTrace, scaleRate, spreadTies } from "../src/sim/traces.js";
import { feasibleMask, memoised, probeOf, sustainable } from "./lib/slo-rate.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const replicas = Number(arg("replicas", "8"));
const steps = Number(arg("steps", "5"));
const instanceCounts = arg("instances", "1,2,4,8").split(",").map(Number);
const outDir = arg("out", "bench/out");
const syncs = arg("sync", "50").split(",").map(Number);
interface Variant {
  readonly label: string;
  readonly policy: string;
  readonly peerSyncMs: number;
}
const variants: Variant[] = [
  { label: "prefix-aware, own index", policy: "prefix-aware", peerSyncMs: 0 },
  { label: "prefix-owner, own index", policy: "prefix-owner", peerSyncMs: 0 },
  ...syncs.map((ms) => ({ label: `prefix-aware, peers told every ${ms} ms`, policy: "prefix-aware", peerSyncMs: ms })),
];

const fleet = resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count: replicas, model: "llama-3.1-70b", precision: "fp8", tp: 2 }] });
const recorded = await loadTrace(resolve(import.meta.dirname, "../../shared/data/traces/mooncake_conversation.jsonl"));
const trace = spreadTies(recorded, seededRandom(1));
const baseRate = trace.count / ((trace.arrivalMs[trace.count - 1]! - trace.arrivalMs[0]!) / 1000);
const feasible = feasibleMask(trace, fleet);
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

interface Row {
  readonly variant: string;
  readonly instances: number;
  readonly hits: number;
  readonly rate: number;
}
const rows: Row[] = [];
console.log(`router instances: ${replicas} x H100 TP2, Llama-3.1-70B FP8; Mooncake (${trace.count} requests, ${baseRate.toFixed(2)} req/s, ties spread over 3 s); engines report load every 1 s\n`);
console.log("| gateways share | router instances | block hits at x1 | of N = 1 | max rate, >= 90% of feasible requests meet the SLO (req/s) | of N = 1 |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const { label, policy, peerSyncMs } of variants) {
  for (const instances of instanceCounts) {
    const t = performance.now();
    const run = (scale: number): ReturnType<typeof probeOf> =>
      probeOf(simulate({ fleet, trace: scaleRate(trace, scale), policy: resolvePolicy(policy), router: { instances, peerSyncMs } }), trace, fleet, feasible);
    const hits = buildReport(simulate({ fleet, trace, policy: resolvePolicy(policy), router: { instances, peerSyncMs } })).cache.hitRate;
    const memo = memoised(run);
    const rate = sustainable(memo.run, (p) => p.feasible >= 0.9, steps).scale * baseRate;
    rows.push({ variant: label, instances, hits, rate });
    const one = rows.find((r) => r.variant === label && r.instances === 1);
    const of = (x: number, y: number | undefined): string => (y === undefined || y === 0 ? "-" : pct(x / y));
    console.log(`| ${label} | ${instances} | ${pct(hits)} | ${of(hits, one?.hits)} | ${rate.toFixed(2)} | ${of(rate, one?.rate)} |`);
    process.stderr.write(`  ${label} N=${instances}: ${memo.runs() + 1} runs, ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
}

await mkdir(outDir, { recursive: true });
const file = resolve(outDir, "router-instances.svg");
await writeFile(
  file,
  rowChart({
    title: "Several gateways: the highest rate that meets the SLO (Mooncake)",
    subtitle: `${replicas} x H100 TP2, Llama-3.1-70B FP8; >= 90% of feasible requests meet it; requests spread at random over N gateways`,
    width: 860,
    xLabel: "requests/s",
    labels: rows.map((r) => `${r.variant}, N = ${r.instances}`),
    values: rows.map((r) => r.rate),
    colors: rows.map((r) => variants.findIndex((v) => v.label === r.variant)),
  }),
);
console.log(`\nchart: ${file}`);
