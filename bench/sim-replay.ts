/**
 * The full Mooncake conversation trace (12,031 requests, one hour of Kimi's
 * production traffic) through the production router over 16 simulated
 * replicas (Llama-3.1-70B, FP8, tensor-parallel 2 on H100s by default):
 * wall time and simulated events per second. Target: <= 5 s on 2 cores.
 *
 *   node --import tsx bench/sim-replay.ts [--rounds 5] [--replicas 16] [--hw h100] [--model llama-3.1-70b] [--precision fp8] [--tp 2] [--no-chunked-prefill]
 *
 * Prints a Markdown table. Each round is a fresh simulation of the whole trace
 * in this process (the trace is read once; its load time is shown apart).
 */
import { availableParallelism, cpus } from "node:os";
import { resolve } from "node:path";
import { resolveSimFleet } from "../src/sim/fleet-file.js";
import { fmt, table } from "../src/sim/markdown.js";
import { buildReport } from "../src/sim/report.js";
import { simulate } from "../src/sim/simulator.js";
import { loadTrace } from "../src/sim/traces.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const rounds = Number(arg("rounds", "5"));
const replicas = Number(arg("replicas", "16"));
const hw = arg("hw", "h100");
const model = arg("model", "llama-3.1-70b");
const precision = arg("precision", "fp8");
const tp = Number(arg("tp", "2"));
const chunked = !process.argv.includes("--no-chunked-prefill");
const path = resolve(import.meta.dirname, "../../shared/data/traces/mooncake_conversation.jsonl");

const t0 = performance.now();
const trace = await loadTrace(path);
const loadMs = performance.now() - t0;
const fleet = resolveSimFleet({
  islands: [{ name: hw, hardware: hw, count: replicas, model, precision, tp }],
  engine: { chunked_prefill: chunked },
});

const walls: number[] = [];
let last: ReturnType<typeof simulate> | undefined;
for (let r = 0; r < rounds; r++) {
  last = simulate({ fleet, trace });
  walls.push(last.wallMs);
}
const result = last!;
const report = buildReport(result);
const sorted = [...walls].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)]!;
const best = sorted[0]!;

process.stdout.write(`## Mooncake conversation trace, ${replicas} x ${hw} ${model} ${precision} tp ${tp}${chunked ? "" : ", whole-prompt prefill"}\n\n`);
process.stdout.write(`node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}), ${rounds} rounds\n\n`);
process.stdout.write(
  `${table(
    ["requests", "trace load", "simulate (median)", "simulate (best)", "events", "events/s (median)", "simulated", "x real time", "µs per routing decision"],
    [
      [
        trace.count.toLocaleString("en-US"),
        `${fmt(loadMs)} ms`,
        `${fmt(median / 1000)} s`,
        `${fmt(best / 1000)} s`,
        result.events.toLocaleString("en-US"),
        Math.round((result.events / median) * 1000).toLocaleString("en-US"),
        `${fmt(result.endMs / 1000)} s`,
        `${fmt(result.endMs / median)}x`,
        fmt(report.simulation.decisionUs),
      ],
    ],
    new Set([0, 1, 2, 3, 4, 5, 6, 7, 8]),
  )}\n\n`,
);
const l = report.latency;
process.stdout.write(
  `${table(
    ["TTFT p50 / p99", "TPOT p50 / p99", "goodput", "cache hit (blocks)", "output tok/s", "J/token", "$/Mtok"],
    [
      [
        `${fmt(l.ttftMs.p50)} / ${fmt(l.ttftMs.p99)} ms`,
        `${fmt(l.tpotMs.p50)} / ${fmt(l.tpotMs.p99)} ms`,
        `${(report.goodput.share * 100).toFixed(1)}%`,
        `${(report.cache.hitRate * 100).toFixed(2)}%`,
        fmt(report.throughput.outputTokensPerS),
        fmt(report.energy.joulesPerToken),
        fmt(report.cost.usdPerMTok),
      ],
    ],
  )}\n`,
);
