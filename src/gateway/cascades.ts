import { FlotillaError } from "../core/errors.js";
import { estimateTokens, promptText, type GenerationRequest } from "../core/request.js";
import type { TextSink } from "../engines/engine.js";
import type { Replica, ServedModel } from "../fleet/fleet.js";
import { decideCascade, meanLogprob, shouldEscalate, type Cascade, type CascadeDecision } from "../scheduler/cascade.js";
import type { Dispatched, Dispatcher } from "./dispatcher.js";

/**
 * Model cascades at the gateway: which leg of an alias a request starts on,
 * and, for a cascade that judges its light model's confidence, running the
 * light leg to a verdict. The decisions themselves are scheduler/cascade.ts.
 */

export interface Target {
  readonly model: ServedModel;
  /** For a cascade alias: the leg chosen up front and why. */
  readonly leg?: CascadeDecision;
  /** Set when the light leg must prove itself confident before the client gets it. */
  readonly probe?: Cascade;
}

/** The model a request runs on: itself, or for a cascade alias the leg its features call for. */
export function target(
  cascades: ReadonlyMap<string, Cascade>,
  dispatcher: Dispatcher,
  name: string,
  hint: string | string[] | undefined,
  reasoningEffort: string | null | undefined,
  generation: GenerationRequest,
): Target {
  const cascade = cascades.get(name);
  if (cascade === undefined) return { model: dispatcher.model(name) };
  if (hint !== undefined && hint !== "light" && hint !== "heavy") {
    throw new FlotillaError("invalid_request", `x-flotilla-cascade must be "light" or "heavy", got ${JSON.stringify(hint)}`, { param: "x-flotilla-cascade" });
  }
  const { escalate, light } = cascade.config;
  const leg = decideCascade(cascade, {
    ...(hint === undefined ? {} : { hint }),
    ...(reasoningEffort == null ? {} : { reasoningEffort }),
    ...(escalate?.minPromptTokens === undefined ? {} : { promptTokens: dispatcher.promptTokens(dispatcher.model(light), generation) ?? estimateTokens(generation) }),
    ...(cascade.keywordPattern === undefined ? {} : { text: promptText(generation.prompt) }),
  });
  const probe = leg.leg === "light" && escalate?.minMeanLogprob !== undefined ? cascade : undefined;
  return { model: dispatcher.model(leg.model), leg, ...(probe === undefined ? {} : { probe }) };
}

export type Verdict =
  /** Confident: the client gets this answer, replayed from `pieces`. */
  | { readonly escalate: false; readonly light: Dispatched; readonly pieces: readonly (readonly [string, number])[]; readonly meanLogprob: number }
  /** Unsure: the heavy model answers; the light leg is metered all the same. */
  | { readonly escalate: true; readonly light: Dispatched; readonly meanLogprob: number };

/**
 * Runs the light leg with logprobs on, holding its text back, and judges it.
 * The logprobs stay in the answer only if the client asked for them.
 */
export async function judgeLightLeg(
  probe: Cascade,
  run: (request: GenerationRequest, onText: TextSink) => Promise<Dispatched>,
  generation: GenerationRequest,
): Promise<Verdict> {
  const pieces: [string, number][] = [];
  const scored = { ...generation, sampling: { ...generation.sampling, logprobs: generation.sampling.logprobs ?? 0 } };
  const light = await run(scored, (text, tokens) => pieces.push([text, tokens]));
  const mean = meanLogprob((light.logprobs ?? []).map((l) => l.logprob));
  if (shouldEscalate(probe, mean)) return { escalate: true, light, meanLogprob: mean };
  return { escalate: false, light: generation.sampling.logprobs === undefined ? withoutLogprobs(light) : light, pieces, meanLogprob: mean };
}

/** Sends a kept light answer on as if it were being generated now. */
export function replay(verdict: Verdict & { escalate: false }, onText: TextSink, onAttempt: (r: Replica) => void): Dispatched {
  onAttempt(verdict.light.replica);
  for (const [text, tokens] of verdict.pieces) onText(text, tokens);
  return verdict.light;
}

function withoutLogprobs(d: Dispatched): Dispatched {
  const { logprobs: _scored, ...rest } = d;
  return rest;
}
