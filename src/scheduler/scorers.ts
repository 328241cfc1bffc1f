/**
 * Scorers: one number per candidate, higher is better, in [0, 1] so that
 * weights compare. Each reads a few Candidate / RouteRequest fields; a
 * missing optional field makes the scorer neutral (every candidate lacking it
 * gets the same value), so a caller that cannot fill a field loses that
 * signal and nothing else. docs/routing.md has the formulas and the fields.
 */
import { hashString, rendezvousWeight } from "./hash.js";
import type { Candidate, Policy, RouteRequest, Scorer } from "./pipeline.js";

/** What a scorer returns for a candidate it knows nothing about. */
export const NEUTRAL = 0.5;

/** Work per slot: (active + queued) / max(1, slots). */
export function loadOf(c: Candidate): number {
  return (c.active + c.queued) / Math.max(1, c.slots);
}

/** 1 for an idle replica, falling towards 0 as work per slot grows. */
export const leastLoadedScorer: Scorer = {
  name: "least-loaded",
  score: (c) => 1 / (1 + (c.active + c.queued) / Math.max(1, c.slots)),
};

/** Queue depth alone: 1 / (1 + queued). Prefers replicas that can start the request now. */
export const queueScorer: Scorer = {
  name: "queue",
  score: (c) => 1 / (1 + c.queued),
};

/** Fraction of the request's blocks the replica already holds; 0 when unknown. */
export function prefixFraction(c: Candidate, r: RouteRequest): number {
  const n = r.blocks?.length ?? 0;
  const held = c.prefixBlocks;
  if (n === 0 || held === undefined || held <= 0) return 0;
  return held >= n ? 1 : held / n;
}

/**
 * Prefix overlap: prefixBlocks / blocks.length. Beyond `loadCap` work per slot
 * the overlap counts for nothing, so a hot prefix spreads to other replicas
 * instead of queueing on the one that holds it (default: no cap). A match
 * below `minMatch` of the prompt counts for nothing either (default 0): a
 * prefix every request shares (a chat template's first block) would otherwise
 * pull every new conversation onto the few replicas that served the first
 * ones — SGLang's cache-aware router has the same threshold
 * (`cache_threshold`) for the same reason.
 */
export function prefixScorer(opts: { loadCap?: number; minMatch?: number } = {}): Scorer {
  const cap = opts.loadCap ?? Infinity;
  const min = opts.minMatch ?? 0;
  if (!(cap > 0)) throw new RangeError(`prefix loadCap must be > 0, got ${cap}`);
  if (!(min >= 0 && min <= 1)) throw new RangeError(`prefix minMatch must be in [0, 1], got ${min}`);
  if (cap === Infinity && min === 0) return { name: "prefix", score: prefixFraction, readsPrefix: true };
  return {
    name: "prefix",
    readsPrefix: true,
    score: (c, r) => {
      if (loadOf(c) >= cap) return 0;
      const f = prefixFraction(c, r);
      return f >= min ? f : 0;
    },
  };
}

/** Free KV-cache share: 1 − kvUsedTokens / kvCapacityTokens, else 1 − the reported kvUsage, clamped to [0, 1]; NEUTRAL when unknown. */
export const kvScorer: Scorer = {
  name: "kv",
  score: (c) => {
    const used = c.kvUsedTokens;
    const cap = c.kvCapacityTokens;
    const u = used !== undefined && cap !== undefined && cap > 0 ? used / cap : c.kvUsage;
    if (u === undefined || Number.isNaN(u)) return NEUTRAL;
    return u <= 0 ? 1 : u >= 1 ? 0 : 1 - u;
  },
};

/**
 * Prompt tokens the replica must prefill: prompt − prefixBlocks × blockTokens.
 * The prompt is promptTokens, or blocks × blockTokens when uncounted.
 */
export function uncachedTokens(c: Candidate, r: RouteRequest): number {
  const bt = r.blockTokens ?? 0;
  const prompt = r.promptTokens ?? (r.blocks?.length ?? 0) * bt;
  return Math.max(0, prompt - (c.prefixBlocks ?? 0) * bt);
}

/**
 * Predicted time to first token in ms, or undefined when the candidate lacks
 * the inputs: predictedTtftMs if the caller gave one; else
 *   wait + uncachedTokens × prefillMsPerToken,
 * where wait = queueWaitMs, or pendingPrefillTokens × prefillMsPerToken, or
 * (coarsely, each queued request taken as long as this one)
 * queued × uncachedTokens × prefillMsPerToken.
 */
export function predictTtftMs(c: Candidate, r: RouteRequest): number | undefined {
  if (c.predictedTtftMs !== undefined) return c.predictedTtftMs;
  const perToken = c.prefillMsPerToken;
  if (perToken === undefined) return undefined;
  const own = uncachedTokens(c, r);
  const wait = c.queueWaitMs ?? (c.pendingPrefillTokens ?? c.queued * own) * perToken;
  return wait + own * perToken;
}

function positiveScale(name: string, v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a positive finite number, got ${v}`);
  return v;
}

/**
 * Predicted TTFT: 1 / (1 + ttft / scale), scale = the request's ttftSloMs, else
 * `scaleMs` (default 1000). NEUTRAL when the TTFT cannot be predicted.
 */
export function ttftScorer(opts: { scaleMs?: number } = {}): Scorer {
  const scale = positiveScale("ttft scaleMs", opts.scaleMs ?? 1000);
  return {
    name: "ttft",
    readsPrefix: true,
    score: (c, r) => {
      const t = predictTtftMs(c, r);
      return t === undefined ? NEUTRAL : 1 / (1 + Math.max(0, t) / (r.ttftSloMs ?? scale));
    },
  };
}

/**
 * SLO attainment: 1 if the predicted TTFT meets the objective (the request's
 * ttftSloMs, else `sloMs`, default 2000), else 0.5 × slo / ttft, so a miss
 * always scores below a hit and a near miss above a far one. 1 when the TTFT
 * cannot be predicted (nothing says the replica would miss).
 */
export function sloScorer(opts: { sloMs?: number } = {}): Scorer {
  const slo = positiveScale("slo sloMs", opts.sloMs ?? 2000);
  return {
    name: "slo",
    readsPrefix: true,
    score: (c, r) => {
      const t = predictTtftMs(c, r);
      if (t === undefined) return 1;
      const target = r.ttftSloMs ?? slo;
      return t <= target ? 1 : (0.5 * target) / t;
    },
  };
}

/** Cheapness: 1 / (1 + usdPerMTok / scale), scale default 1 USD per million tokens; NEUTRAL when unknown. */
export function costScorer(opts: { scaleUsdPerMTok?: number } = {}): Scorer {
  const scale = positiveScale("cost scaleUsdPerMTok", opts.scaleUsdPerMTok ?? 1);
  return {
    name: "cost",
    score: (c) => (c.usdPerMTok === undefined || Number.isNaN(c.usdPerMTok) ? NEUTRAL : 1 / (1 + Math.max(0, c.usdPerMTok) / scale)),
  };
}

/** Frugality: 1 / (1 + joulesPerToken / scale), scale default 1 J per token; NEUTRAL when unknown. */
export function energyScorer(opts: { scaleJoulesPerToken?: number } = {}): Scorer {
  const scale = positiveScale("energy scaleJoulesPerToken", opts.scaleJoulesPerToken ?? 1);
  return {
    name: "energy",
    score: (c) => (c.joulesPerToken === undefined || Number.isNaN(c.joulesPerToken) ? NEUTRAL : 1 / (1 + Math.max(0, c.joulesPerToken) / scale)),
  };
}

// One-entry memo: every candidate of a decision hashes the same key.
let lastKey: string | undefined;
let lastKeyHash = 0;
/** hashString of an affinity key, remembered for the next call with the same key. */
export function affinityHash(key: string): number {
  if (key !== lastKey) {
    lastKeyHash = hashString(key);
    lastKey = key;
  }
  return lastKeyHash;
}

/**
 * Session affinity: the rendezvous weight of (hash of affinityKey, replicaKey
 * ?? index) in [0, 1). Alone under argmax it sends a key to its rendezvous
 * owner among the candidates, and losing a replica moves only its own keys.
 * 0 for every candidate when the request has no key.
 */
export const affinityScorer: Scorer = {
  name: "affinity",
  score: (c, r) => (r.affinityKey === undefined ? 0 : rendezvousWeight(affinityHash(r.affinityKey), c.replicaKey ?? c.index)),
};

/**
 * Whether routing with `policy` needs the prompt hashed into blocks; a caller
 * can skip hashing (and the prefix index) entirely when it does not.
 */
export function policyReadsPrefix(policy: Policy): boolean {
  return policy.scorers.some(({ scorer }) => scorer.readsPrefix === true);
}
