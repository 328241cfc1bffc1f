import { largestBatchWithin, maxBatch, servingPoint } from "../hardware/perf.js";
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
  const batch = largestBatchWithin(p, input + output / 2, maxBatch(p, input, output, island.maxBatch), tpotMs);
  return batch === 0 ? undefined : servingPoint(p, batch, input, output).tokensPerS / output;
}
