/**
 * Which fleet should I run? For a workload (a trace) and a latency
 * objective, the twin searches the candidate fleets and finds, for each,
 * the fewest replicas whose replay meets the objective for the required
 * share of requests. A candidate is a setup (hardware x precision x TP)
 * serving whole requests (aggregated), or a prefill setup and a decode
 * setup with the KV crossing a link between them: disaggregated on one
 * kind of hardware, or mixed (prefill on one kind, decode on another).
 *
 * The hardware model prunes before the twin verifies (plan-bound.ts): a
 * candidate whose requests could not meet the objective even alone on idle
 * replicas is ruled out. The others are searched cheapest estimate first
 * (the estimate sees the tail a capacity bound misses), each from its
 * estimate scaled by how far replays have come above estimates so far,
 * never below its capacity bound; a candidate is not replayed where its
 * bound already costs more than a fleet found, or its estimate does,
 * scaled by the most hopeful ratio so far with a margin (money, devices,
 * or with the energy objective joules per token). Of the
 * disaggregated and mixed pairs, only the few cheapest by the estimate
 * are searched (pairsPerShape). `exhaustive` replays everything the idle
 * bound leaves: the brute force the search is checked against. Each fleet
 * found is priced (money and energy per million output tokens, devices,
 * facility power); the Pareto frontier over money, energy and devices is
 * what is worth choosing between, and the objective
 * picks one of it. The limits (peak facility power, money per hour) cap
 * replicas; a rack's power says how many racks a fleet fills.
 */
import { FleetFileError } from "./fleet-file.js";
import { DEFAULT_PUE, type EngineParams } from "../hardware/index.js";
import { aloneOf, budgetsOf, capacityOf, countBound, countEstimate, idleShare, joulesEstimate, workloadOf, type Alone, type Capacity, type Slo } from "./plan-bound.js";
import { oneReplica, overLimit, searchCandidate } from "./plan-search.js";
import type { KvLinkId } from "../hardware/links.js";
import type { SimIsland } from "./fleet-file.js";
import type { Trace } from "./traces.js";

export type PlanObjective = "cost" | "energy" | "devices";
export const FLEET_SHAPES = ["aggregated", "disaggregated", "mixed"] as const;
export type FleetShape = (typeof FLEET_SHAPES)[number];

export interface PlanInput {
  readonly model: string;
  readonly hardware: readonly string[];
  readonly precisions: readonly string[];
  readonly tps: readonly number[];
  readonly trace: Trace;
  /** Latency objectives, and the share of requests that must meet both. */
  readonly slo: Slo;
  readonly objective: PlanObjective;
  /** Most replicas an island may have before its candidate is called infeasible. */
  readonly maxReplicas: number;
  /** Which kinds of fleet to consider (default: aggregated only). */
  readonly shapes?: readonly FleetShape[];
  /** The link KV crosses in disaggregated and mixed fleets (default rdma-400g). */
  readonly kvLink?: KvLinkId;
  /** Disaggregated (and, apart, mixed) candidates replayed at most, cheapest capacity bound first (default DEFAULT_PAIRS_PER_SHAPE). */
  readonly pairsPerShape?: number;
  /** Replay every candidate, even those whose capacity bound already costs more than a fleet found, and every pair (the brute-force check). */
  readonly exhaustive?: boolean;
  readonly seed?: number;
  /** What the chosen fleet may not exceed: facility power at peak (kW) and money (USD per hour). */
  readonly limits?: { readonly facilityKw?: number; readonly usdPerHour?: number };
  /** The power one rack takes, kW (default 30): how many racks a fleet fills. */
  readonly rackKw?: number;
  /** Output tokens one user takes a month: prices the fleet per user-month. */
  readonly userTokensPerMonth?: number;
  /** Hears each candidate as its search ends. */
  readonly onCandidate?: (row: PlanRow, done: number, total: number) => void;
  /**
   * The engine every candidate runs (`flotilla calibrate --out`): its path, which
   * the chosen fleet's file names, and its parameters (on each candidate's
   * hardware, with that device's overhead factor where it was measured there).
   * Absent: the built-in parameters.
   */
  readonly profile?: { readonly path: string; readonly engine: EngineParams };
}

/**
 * A server's host (CPUs, memory, network) draws about 0.6 W for each watt
 * its accelerators draw: GPUs and HBM are about half of an AI data centre's
 * power, CPUs and network about 30% and facility overhead about 20% (AMD's
 * analysis, presented at the SK AI Summit 2024). The overhead is the fleet's
 * PUE here.
 */
export const HOST_POWER_PER_DEVICE_W = 0.6;
export const DEFAULT_RACK_KW = 30;

/**
 * Every prefill setup with every decode setup is too many to replay (72
 * setups make over 2,400 pairs); the estimate ranks them, and this many
 * of each shape are searched. 8 missed a 2.3% cheaper mixed fleet on the
 * whole Mooncake trace, which 16 finds (BENCHMARKS.md). The brute-force bench
 * (bench/plan-brute-force.ts) checks what that loses.
 */
export const DEFAULT_PAIRS_PER_SHAPE = 16;

export type Setup = { readonly hardware: string; readonly precision: string; readonly tp: number };

/** A fleet to size: `setup` decodes (and, aggregated, prefills too); `prefill`, where it disaggregates, prefills. */
export interface Candidate {
  readonly shape: FleetShape;
  readonly setup: Setup;
  readonly prefill?: Setup;
}

/**
 * One candidate, at the fewest replicas that met the objective (or, where
 * none did, at the most tried). `hardware` … `replicas` are the island that
 * decodes; a disaggregated or mixed fleet's prefill island is `prefill`.
 */
export interface PlanRow {
  readonly shape: FleetShape;
  readonly hardware: string;
  readonly precision: string;
  readonly tp: number;
  readonly replicas: number;
  readonly prefill?: Setup & { readonly replicas: number };
  /** Devices of every island. */
  readonly devices: number;
  /** Whether the objective was met. */
  readonly meets: boolean;
  /** Share of requests that met both latency objectives. */
  readonly goodShare: number;
  readonly usdPerMTok: number;
  readonly joulesPerToken: number;
  readonly usdPerHour: number;
  /** Mean facility power over the replay, kW (devices, with the PUE). */
  readonly facilityKw: number;
  /** Facility power with every device at its TDP, its host's share and the PUE, kW: what the site must provide. */
  readonly peakKw: number;
  /** Racks it fills at the rack power (a replica's server never split between racks). */
  readonly racks: number;
  /** Money per user-month, where a user's monthly output tokens were given. */
  readonly usdPerUserMonth?: number;
  /** Not met because a limit (power or money) capped its replicas first. */
  readonly cappedBy?: "power" | "money";
  readonly ttftP99Ms: number;
  readonly tpotP99Ms: number;
  /** KV moved from prefill to decode replicas, GB, and its p99 crossing time (disaggregated and mixed fleets). */
  readonly kvTransfer?: { readonly gb: number; readonly p99Ms: number };
  /** Twin replays this candidate's search took. */
  readonly replays: number;
}

export interface PlanResult {
  /** Every candidate replayed, best first by the objective (those that meet it before those that do not). */
  readonly rows: readonly PlanRow[];
  /** Setups that cannot meet the objective at any replica count, and why: the model does not fit at that TP, or its prefill alone is too slow. */
  readonly unfit: readonly Unfit[];
  /** The rows no other row beats on money, energy and devices at once. */
  readonly frontier: readonly PlanRow[];
  /** The objective's choice; undefined when no candidate met the latency objective. */
  readonly best: PlanRow | undefined;
  /** Candidates never replayed: disaggregated and mixed ones their idle bound rules out, and any whose capacity bound costs more than a fleet found. */
  readonly ruledOut: number;
  /** Candidates in the space. */
  readonly candidates: number;
}

/** A setup that cannot meet the objective at any count; `share`, where it fits, the most requests it could serve within it. */
export interface Unfit {
  readonly hardware: string;
  readonly precision: string;
  readonly tp: number;
  readonly reason: string;
  readonly share?: number;
}

/** The name-level mistakes in a plan's space (an unknown hardware, precision or model): the user's to fix, not a setup to skip. */
export class PlanUsageError extends Error {}

/**
 * A candidate to search. Per island (prefill first): the fewest replicas
 * its capacity allows (`lowest`, a bound) and the hardware model's
 * estimate of what a replay will find (`estimate`); what the bound would
 * cost (by the objective's measures), and what the estimate would.
 */
export interface PlanJob {
  readonly index: number;
  readonly candidate: Candidate;
  readonly lowest: readonly number[];
  readonly estimate: readonly number[];
  readonly bound: { readonly usdPerMTok: number; readonly devices: number };
  readonly estimated: { readonly usdPerHour: number; readonly devices: number; readonly joulesPerToken: number };
}

/** The plan's space, pruned by the hardware model: jobs in search order, setups that cannot serve, and how many candidates there were in all. */
export interface PlanSpace {
  readonly jobs: readonly PlanJob[];
  readonly unfit: readonly Unfit[];
  readonly candidates: number;
}

/** Every setup in the input's space, in the order they are listed. */
export function setupsOf(input: PlanInput): Setup[] {
  return input.hardware.flatMap((hardware) => input.precisions.flatMap((precision) => input.tps.map((tp) => ({ hardware, precision, tp }))));
}

export function plan(input: PlanInput): PlanResult {
  const space = planSpace(input);
  const found: PlanFound[] = [];
  // Progress counts every candidate: those not searched are done already.
  let done = space.candidates - space.jobs.length;
  for (const job of space.jobs) {
    done++;
    if (prunes(input, job, found)) continue;
    const f = foundOf(input, job, searchCandidate(input, job, startOf(input, job, found)));
    found.push(f);
    input.onCandidate?.(f.row, done, space.candidates);
  }
  return conclude(input, space, found);
}

/** A candidate's row, and how far its measure (by the objective: money per hour, or devices) came above the hardware model's estimate. */
export type PlanFound = { readonly index: number; readonly row: PlanRow; readonly ratio?: number };

export function foundOf(input: PlanInput, job: PlanJob, row: PlanRow): PlanFound {
  const [measured, estimated] = [measureOf(input.objective)(row), estimatedMeasure(input.objective, job)];
  return { index: job.index, row, ...(row.meets && estimated > 0 ? { ratio: measured / estimated } : {}) };
}

/** What the estimate is compared with, by the objective: money per hour (the fleet's size in money), devices, or joules per output token. */
function measureOf(objective: PlanObjective): (r: PlanRow) => number {
  if (objective === "energy") return (r) => r.joulesPerToken;
  if (objective === "devices") return (r) => r.devices;
  return (r) => r.usdPerHour;
}

function estimatedMeasure(objective: PlanObjective, job: Pick<PlanJob, "estimated">): number {
  if (objective === "energy") return job.estimated.joulesPerToken;
  if (objective === "devices") return job.estimated.devices;
  return job.estimated.usdPerHour;
}

/**
 * How far replays came above the estimates so far, ascending, for the
 * job's family: aggregated fleets, or split ones (disaggregated and
 * mixed), whose estimates err differently (colocated prompts and decode
 * steps interfere more than the estimate's shared load says).
 */
function ratiosFor(job: PlanJob, found: readonly PlanFound[]): number[] {
  const split = job.candidate.prefill !== undefined;
  return found.flatMap((f) => (f.ratio === undefined || (f.row.prefill !== undefined) !== split ? [] : [f.ratio])).sort((a, b) => a - b);
}

/**
 * Where a job's search starts: its estimate, scaled by the median of how
 * far replays of its family came above their estimates so far. Brute
 * force starts at the estimate itself, so its answer does not hang on the
 * order replays end in.
 */
export function startOf(input: PlanInput, job: PlanJob, found: readonly PlanFound[]): number[] {
  const r = input.exhaustive === true ? [] : ratiosFor(job, found);
  const scale = r.length === 0 ? 1 : r[Math.floor(r.length / 2)]!;
  return job.estimate.map((n, k) => Math.max(job.lowest[k]!, Math.round(n * scale)));
}

/** Replays of a family needed before its estimates prune, and how far under the most hopeful of them a job may still come. */
export const PRUNE_AFTER = 3;
export const PRUNE_MARGIN = 0.75;

/**
 * Whether a job need not be replayed, against the fleets that met the
 * objective so far: its capacity bound already costs (in money or
 * devices) at least what the best of them does; or, once PRUNE_AFTER of
 * its family have met it, its estimate scaled by the smallest ratio of
 * replay to estimate among them (the most hopeful), less PRUNE_MARGIN,
 * does. Never with --exhaustive.
 */
export function prunes(input: PlanInput, job: PlanJob, found: readonly PlanFound[]): boolean {
  if (input.exhaustive === true) return false;
  const met = found.filter((f) => f.row.meets).map((f) => f.row);
  // The capacity bound counts replicas: it bounds money and devices, not joules per token.
  if (input.objective !== "energy") {
    const bound = input.objective === "devices" ? job.bound.devices : job.bound.usdPerMTok;
    if (met.some((r) => objectiveKey(input.objective)(r) <= bound)) return true;
  }
  const r = ratiosFor(job, found);
  if (r.length < PRUNE_AFTER) return false;
  const hoped = estimatedMeasure(input.objective, job) * r[0]! * PRUNE_MARGIN;
  const measure = measureOf(input.objective);
  return met.some((row) => measure(row) <= hoped);
}

/** The searches' rows as one answer: ranked by the objective, with the frontier and the choice. */
export function conclude(input: PlanInput, space: PlanSpace, found: readonly PlanFound[]): PlanResult {
  const key = objectiveKey(input.objective);
  const rows = [...found]
    .sort((a, b) => Number(b.row.meets) - Number(a.row.meets) || key(a.row) - key(b.row) || b.row.goodShare - a.row.goodShare || a.index - b.index)
    .map((f) => f.row);
  const met = rows.filter((r) => r.meets);
  return { rows, unfit: space.unfit, frontier: paretoFrontier(met), best: met[0], ruledOut: space.candidates - found.length - space.unfit.length, candidates: space.candidates };
}

/**
 * The space's candidates, each checked against the hardware model: setups
 * that do not fit or cannot meet the objective alone are unfit; the rest
 * are jobs, cheapest estimate first (and only the cheapest pairs).
 */
export function planSpace(input: PlanInput): PlanSpace {
  const trace = input.trace;
  const workload = workloadOf(trace, input.slo);
  const shapes = new Set(input.shapes ?? ["aggregated"]);
  const unfit: Unfit[] = [];
  const sides: Side[] = [];
  for (const setup of setupsOf(input)) {
    const island = resolveSide(input, setup, unfit);
    if (island === undefined) continue;
    const over = overLimit(input, island);
    if (over !== undefined) {
      unfit.push({ ...setup, reason: over });
      continue;
    }
    sides.push({ setup, alone: aloneOf(island, trace, workload), capacity: capacityOf(island, workload, input.slo.tpotMs) });
  }
  const jobs: Omit<PlanJob, "index">[] = [];
  let candidates = 0;
  const job = (candidate: Candidate, islands: readonly Side[]): void => {
    candidates++;
    const [p, d] = [islands[0]!, islands[islands.length - 1]!];
    const budgets = budgetsOf(p.alone, d.alone, trace, input.slo, islands.length === 1 ? undefined : { link: input.kvLink ?? "rdma-400g" });
    const share = idleShare(budgets);
    if (share < input.slo.share) {
      // No count of replicas helps: the longest prompts' prefill (or a decode step) alone is past the objective.
      const longer = budgets.refused === 0 ? "" : `; ${budgets.refused} requests are longer than the ${budgets.contextTokens} tokens a replica's context holds (its KV capacity, or the model's window)`;
      const limit = `at most ${(share * 100).toFixed(1)}% of requests can meet the objective on it, even each alone on an idle replica (first token up to ${budgets.worstTtftMs.toFixed(0)} ms, output tokens up to ${budgets.worstTpotMs.toFixed(1)} ms${longer})`;
      if (islands.length === 1) unfit.push({ ...candidate.setup, reason: limit, share });
      return;
    }
    const bounds = islands.map((x) => countBound(workload, input.slo, x.capacity));
    const lowest = islands.length === 1 ? [Math.max(bounds[0]!.prefill, bounds[0]!.decode)] : [bounds[0]!.prefill, bounds[1]!.decode];
    const estimates = islands.length === 1 ? [countEstimate(workload, input.slo, p.capacity, budgets, "both")] : [countEstimate(workload, input.slo, p.capacity, budgets, "prefill"), countEstimate(workload, input.slo, d.capacity, budgets, "decode")];
    const estimate = estimates.map((n, k) => Math.max(n, lowest[k]!));
    if (estimate.some((n) => !Number.isFinite(n))) return;
    const usdPerHour = (counts: readonly number[]): number => islands.reduce((sum, x, k) => sum + x.alone.island.usdPerHour * counts[k]!, 0);
    const devices = (counts: readonly number[]): number => islands.reduce((sum, x, k) => sum + x.alone.island.tp * counts[k]!, 0);
    const usdPerMTok = workload.outputTokens > 0 ? ((usdPerHour(lowest) * workload.lastArrivalMs) / 3.6e6 / workload.outputTokens) * 1e6 : 0;
    const joulesPerToken = joulesEstimate(workload, islands.map((x) => ({ island: x.alone.island, capacity: x.capacity })), estimate, DEFAULT_PUE);
    jobs.push({ candidate, lowest, estimate, bound: { usdPerMTok, devices: devices(lowest) }, estimated: { usdPerHour: usdPerHour(estimate), devices: devices(estimate), joulesPerToken } });
  };
  for (const x of shapes.has("aggregated") ? sides : []) job({ shape: "aggregated", setup: x.setup }, [x]);
  for (const p of shapes.has("disaggregated") || shapes.has("mixed") ? sides : []) {
    for (const d of sides) {
      const shape = p.setup.hardware === d.setup.hardware ? "disaggregated" : "mixed";
      // A setup too slow to serve whole requests may still prefill or decode.
      if (shapes.has(shape) && p.alone.island.profile.kvFormat === d.alone.island.profile.kvFormat) job({ shape, setup: d.setup, prefill: p.setup }, [p, d]);
    }
  }
  const order = (j: Omit<PlanJob, "index">): number => estimatedMeasure(input.objective, j);
  const sorted = jobs.map((j, index) => ({ ...j, index })).sort((a, b) => order(a) - order(b) || a.index - b.index);
  // The pairs are many (every prefill setup with every decode setup): only the most promising of each shape are replayed.
  const kept = new Map<FleetShape, number>();
  const most = input.exhaustive === true ? Infinity : (input.pairsPerShape ?? DEFAULT_PAIRS_PER_SHAPE);
  const searched = sorted.filter((j) => {
    if (j.candidate.shape === "aggregated") return true;
    kept.set(j.candidate.shape, (kept.get(j.candidate.shape) ?? 0) + 1);
    return kept.get(j.candidate.shape)! <= most;
  });
  // Setups that do not fit (or a limit allows not one replica of) count as one candidate each.
  const unresolved = unfit.filter((u) => u.share === undefined).length;
  return { jobs: searched, unfit, candidates: candidates + unresolved };
}

type Side = { readonly setup: Setup; readonly alone: Alone; readonly capacity: Capacity };

/** A setup's island at one replica; undefined, recorded in `unfit`, where the model does not fit it. Unknown names are the user's to fix. */
function resolveSide(input: PlanInput, setup: Setup, unfit: Unfit[]): SimIsland | undefined {
  try {
    return oneReplica(input, setup);
  } catch (err) {
    if (!(err instanceof FleetFileError)) throw err;
    if (/unknown (hardware|precision|model)/.test(err.message)) throw new PlanUsageError(err.message.replace(/^plan is not valid:\s*islands\.0\./, ""));
    unfit.push({ ...setup, reason: err.message.replace(/^plan is not valid:\s*islands\.0\.\w+: /, "") });
    return undefined;
  }
}

function objectiveKey(objective: PlanObjective): (r: PlanRow) => number {
  if (objective === "energy") return (r) => r.joulesPerToken;
  if (objective === "devices") return (r) => r.devices;
  return (r) => r.usdPerMTok;
}

/** Rows no other row is at least as good as on money, energy and devices, and better on one. */
export function paretoFrontier(rows: readonly PlanRow[]): PlanRow[] {
  const dominates = (a: PlanRow, b: PlanRow): boolean =>
    a.usdPerMTok <= b.usdPerMTok && a.joulesPerToken <= b.joulesPerToken && a.devices <= b.devices && (a.usdPerMTok < b.usdPerMTok || a.joulesPerToken < b.joulesPerToken || a.devices < b.devices);
  return rows.filter((r) => !rows.some((o) => o !== r && dominates(o, r)));
}
