import { maxBatch, servingPoint } from "../hardware/perf.js";
import type { SimIsland } from "./fleet-file.js";
import type { Trace } from "./traces.js";

/**
 * Requests/s one replica of the island serves within the TPOT objective:
 * the hardware model's steady state (servingPoint) at the largest batch
 * whose time per output token meets it, for the trace's mean prompt and
 * answer. What the predictive autoscaler divides the forecast rate by.
 * Undefined when not even one sequence meets the objective.
 */
export function replicaRps(island: SimIsland, trace: Trace, tpotMs: number): number | undefined {
  const n = trace.count;
  if (n === 0) return undefined;
  let input = 0;
  let output = 0;
  for (let i = 0; i < n; i++) {
    input += trace.inputTokens[i]!;
    output += trace.outputTokens[i]!;
  }
  input /= n;
  output = Math.max(1, output / n);
  const p = island.profile;
  let hi = Math.max(1, maxBatch(p, input, output, island.maxBatch));
  if (servingPoint(p, 1, input, output).tpotMs > tpotMs) return undefined;
  // TPOT grows with the batch: bisect for the largest batch that meets it.
  let lo = 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (servingPoint(p, mid, input, output).tpotMs <= tpotMs) lo = mid;
    else hi = mid - 1;
  }
  return servingPoint(p, lo, input, output).tokensPerS / output;
}
