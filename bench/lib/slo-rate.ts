/**
 * What the routing benchmarks share: which requests could meet the TTFT
 * objective at all, the share that did in a run, and the highest replay rate
 * at which a criterion holds (bisection over the rate scale).
 */
import { prefillMs } from "../../src/hardware/index.js";
import type { SimFleet } from "../../src/sim/fleet-file.js";
import { buildReport, type SimReport } from "../../src/sim/report.js";
import { STATUS, type SimResult } from "../../src/sim/simulator.js";
import type { Trace } from "../../src/sim/traces.js";

/** Prompt tokens request i could find cached with a perfect cache: the leading blocks any earlier request had. */
export function perfectHits(trace: Trace): Int32Array {
  const seen = new Set<number>();
  const cached = new Int32Array(trace.count);
  for (let i = 0; i < trace.count; i++) {
    const a = trace.blockOffsets[i]!;
    const b = trace.blockOffsets[i + 1]!;
    let h = a;
    while (h < b && seen.has(trace.blockIds[h]!)) h++;
    for (let j = a; j < b; j++) seen.add(trace.blockIds[j]!);
    cached[i] = Math.min((h - a) * trace.blockTokens, trace.inputTokens[i]! - 1);
  }
  return cached;
}

/** Whether request i could meet the TTFT SLO alone on an idle replica with a perfect cache in HBM. */
export function feasibleMask(trace: Trace, f: SimFleet): Uint8Array {
  const p = f.islands[0]!.profile;
  const cached = perfectHits(trace);
  const ok = new Uint8Array(trace.count);
  for (let i = 0; i < trace.count; i++) ok[i] = prefillMs(p, trace.inputTokens[i]! - cached[i]!, cached[i]!) <= f.slo.ttftMs ? 1 : 0;
  return ok;
}

export interface Probe {
  readonly report: SimReport;
  /** Share of all requests meeting the SLO, and of the feasible ones. */
  readonly all: number;
  readonly feasible: number;
}

/** A run's report, and the shares of all and of feasible requests that met the fleet's SLO. */
export function probeOf(result: SimResult, trace: Trace, fleet: SimFleet, feasible: Uint8Array): Probe {
  const { firstTokenMs, finishMs, status } = result.requests;
  let good = 0;
  let total = 0;
  for (let i = 0; i < trace.count; i++) {
    if (feasible[i] !== 1) continue;
    total++;
    if (status[i] !== STATUS.done) continue;
    const out = trace.outputTokens[i]!;
    const ttft = firstTokenMs[i]! - result.trace.arrivalMs[i]!;
    const tpot = out > 1 ? (finishMs[i]! - firstTokenMs[i]!) / (out - 1) : 0;
    if (ttft <= fleet.slo.ttftMs && tpot <= fleet.slo.tpotMs) good++;
  }
  const report = buildReport(result);
  return { report, all: report.goodput.share, feasible: total > 0 ? good / total : 0 };
}

/**
 * Highest scale in [1/64, 64] at which `meets` holds: from x1, doubling or
 * halving to bracket it, then `steps` bisections in log space inside the
 * factor-2 bracket (5 steps: about 2%). 0 when even x1/64 fails. Callers
 * memoise `run` by scale, so two criteria share their probes.
 */
export function sustainable(run: (scale: number) => Probe, meets: (p: Probe) => boolean, steps: number): { scale: number; at: Probe | undefined } {
  let lo: number;
  let hi: number;
  let best: Probe | undefined;
  const first = run(1);
  if (meets(first)) {
    best = first;
    lo = 1;
    for (hi = 2; hi <= 64; hi *= 2) {
      const p = run(hi);
      if (!meets(p)) break;
      best = p;
      lo = hi;
    }
    if (hi > 64) return { scale: 64, at: best };
  } else {
    hi = 1;
    for (lo = 0.5; ; lo /= 2) {
      const p = run(lo);
      if (meets(p)) {
        best = p;
        break;
      }
      if (lo <= 1 / 64) return { scale: 0, at: undefined };
      hi = lo;
    }
  }
  for (let i = 0; i < steps; i++) {
    const mid = Math.sqrt(lo * hi);
    const p = run(mid);
    if (meets(p)) {
      lo = mid;
      best = p;
    } else hi = mid;
  }
  return { scale: lo, at: best };
}

/** `run` remembering its probes by scale. */
export function memoised(run: (scale: number) => Probe): { run: (scale: number) => Probe; runs: () => number } {
  const memo = new Map<number, Probe>();
  return {
    run: (scale) => {
      let p = memo.get(scale);
      if (p === undefined) memo.set(scale, (p = run(scale)));
      return p;
    },
    runs: () => memo.size,
  };
}
