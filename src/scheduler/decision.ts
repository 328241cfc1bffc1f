/**
 * One routing decision as the live dispatcher and the simulator both report
 * it: to a caller that asks to hear them (explain, the parity test that
 * holds the twin to the fleet's rules), never on the hot path otherwise.
 */
import type { RejectReason } from "./pipeline.js";

export interface Decision {
  /** The deciding side's clock, ms. */
  readonly atMs: number;
  readonly promptTokens: number | undefined;
  readonly maxTokens: number | undefined;
  /** The rest of an answer another replica broke off. */
  readonly resume: boolean;
  /** Indices of the candidates that were ready. */
  readonly ready: readonly number[];
  /** The chosen replica's index, or why none was. */
  readonly outcome: number | RejectReason;
}

export type DecisionListener = (decision: Decision) => void;

/** The indices of the ready candidates, for a Decision. */
export function readyIndices(candidates: readonly { readonly index: number; readonly ready: boolean }[]): number[] {
  const out: number[] = [];
  for (const c of candidates) if (c.ready) out.push(c.index);
  return out;
}
