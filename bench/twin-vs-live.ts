/**
 * The twin against the live fleet (issue 17): the real local llama.cpp
 * engine serving the built-in tiny model on this CPU through an in-process
 * gateway, its usage ledger timing every request. In each of three regimes
 * one run calibrates the CPU's engine profile from its ledger rows, as
 * `flotilla calibrate --from-ledger` does, and another run, of other
 * prompts, answers or concurrency, is replayed through the simulator with
 * that profile, its arrivals as they were sent, and the TTFT and TPOT
 * percentiles of both are compared. The two runs alternate in four blocks
 * each, so both meet the same load from whatever else the machine runs.
 * The calibration run is replayed too, which separates how well the
 * profile fits from how well it predicts.
 * docs/hardware-model.md ("Calibrating from the live fleet") says what the
 * regimes show.
 *
 *   node --import tsx bench/twin-vs-live.ts [--scale 1] [--parallel 8]
 *
 * Prints Markdown tables. --scale multiplies the number of requests.
 */
import { availableParallelism, cpus } from "node:os";
import type { CalibrationReport } from "../src/hardware/calibrate.js";
import type { LedgerRow } from "../src/store/types.js";
import { calibrate, driveAlternating, errors, liveLatencies, rowsOf, startLive, traceOf, ttftByBatch, twinFleet, twinLatencies, type Phase, type Sent } from "./lib/twin-live.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1] ?? fallback) : fallback;
};
const scale = arg("scale", 1);
const parallel = arg("parallel", 8);

const n = (requests: number): number => Math.max(4, Math.round(requests * scale));

/** One comparison: a run to calibrate on, and another, unlike it, to replay. */
interface Regime {
  readonly title: string;
  readonly calibrate: readonly Phase[];
  readonly replay: readonly Phase[];
}

const REGIMES: readonly Regime[] = [
  {
    title: "One request at a time, prompts of 200-480 tokens: calibrated on short answers, replaying longer answers to other prompts",
    calibrate: [{ concurrency: 1, requests: n(120), prompt: [200, 480], output: [16, 64], thinkMs: [20, 80] }],
    replay: [{ concurrency: 1, requests: n(80), prompt: [250, 450], output: [48, 160], thinkMs: [20, 120] }],
  },
  {
    title: "One request at a time, prompts of 16-480 tokens: calibrated on short answers, replaying longer answers to prompts of 100-300",
    calibrate: [{ concurrency: 1, requests: n(120), prompt: [16, 480], output: [16, 64], thinkMs: [20, 80] }],
    replay: [{ concurrency: 1, requests: n(80), prompt: [100, 300], output: [48, 160], thinkMs: [20, 120] }],
  },
  {
    title: "Concurrent requests: calibrated at concurrency 1, 2, 4 and 8, replaying concurrency 3 and 6 with other prompts and answers",
    calibrate: [1, 2, 4, 8].map((concurrency) => ({ concurrency, requests: n(40 * Math.sqrt(concurrency)), prompt: [16, 480], output: [8, 96], thinkMs: [20, 80] })),
    replay: [
      { concurrency: 3, requests: n(90), prompt: [32, 240], output: [16, 128], thinkMs: [5, 60] },
      { concurrency: 6, requests: n(150), prompt: [120, 400], output: [8, 64], thinkMs: [5, 60] },
    ],
  },
];

const ms = (x: number): string => (x >= 10 ? x.toFixed(1) : x.toFixed(2));
const pct = (x: number): string => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
const abs = (x: number | undefined): string => (x === undefined ? "-" : `${(x * 100).toFixed(1)}%`);

function comparison(title: string, sent: readonly Sent[], rows: readonly LedgerRow[], report: CalibrationReport): string {
  const live = liveLatencies(rows);
  const twin = twinLatencies(twinFleet(report.engine, parallel), traceOf(sent, rows));
  const lines = errors(live, twin).map((e) => `| ${e.metric} | ${ms(e.live)} | ${ms(e.twin)} | ${pct(e.error)} |`);
  return [`### ${title} (${rows.length} requests)`, "", "| | live ms | twin ms | twin error |", "|---|---:|---:|---:|", ...lines].join("\n");
}

function byBatch(rows: readonly LedgerRow[], report: CalibrationReport): string {
  const lines = ttftByBatch(rows, report.engine).map((b) => `| ${b.batch} | ${b.requests} | ${ms(b.liveMs)} | ${ms(b.modelMs)} | ${pct(b.modelMs / b.liveMs - 1)} |`);
  return ["### TTFT by the batch a request joined (replayed run, medians)", "", "| batch | requests | live ms | model ms | model error |", "|---:|---:|---:|---:|---:|", ...lines].join("\n");
}

function fitted(report: CalibrationReport): string {
  const p = report.engine.params;
  const e = report.error;
  return [
    "### The profile fitted to the calibration run's ledger rows",
    "",
    `computeEfficiency ${p.computeEfficiency.toFixed(3)}, bandwidthEfficiency ${p.bandwidthEfficiency.toFixed(3)}, stepOverheadMs ${p.stepOverheadMs.toFixed(3)}, layerOverheadUs ${p.layerOverheadUs.toFixed(1)}, sequenceOverheadUs ${p.sequenceOverheadUs.toFixed(1)}`,
    `prefillOverheadMs ${p.prefillOverheadMs.toFixed(3)}; fit: median |error| over ${report.groups.length} buckets: TTFT ${abs(e.ttft)}, TPOT ${abs(e.tpot)}`,
  ].join("\n");
}

/** Runs a regime on a fresh replica and reports it. */
async function run(regime: Regime, seed: number): Promise<string> {
  const live = await startLive({ parallel });
  let a: Sent[];
  let b: Sent[];
  let rowsA: LedgerRow[];
  let rowsB: LedgerRow[];
  try {
    ({ a, b } = await driveAlternating(live.url, regime.calibrate, regime.replay, 4, seed));
    // A response reaches its client just before its row is settled.
    await new Promise((r) => setTimeout(r, 500));
    rowsA = await rowsOf(live.store, a);
    rowsB = await rowsOf(live.store, b);
  } finally {
    await live.close();
  }
  const report = calibrate(rowsA);
  return [`## ${regime.title}`, fitted(report), comparison("Replaying the other run", b, rowsB, report), comparison("Replaying the calibration run itself", a, rowsA, report), byBatch(rowsB, report)].join("\n\n");
}

const sections: string[] = [];
for (const [i, regime] of REGIMES.entries()) sections.push(await run(regime, 10 * i + 1));
process.stdout.write(`# Twin vs live: ${cpus()[0]?.model ?? "CPU"}, ${availableParallelism()} cores; one replica of ${parallel} sequences, 1 thread\n\n${sections.join("\n\n")}\n`);
