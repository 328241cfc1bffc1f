/**
 * One routing decision as the live dispatcher and the simulator both report
 * it: to a caller that asks to hear them (explain, the parity test that
 * holds the twin to the fleet's rules), never on the hot path otherwise.
 */
import type { RejectReason, RouteTrace } from "./pipeline.js";

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
  /** Each plugin's time and each candidate's scores (route()'s RouteTrace), when the decider was asked for them. */
  readonly trace?: RouteTrace;
}

export type DecisionListener = (decision: Decision) => void;

/** The indices of the ready candidates, for a Decision. */
export function readyIndices(candidates: readonly { readonly index: number; readonly ready: boolean }[]): number[] {
  const out: number[] = [];
  for (const c of candidates) if (c.ready) out.push(c.index);
  return out;
}

/** One decision as people read it: replica names for indices, scores by scorer to 4 places, plugin times in µs. */
export function explainDecision(d: Decision, names?: readonly string[]): Record<string, unknown> {
  const id = (i: number): string | number => names?.[i] ?? i;
  const scorers = d.trace?.plugins.filter((p) => p.name.startsWith("scorer:")).map((p) => p.name.slice("scorer:".length)) ?? [];
  return {
    chosen: typeof d.outcome === "number" ? id(d.outcome) : null,
    ...(typeof d.outcome === "string" ? { rejected: d.outcome } : {}),
    resume: d.resume,
    ready: d.ready.map(id),
    ...(d.trace === undefined
      ? {}
      : {
          scores: (d.trace.scored ?? []).map((s) => ({ replica: id(s.index), total: round4(s.total), by: Object.fromEntries(s.scores.map((x, k) => [scorers[k] ?? k, round4(x)])) })),
          plugins_us: Object.fromEntries(d.trace.plugins.map((p) => [p.name, round4(p.us)])),
          decision_us: round4(d.trace.plugins.reduce((sum, p) => sum + p.us, 0)),
        }),
  };
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
