/**
 * The simulator at fleet scale: synthetic load (Poisson, 5 requests/s per
 * device, log-normal 1,024-token prompts and 128-token answers) on 100, 1,000
 * and 10,000 simulated devices (Llama-3.1-8B, BF16, one H100 each), each size
 * in its own process so its peak RSS is its own. Also the cost of one routing
 * decision against fleet size, with candidate sampling (k = 16, what the
 * simulator does) and with a full scan (a Candidate per replica).
 *
 *   node --import tsx bench/sim-scale.ts            # 10 requests per device (~30 s)
 *   node --import tsx bench/sim-scale.ts --full     # 100 per device: 10,000 devices x 1,000,000 requests (~2 min)
 *
 * Prints Markdown tables.
 */
import { spawnSync } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import type { Candidate } from "../src/scheduler/pipeline.js";
import { route } from "../src/scheduler/pipeline.js";
import { leastLoaded } from "../src/scheduler/policies.js";
import { DEFAULT_SAMPLE_SIZE, sampleCandidates } from "../src/scheduler/sample.js";
import { resolveSimFleet } from "../src/sim/fleet-file.js";
import { fmt, table } from "../src/sim/markdown.js";
import { seededRandom } from "../src/sim/random.js";
import { simulate } from "../src/sim/simulator.js";
import { syntheticTrace } from "../src/sim/synthetic.js";

const RATE_PER_DEVICE = 5;
const SIZES = [100, 1000, 10_000] as const;

interface CaseResult {
  devices: number;
  requests: number;
  genMs: number;
  wallMs: number;
  events: number;
  decisionUs: number;
  simulatedS: number;
  peakRssMiB: number;
  completed: number;
}

/** One size, in this process: generate, simulate, measure. */
function runCase(devices: number, requests: number): CaseResult {
  const t0 = performance.now();
  const trace = syntheticTrace({ requests, ratePerS: RATE_PER_DEVICE * devices, seed: 1 });
  const genMs = performance.now() - t0;
  const fleet = resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count: devices, model: "llama-3.1-8b", tp: 1 }] });
  const r = simulate({ fleet, trace });
  let completed = 0;
  for (const s of r.requests.status) if (s === 1) completed++;
  return {
    devices,
    requests,
    genMs,
    wallMs: r.wallMs,
    events: r.events,
    decisionUs: (r.decisionMs * 1000) / r.decisions,
    simulatedS: r.endMs / 1000,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    completed,
  };
}

/** µs per decision over a snapshot of n replicas: sampled k candidates vs a Candidate for every replica. */
function decisionCost(n: number): { sampled: number; full: number } {
  const random = seededRandom(7);
  const active = Int32Array.from({ length: n }, () => Math.floor(random() * 256));
  const queued = Int32Array.from({ length: n }, () => Math.floor(random() * 8));
  const request = { promptTokens: 1024, maxTokens: 128 };
  const k = DEFAULT_SAMPLE_SIZE;
  const picked = new Int32Array(k);
  const pool: { -readonly [K in keyof Candidate]: Candidate[K] }[] = Array.from({ length: k }, () => ({ index: 0, ready: true, active: 0, queued: 0, slots: 256, maxQueue: 1024, contextSize: 131_072 }));
  const time = (rounds: number, f: () => void): number => {
    for (let i = 0; i < Math.min(rounds, 50); i++) f(); // warm up
    const t = performance.now();
    for (let i = 0; i < rounds; i++) f();
    return ((performance.now() - t) * 1000) / rounds;
  };
  let sink = 0;
  const sampled = time(100_000, () => {
    const m = sampleCandidates(n, k, random, picked);
    for (let j = 0; j < m; j++) {
      const r = picked[j]!;
      const c = pool[j]!;
      c.index = r;
      c.active = active[r]!;
      c.queued = queued[r]!;
    }
    const out = route(leastLoaded, request, pool, random);
    if (out.ok) sink += out.index;
  });
  const full = time(Math.max(20, Math.floor(2_000_000 / n)), () => {
    const all: Candidate[] = [];
    for (let r = 0; r < n; r++) all.push({ index: r, ready: true, active: active[r]!, queued: queued[r]!, slots: 256, maxQueue: 1024, contextSize: 131_072 });
    const out = route(leastLoaded, request, all, random);
    if (out.ok) sink += out.index;
  });
  if (sink < 0) process.stdout.write("");
  return { sampled, full };
}

const caseAt = process.argv.indexOf("--case");
if (caseAt > 0) {
  const devices = Number(process.argv[caseAt + 1]);
  const requests = Number(process.argv[caseAt + 2]);
  process.stdout.write(`${JSON.stringify(runCase(devices, requests))}\n`);
} else {
  const full = process.argv.includes("--full");
  const perDevice = full ? 100 : 10;
  process.stdout.write(`## Simulator at fleet scale\n\nnode ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}); ${RATE_PER_DEVICE} requests/s per device, ${perDevice} requests per device; Llama-3.1-8B BF16 on one H100 per replica; least-loaded over ${DEFAULT_SAMPLE_SIZE} sampled candidates\n\n`);
  const rows: string[][] = [];
  for (const devices of SIZES) {
    const requests = devices * perDevice;
    const child = spawnSync(process.execPath, ["--import", "tsx", import.meta.filename, "--case", String(devices), String(requests)], { encoding: "utf8", maxBuffer: 1 << 20 });
    if (child.status !== 0) throw new Error(`case ${devices} failed: ${child.stderr}`);
    const c = JSON.parse(child.stdout.trim().split("\n").pop()!) as CaseResult;
    rows.push([
      devices.toLocaleString("en-US"),
      requests.toLocaleString("en-US"),
      `${fmt(c.wallMs / 1000)} s`,
      c.events.toLocaleString("en-US"),
      Math.round((c.events / c.wallMs) * 1000).toLocaleString("en-US"),
      fmt((c.wallMs * 1000) / requests),
      fmt(c.decisionUs),
      `${fmt(c.simulatedS)} s`,
      `${fmt(c.peakRssMiB)} MiB`,
      c.completed === requests ? "all" : c.completed.toLocaleString("en-US"),
    ]);
    process.stderr.write(`${devices} devices: ${fmt(c.wallMs / 1000)} s\n`);
  }
  process.stdout.write(
    `${table(["devices", "requests", "simulate", "events", "events/s", "µs wall per request", "µs per routing decision", "simulated", "peak RSS", "completed"], rows, new Set([0, 1, 2, 3, 4, 5, 6, 7, 8]))}\n\n`,
  );
  process.stdout.write("### One routing decision against fleet size (route() with least-loaded, snapshot of random loads)\n\n");
  const cost = SIZES.map((n) => ({ n, ...decisionCost(n) }));
  process.stdout.write(
    `${table(
      ["replicas", `sampled k = ${DEFAULT_SAMPLE_SIZE} (µs)`, "full scan (µs)"],
      cost.map((c) => [c.n.toLocaleString("en-US"), fmt(c.sampled), fmt(c.full)]),
      new Set([0, 1, 2]),
    )}\n`,
  );
}
