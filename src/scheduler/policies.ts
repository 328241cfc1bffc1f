/**
 * Named policies, and policies built from config (weighted mixes of named
 * scorers and a picker). docs/routing.md describes each.
 */
import { contextFitsFilter, hasCapacityFilter, kvFitsFilter, readyFilter, standardFilters } from "./filters.js";
import { argmax, powerOfTwo, roundRobinPicker, softmax } from "./pickers.js";
import type { Filter, Picker, Policy, Scorer, WeightedScorer } from "./pipeline.js";
import {
  affinityScorer,
  costScorer,
  energyScorer,
  kvScorer,
  leastLoadedScorer,
  prefixScorer,
  queueScorer,
  sloScorer,
  ttftScorer,
} from "./scorers.js";
import { prefixOwnerScorer, type PrefixOwnerOptions } from "./prefix-owner.js";

export const leastLoaded: Policy = {
  name: "least-loaded",
  filters: standardFilters,
  scorers: [{ scorer: leastLoadedScorer, weight: 1 }],
  pick: argmax,
};

/**
 * Round robin over the candidates that pass the filters. The rotation counter
 * lives in the policy object, so each call returns a new, independent policy
 * (and `policies["round-robin"]` returns a fresh one on every read). One
 * dispatcher or one simulation should hold one.
 */
export function roundRobin(): Policy {
  return { name: "round-robin", filters: standardFilters, scorers: [], pick: roundRobinPicker() };
}

/** Least-loaded of two candidates drawn at random. */
export const powerOfTwoPolicy: Policy = {
  name: "power-of-two",
  filters: standardFilters,
  scorers: [{ scorer: leastLoadedScorer, weight: 1 }],
  pick: powerOfTwo,
};

export interface PrefixAwareOptions {
  /** Weight of the matched fraction (default 1). */
  readonly prefixWeight?: number;
  /** Weight of the least-loaded score 1 / (1 + load) (default 1). */
  readonly loadWeight?: number;
  /** Work per slot at or beyond which overlap no longer counts (default 1: the replica's slots are all taken). */
  readonly loadCap?: number;
  /** Share of the prompt a match must cover to count (default 0.25). */
  readonly minMatch?: number;
}

/**
 * Prefix overlap balanced against load:
 *   prefixWeight × matched fraction (0 once load ≥ loadCap, or below minMatch) + loadWeight / (1 + load).
 * With the defaults a replica holding 90% of the prompt wins over an idle one
 * until its slots are full; from there load alone decides, so a hot prefix
 * spreads instead of melting the replica that has it. A match under a
 * quarter of the prompt is ignored, so new conversations that share only a
 * template's first block spread by load: on Mooncake at 1/16 of the recorded
 * rate, 35.4% block hits against 30.5% without the threshold (0.5 gave 34.0%).
 */
export function prefixAware(opts: PrefixAwareOptions = {}): Policy {
  return {
    name: "prefix-aware",
    filters: standardFilters,
    scorers: [
      { scorer: prefixScorer({ loadCap: opts.loadCap ?? 1, minMatch: opts.minMatch ?? 0.25 }), weight: opts.prefixWeight ?? 1 },
      { scorer: leastLoadedScorer, weight: opts.loadWeight ?? 1 },
    ],
    pick: argmax,
  };
}
export const prefixAwarePolicy: Policy = prefixAware();

/**
 * Prefix-aware with a coordination-free owner per conversation
 * (prefix-owner.ts), for several gateways behind one load balancer:
 *   prefix (local index) + least-loaded + 0.5 × owner (bound 1.1 × mean load).
 * On Mooncake over 8 replicas (bench/router-instances.ts, 3 bisection
 * steps) weight 0.5 and bound 1.1 sustained 2.86 req/s with one gateway and
 * 2.40 with four, against 2.40 and 2.20 for weight 1 and bound 1.25; 0.25
 * with 1.0 did no better than 0.5.
 * Where a gateway's own index knows the conversation it agrees with the
 * owner (everyone sent it there); where it does not (the turn before went
 * through another gateway), the owner still sends it where the cache is.
 */
export function prefixOwner(opts: PrefixAwareOptions & PrefixOwnerOptions & { readonly ownerWeight?: number } = {}): Policy {
  const base = prefixAware(opts);
  return {
    ...base,
    name: "prefix-owner",
    scorers: [...base.scorers, { scorer: prefixOwnerScorer({ ...(opts.blocks === undefined ? {} : { blocks: opts.blocks }), ...(opts.loadFactor === undefined ? {} : { loadFactor: opts.loadFactor }) }), weight: opts.ownerWeight ?? 0.5 }],
  };
}
export const prefixOwnerPolicy: Policy = prefixOwner();

export interface CostAwareOptions {
  /** TTFT objective when the request carries none (default 2000 ms). */
  readonly sloMs?: number;
  /** Price scale of the cost score (default 1 USD/Mtok). */
  readonly scaleUsdPerMTok?: number;
}

/**
 * The cheapest replica predicted to meet the TTFT objective:
 *   4 × slo + 1 × cost + 0.05 × least-loaded.
 * Any replica meeting the SLO (slo = 1) outscores every one missing it
 * (slo ≤ 0.5, a gap of 2 that cost, at most 1, cannot close); among those
 * meeting it the cheapest wins, load breaking near-ties. If none can meet it,
 * the near misses come first.
 */
export function costAware(opts: CostAwareOptions = {}): Policy {
  return {
    name: "cost-aware",
    filters: standardFilters,
    scorers: [
      { scorer: sloScorer(opts.sloMs === undefined ? {} : { sloMs: opts.sloMs }), weight: 4 },
      { scorer: costScorer(opts.scaleUsdPerMTok === undefined ? {} : { scaleUsdPerMTok: opts.scaleUsdPerMTok }), weight: 1 },
      { scorer: leastLoadedScorer, weight: 0.05 },
    ],
    pick: argmax,
  };
}
export const costAwarePolicy: Policy = costAware();

const namedPolicies: Readonly<Record<string, () => Policy>> = {
  "least-loaded": () => leastLoaded,
  "round-robin": roundRobin,
  "power-of-two": () => powerOfTwoPolicy,
  "prefix-aware": () => prefixAwarePolicy,
  "prefix-owner": () => prefixOwnerPolicy,
  "cost-aware": () => costAwarePolicy,
};

/**
 * Every named policy by name. Stateless policies are shared objects;
 * "round-robin" is a getter that makes a fresh policy (own counter) per read.
 */
export const policies: Readonly<Record<string, Policy>> = Object.freeze(
  Object.defineProperties(
    {},
    Object.fromEntries(Object.entries(namedPolicies).map(([name, make]) => [name, name === "round-robin" ? { get: make, enumerable: true } : { value: make(), enumerable: true }])),
  ) as Record<string, Policy>,
);

export const knownPolicies: readonly string[] = Object.keys(namedPolicies);

export class PolicyConfigError extends Error {
  override readonly name = "PolicyConfigError";
}

/** A named policy; throws PolicyConfigError listing the known names. */
export function policyByName(name: string): Policy {
  const make = Object.hasOwn(namedPolicies, name) ? namedPolicies[name] : undefined;
  if (make === undefined) throw new PolicyConfigError(`unknown policy "${name}"; known policies: ${knownPolicies.join(", ")}`);
  return make();
}

// --- config

type Params = Readonly<Record<string, number>>;

interface ScorerEntry {
  /** Parameter name -> what it means. */
  readonly params: Readonly<Record<string, string>>;
  make(p: Params): Scorer;
}

const scorerRegistry: Readonly<Record<string, ScorerEntry>> = {
  "least-loaded": { params: {}, make: () => leastLoadedScorer },
  load: { params: {}, make: () => leastLoadedScorer },
  queue: { params: {}, make: () => queueScorer },
  prefix: {
    params: { loadCap: "work per slot beyond which overlap counts for nothing", minMatch: "share of the prompt a match must cover to count" },
    make: (p) => prefixScorer({ ...(p.loadCap === undefined ? {} : { loadCap: p.loadCap }), ...(p.minMatch === undefined ? {} : { minMatch: p.minMatch }) }),
  },
  kv: { params: {}, make: () => kvScorer },
  ttft: { params: { scaleMs: "TTFT at which the score is 0.5 when the request has no SLO" }, make: (p) => ttftScorer(p.scaleMs === undefined ? {} : { scaleMs: p.scaleMs }) },
  slo: { params: { sloMs: "TTFT objective when the request has none" }, make: (p) => sloScorer(p.sloMs === undefined ? {} : { sloMs: p.sloMs }) },
  cost: { params: { scaleUsdPerMTok: "price at which the score is 0.5" }, make: (p) => costScorer(p.scaleUsdPerMTok === undefined ? {} : { scaleUsdPerMTok: p.scaleUsdPerMTok }) },
  energy: {
    params: { scaleJoulesPerToken: "energy per token at which the score is 0.5" },
    make: (p) => energyScorer(p.scaleJoulesPerToken === undefined ? {} : { scaleJoulesPerToken: p.scaleJoulesPerToken }),
  },
  affinity: { params: {}, make: () => affinityScorer },
  "prefix-owner": {
    params: { blocks: "leading blocks that name a conversation (default 2)", loadFactor: "multiple of the mean load past which a replica is skipped (default 1.1)" },
    make: (p) => prefixOwnerScorer({ ...(p.blocks === undefined ? {} : { blocks: p.blocks }), ...(p.loadFactor === undefined ? {} : { loadFactor: p.loadFactor }) }),
  },
};

interface PickerEntry {
  readonly params: Readonly<Record<string, string>>;
  make(p: Params): Picker;
}

const pickerRegistry: Readonly<Record<string, PickerEntry>> = {
  argmax: { params: {}, make: () => argmax },
  "power-of-two": { params: {}, make: () => powerOfTwo },
  softmax: { params: { temperature: "sampling temperature in score units (default 0.1)" }, make: (p) => softmax(p.temperature ?? 0.1) },
  "round-robin": { params: {}, make: () => roundRobinPicker() },
};

const filterRegistry: Readonly<Record<string, Filter>> = {
  ready: readyFilter,
  "context-fits": contextFitsFilter,
  "has-capacity": hasCapacityFilter,
  "kv-fits": kvFitsFilter,
};

export const knownScorers: readonly string[] = Object.keys(scorerRegistry);
export const knownPickers: readonly string[] = Object.keys(pickerRegistry);
export const knownFilters: readonly string[] = Object.keys(filterRegistry);

/** One weighted scorer of a mix; `params` are the scorer's options (see knownScorers / docs/routing.md). */
export interface ScorerSpec {
  readonly name: string;
  readonly weight: number;
  readonly params?: Params;
}

/** A policy as config: a weighted mix of named scorers, a picker, optionally filters. */
export interface PolicySpec {
  /** Reported name (default "custom"). */
  readonly name?: string;
  /** Filter names, applied in order (default ready, context-fits, has-capacity). */
  readonly filters?: readonly string[];
  readonly scorers: readonly ScorerSpec[];
  /** "argmax" (default), "power-of-two", "softmax", "round-robin", or { name, ...params }. */
  readonly picker?: string | ({ readonly name: string } & Params);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const has = (o: object, k: string): boolean => Object.hasOwn(o, k);

function checkParams(where: string, raw: unknown, allowed: Readonly<Record<string, string>>, issues: string[]): Params {
  if (raw === undefined) return {};
  if (!isRecord(raw)) {
    issues.push(`${where}: params must be an object of numbers`);
    return {};
  }
  const out: Record<string, number> = {};
  const names = Object.keys(allowed);
  for (const [k, v] of Object.entries(raw)) {
    if (!has(allowed, k)) issues.push(`${where}: unknown parameter "${k}"; ${names.length > 0 ? `known: ${names.join(", ")}` : "it takes none"}`);
    else if (typeof v !== "number" || !Number.isFinite(v)) issues.push(`${where}: parameter "${k}" must be a finite number`);
    else out[k] = v;
  }
  return out;
}

/**
 * Builds a policy from config: a policy name (string), or a PolicySpec such as
 *   { scorers: [{ name: "prefix", weight: 2 }, { name: "load", weight: 1 }], picker: "argmax" }.
 * Throws PolicyConfigError listing every problem, each naming the known
 * scorers, pickers or filters.
 */
export function policyFromConfig(spec: unknown): Policy {
  if (typeof spec === "string") return policyByName(spec);
  if (!isRecord(spec)) throw new PolicyConfigError(`a policy is a name (${knownPolicies.join(", ")}) or an object { scorers: [{ name, weight }], picker }`);
  const issues: string[] = [];
  for (const k of Object.keys(spec)) if (!["name", "filters", "scorers", "picker"].includes(k)) issues.push(`unknown key "${k}"; known: name, filters, scorers, picker`);

  let name = "custom";
  if (spec.name !== undefined) {
    if (typeof spec.name === "string" && spec.name.length > 0) name = spec.name;
    else issues.push("name must be a non-empty string");
  }

  let filters: readonly Filter[] = standardFilters;
  if (spec.filters !== undefined) {
    if (!Array.isArray(spec.filters)) issues.push(`filters must be a list of names; known filters: ${knownFilters.join(", ")}`);
    else {
      const fs: Filter[] = [];
      spec.filters.forEach((f, i) => {
        const found = typeof f === "string" && has(filterRegistry, f) ? filterRegistry[f] : undefined;
        if (found === undefined) issues.push(`filters[${i}]: unknown filter ${JSON.stringify(f)}; known filters: ${knownFilters.join(", ")}`);
        else fs.push(found);
      });
      filters = fs;
    }
  }

  const scorers: WeightedScorer[] = [];
  if (!Array.isArray(spec.scorers) || spec.scorers.length === 0) {
    issues.push(`scorers must be a non-empty list of { name, weight }; known scorers: ${knownScorers.join(", ")}`);
  } else {
    spec.scorers.forEach((s: unknown, i) => {
      const at = `scorers[${i}]`;
      if (!isRecord(s)) {
        issues.push(`${at}: must be { name, weight, params? }; known scorers: ${knownScorers.join(", ")}`);
        return;
      }
      for (const k of Object.keys(s)) if (!["name", "weight", "params"].includes(k)) issues.push(`${at}: unknown key "${k}"; known: name, weight, params`);
      const entry = typeof s.name === "string" && has(scorerRegistry, s.name) ? scorerRegistry[s.name] : undefined;
      if (entry === undefined) issues.push(`${at}: unknown scorer ${JSON.stringify(s.name)}; known scorers: ${knownScorers.join(", ")}`);
      const weight = s.weight;
      const weightOk = typeof weight === "number" && Number.isFinite(weight) && weight >= 0;
      if (!weightOk) issues.push(`${at}: weight must be a finite number >= 0, got ${JSON.stringify(weight)}`);
      if (entry === undefined || !weightOk) return;
      const before = issues.length;
      const params = checkParams(`${at} (${String(s.name)})`, s.params, entry.params, issues);
      if (issues.length > before) return;
      try {
        scorers.push({ scorer: entry.make(params), weight });
      } catch (err) {
        issues.push(`${at} (${String(s.name)}): ${(err as Error).message}`);
      }
    });
  }

  let pick: Picker = argmax;
  if (spec.picker !== undefined) {
    const raw = spec.picker;
    const pname = typeof raw === "string" ? raw : isRecord(raw) ? raw.name : undefined;
    const entry = typeof pname === "string" && has(pickerRegistry, pname) ? pickerRegistry[pname] : undefined;
    if (entry === undefined) issues.push(`picker: unknown picker ${JSON.stringify(pname ?? raw)}; known pickers: ${knownPickers.join(", ")}`);
    else {
      let params: Params = {};
      if (isRecord(raw)) {
        const { name: _name, ...rest } = raw;
        params = checkParams(`picker (${String(pname)})`, rest, entry.params, issues);
      }
      try {
        pick = entry.make(params);
      } catch (err) {
        issues.push(`picker (${String(pname)}): ${(err as Error).message}`);
      }
    }
  }

  if (issues.length > 0) throw new PolicyConfigError(`invalid routing policy:\n  ${issues.join("\n  ")}`);
  return { name, filters, scorers, pick };
}
