/**
 * Model cascades: a model alias served by a light model first, escalating to
 * a heavy one when the request looks hard up front, or when the light
 * model's answer looks unsure. Pure decisions over request features; the
 * gateway runs the legs.
 *
 * Up front (decideCascade), in order; the first that applies decides:
 *   1. an explicit hint ("light" / "heavy") from the caller;
 *   2. reasoning effort listed in escalate.reasoningEffort -> heavy;
 *   3. prompt tokens >= escalate.minPromptTokens -> heavy;
 *   4. prompt text containing one of escalate.keywords (case-insensitive,
 *      whole words or phrases) -> heavy;
 *   5. otherwise light.
 * After the light leg (shouldEscalate): its mean token log-probability below
 * escalate.minMeanLogprob -> run the heavy leg. No logprobs, no escalation.
 */

export interface CascadeEscalation {
  /** Reasoning efforts that go straight to the heavy model, e.g. ["high"]. */
  readonly reasoningEffort?: readonly string[];
  /** Prompts at least this long (tokens) go straight to the heavy model. */
  readonly minPromptTokens?: number;
  /** Words or phrases in the prompt that send it to the heavy model. */
  readonly keywords?: readonly string[];
  /** A light answer whose mean token logprob is below this is redone by the heavy model, e.g. -1.2. */
  readonly minMeanLogprob?: number;
}

export interface CascadeConfig {
  readonly light: string;
  readonly heavy: string;
  readonly escalate?: CascadeEscalation;
}

export type CascadeLeg = "light" | "heavy";

export type CascadeReason = "hint" | "reasoning_effort" | "prompt_length" | "keyword" | "default";

export interface CascadeFeatures {
  /** The caller's explicit choice (e.g. a header), honoured first. */
  readonly hint?: CascadeLeg;
  /** OpenAI `reasoning_effort` ("minimal", "low", "medium", "high"). */
  readonly reasoningEffort?: string;
  readonly promptTokens?: number;
  /** Text of the prompt (all messages) for keyword matching. */
  readonly text?: string;
}

export interface CascadeDecision {
  readonly leg: CascadeLeg;
  /** The model to run: cfg.light or cfg.heavy. */
  readonly model: string;
  readonly reason: CascadeReason;
  /** The keyword that matched, for reason "keyword". */
  readonly keyword?: string;
}

export class CascadeConfigError extends Error {
  override readonly name = "CascadeConfigError";
}

/** A validated cascade with its keyword matcher compiled once. */
export interface Cascade {
  readonly config: CascadeConfig;
  readonly efforts: ReadonlySet<string>;
  readonly keywordPattern: RegExp | undefined;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Validates a cascade config (throws CascadeConfigError naming each problem) and compiles it. */
export function compileCascade(raw: unknown, alias = "cascade"): Cascade {
  const issues: string[] = [];
  const obj = typeof raw === "object" && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  if (obj === undefined) throw new CascadeConfigError(`${alias}: a cascade is { light, heavy, escalate? }`);
  for (const k of Object.keys(obj)) if (!["light", "heavy", "escalate"].includes(k)) issues.push(`unknown key "${k}"; known: light, heavy, escalate`);
  for (const k of ["light", "heavy"] as const) if (typeof obj[k] !== "string" || obj[k] === "") issues.push(`${k} must be a model name`);
  const esc = obj.escalate;
  let escalate: CascadeEscalation = {};
  if (esc !== undefined) {
    if (typeof esc !== "object" || esc === null || Array.isArray(esc)) issues.push("escalate must be an object");
    else {
      const e = esc as Record<string, unknown>;
      const known = ["reasoningEffort", "minPromptTokens", "keywords", "minMeanLogprob"];
      for (const k of Object.keys(e)) if (!known.includes(k)) issues.push(`escalate: unknown key "${k}"; known: ${known.join(", ")}`);
      const strings = (k: string): readonly string[] | undefined => {
        const v = e[k];
        if (v === undefined) return undefined;
        if (!Array.isArray(v) || !v.every((x) => typeof x === "string" && x.trim() !== "")) {
          issues.push(`escalate.${k} must be a list of non-empty strings`);
          return undefined;
        }
        return v as string[];
      };
      const reasoningEffort = strings("reasoningEffort");
      const keywords = strings("keywords");
      const minPromptTokens = e.minPromptTokens;
      if (minPromptTokens !== undefined && (typeof minPromptTokens !== "number" || !Number.isInteger(minPromptTokens) || minPromptTokens < 1)) {
        issues.push("escalate.minPromptTokens must be a positive integer");
      }
      const minMeanLogprob = e.minMeanLogprob;
      if (minMeanLogprob !== undefined && (typeof minMeanLogprob !== "number" || !(minMeanLogprob <= 0))) issues.push("escalate.minMeanLogprob must be a number <= 0 (a log-probability)");
      escalate = {
        ...(reasoningEffort !== undefined ? { reasoningEffort } : {}),
        ...(keywords !== undefined ? { keywords } : {}),
        ...(typeof minPromptTokens === "number" ? { minPromptTokens } : {}),
        ...(typeof minMeanLogprob === "number" ? { minMeanLogprob } : {}),
      };
    }
  }
  if (issues.length > 0) throw new CascadeConfigError(`${alias}: invalid cascade:\n  ${issues.join("\n  ")}`);
  const config: CascadeConfig = { light: obj.light as string, heavy: obj.heavy as string, escalate };
  const kws = escalate.keywords ?? [];
  // Whole words: the keyword is not glued to a letter or digit on either side.
  const keywordPattern = kws.length === 0 ? undefined : new RegExp(`(?<![\\p{L}\\p{N}])(?:${kws.map((k) => escapeRegExp(k.trim())).join("|")})(?![\\p{L}\\p{N}])`, "iu");
  return { config, efforts: new Set((escalate.reasoningEffort ?? []).map((x) => x.toLowerCase())), keywordPattern };
}

/** Which leg runs first. */
export function decideCascade(c: Cascade, f: CascadeFeatures): CascadeDecision {
  const { light, heavy, escalate } = c.config;
  const to = (leg: CascadeLeg, reason: CascadeReason, keyword?: string): CascadeDecision => ({ leg, model: leg === "light" ? light : heavy, reason, ...(keyword !== undefined ? { keyword } : {}) });
  if (f.hint !== undefined) return to(f.hint, "hint");
  if (f.reasoningEffort !== undefined && c.efforts.has(f.reasoningEffort.toLowerCase())) return to("heavy", "reasoning_effort");
  const minTokens = escalate?.minPromptTokens;
  if (minTokens !== undefined && f.promptTokens !== undefined && f.promptTokens >= minTokens) return to("heavy", "prompt_length");
  if (c.keywordPattern !== undefined && f.text !== undefined) {
    const m = c.keywordPattern.exec(f.text);
    if (m !== null) return to("heavy", "keyword", m[0]);
  }
  return to("light", "default");
}

/** Mean of token log-probabilities; NaN for none. */
export function meanLogprob(logprobs: ArrayLike<number>): number {
  if (logprobs.length === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < logprobs.length; i++) sum += logprobs[i]!;
  return sum / logprobs.length;
}

/** After the light leg: redo on the heavy model? False when no threshold is set or the mean is unknown (NaN / undefined). */
export function shouldEscalate(c: Cascade, mean: number | undefined): boolean {
  const min = c.config.escalate?.minMeanLogprob;
  if (min === undefined || mean === undefined || Number.isNaN(mean)) return false;
  return mean < min;
}
