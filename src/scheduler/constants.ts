/**
 * Per-replica routing constants from the hardware model, for the Candidate
 * fields the TTFT, cost and energy scorers read. Computed once per replica
 * kind (they do not change per request), never on the decision path.
 */
import { DEFAULT_PUE, DEFAULT_USD_PER_KWH, batchPrefillEnergy, decodeStepEnergy, maxBatch, prefillMs, servingPoint } from "../hardware/index.js";
import type { EnergyProfile, PerfProfile } from "../hardware/index.js";

export interface RouteConstants {
  /** Mean prefill ms per prompt token for a prompt of `inputTokens` alone on the replica. */
  readonly prefillMsPerToken: number;
  /** Serving cost per million output tokens at the steady-state serving point (device time plus electricity). */
  readonly usdPerMTok: number;
  /** Facility joules (PUE included) per output token at that serving point, prefill included. */
  readonly joulesPerToken: number;
  readonly kvCapacityTokens: number;
}

export interface RouteConstantsOptions {
  /** The whole replica's price per hour (all its devices). */
  readonly usdPerHour: number;
  readonly pue?: number;
  readonly usdPerKwh?: number;
  /** Serving point: prompt and output lengths (default 2048 and 256), batch (default: as many as the KV holds, capped). */
  readonly inputTokens?: number;
  readonly outputTokens?: number;
  readonly batch?: number;
}

export function routeConstants(p: PerfProfile, e: EnergyProfile, opts: RouteConstantsOptions): RouteConstants {
  const input = opts.inputTokens ?? 2048;
  const output = opts.outputTokens ?? 256;
  const batch = Math.max(1, opts.batch ?? maxBatch(p, input, output));
  const pue = opts.pue ?? DEFAULT_PUE;
  const usdPerKwh = opts.usdPerKwh ?? DEFAULT_USD_PER_KWH;
  const sp = servingPoint(p, batch, input, output);
  const cycleMs = sp.batchPrefillMs + output * sp.tpotMs;
  const cycleJ =
    (batchPrefillEnergy(p, e, batch, input).joulesPerDevice + output * decodeStepEnergy(p, e, batch, batch * (input + output / 2)).joulesPerDevice) * p.tp * pue;
  const tokens = batch * output;
  const usd = (opts.usdPerHour * cycleMs) / 3_600_000 + (cycleJ / 3_600_000) * usdPerKwh;
  return {
    prefillMsPerToken: prefillMs(p, input) / input,
    usdPerMTok: tokens > 0 ? (usd * 1e6) / tokens : Infinity,
    joulesPerToken: tokens > 0 ? cycleJ / tokens : Infinity,
    kvCapacityTokens: p.kvCapacityTokens,
  };
}
