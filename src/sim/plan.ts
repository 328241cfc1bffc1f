/**
 * Which fleet should I run? For a workload (a trace) and a latency
 * objective, the twin tries every candidate setup (hardware x precision x
 * TP) and finds, for each, the fewest replicas whose replay meets the
 * objective for the required share of requests: doubling from one replica
 * until it does, then bisecting. Each setup's fleet at that count is priced
 * (money and energy per million output tokens, devices, facility power);
 * the Pareto frontier over money, energy and devices is what is worth
 * choosing between, and the objective picks one of it.
 *
 * A setup is tried only where the hardware model says it could meet the
 * objective at all (idleBound): each request alone on an idle replica. The
 * limits (peak facility power, money per hour) cap its replicas; a rack's
 * power says how many racks it fills.
 * Homogeneous, aggregated fleets: disaggregated and mixed fleets are the
 * next step.
 */
import { buildReport, type SimReport } from "./report.js";
import { servedTpotMs, servedTtftMs } from "../hardware/served.js";
import { FleetFileError, resolveSimFleet, type SimFleet, type SimIsland } from "./fleet-file.js";
import { simulate } from "./simulator.js";
import type { Trace } from "./traces.js";

export type PlanObjective = "cost" | "energy" | "devices";

export interface PlanInput {
  readonly model: string;
  readonly hardware: readonly string[];
  readonly precisions: readonly string[];
  readonly tps: readonly number[];
  readonly trace: Trace;
  /** Latency objectives, and the share of requests that must meet both. */
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number; readonly share: number };
  readonly objective: PlanObjective;
  /** Most replicas a candidate may use before it is called infeasible. */
  readonly maxReplicas: number;
  readonly seed?: number;
  /** What the chosen fleet may not exceed: facility power at peak (kW) and money (USD per hour). */
  readonly limits?: { readonly facilityKw?: number; readonly usdPerHour?: number };
  /** The power one rack takes, kW (default 30): how many racks a fleet fills. */
  readonly rackKw?: number;
  /** Output tokens one user takes a month: prices the fleet per user-month. */
  readonly userTokensPerMonth?: number;
  /** Hears each candidate as its search ends. */
  readonly onCandidate?: (row: PlanRow, done: number, total: number) => void;
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

/** One setup, at the fewest replicas that met the objective (or, where none did, at the most tried). */
export interface PlanRow {
  readonly hardware: string;
  readonly precision: string;
  readonly tp: number;
  readonly replicas: number;
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
  /** Twin replays this candidate's search took. */
  readonly replays: number;
}

export interface PlanResult {
  /** Every setup that fits, best first by the objective (those that meet it before those that do not). */
  readonly rows: readonly PlanRow[];
  /** Setups that cannot meet the objective at any replica count, and why: the model does not fit at that TP, or its prefill alone is too slow. */
  readonly unfit: readonly Unfit[];
  /** The rows no other row beats on money, energy and devices at once. */
  readonly frontier: readonly PlanRow[];
  /** The objective's choice; undefined when no setup met the latency objective. */
  readonly best: PlanRow | undefined;
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

export type Setup = { readonly hardware: string; readonly precision: string; readonly tp: number };

/** Every setup in the input's space, in the order they are searched and reported. */
export function setupsOf(input: PlanInput): Setup[] {
  return input.hardware.flatMap((hardware) => input.precisions.flatMap((precision) => input.tps.map((tp) => ({ hardware, precision, tp }))));
}

export function plan(input: PlanInput): PlanResult {
  const setups = setupsOf(input);
  const found = setups.map((setup, i) => {
    const f = planSetup(input, setup);
    if (f.row !== undefined) input.onCandidate?.(f.row, i + 1, setups.length);
    return f;
  });
  return conclude(input, found);
}

/**
 * One setup's search: its row at the fewest replicas that meet the
 * objective, or why it cannot (it does not fit, the hardware model rules it
 * out, a limit allows not one replica). Independent of every other setup's,
 * so setups can be searched on several threads (plan-threads.ts).
 */
export function planSetup(input: PlanInput, setup: Setup): { readonly row?: PlanRow; readonly unfit?: Unfit } {
  const fleetOf = (count: number): SimFleet => fleetFor(input, setup, count);
  let one: SimFleet;
  try {
    one = fleetOf(1);
  } catch (err) {
    if (!(err instanceof FleetFileError)) throw err;
    if (/unknown (hardware|precision|model)/.test(err.message)) throw new PlanUsageError(err.message.replace(/^plan is not valid:\s*islands\.0\./, ""));
    return { unfit: { ...setup, reason: err.message.replace(/^plan is not valid:\s*islands\.0\.\w+: /, "") } };
  }
  const bound = idleBound(one.islands[0]!, input.trace, input.slo);
  if (bound.share < input.slo.share) {
    // No count of replicas helps: the longest prompts' prefill (or a decode step) alone is past the objective.
    const limit = `at most ${(bound.share * 100).toFixed(1)}% of requests can meet the objective on it, even each alone on an idle replica (first token up to ${bound.worstTtftMs.toFixed(0)} ms, output tokens up to ${bound.worstTpotMs.toFixed(1)} ms)`;
    return { unfit: { ...setup, reason: limit, share: bound.share } };
  }
  const cap = replicaCap(input, one);
  if (cap.replicas < 1) return { unfit: { ...setup, reason: cap.reason } };
  const row = search({ ...input, maxReplicas: cap.replicas }, setup, fleetOf, one);
  return { row: !row.meets && cap.by !== undefined ? { ...row, cappedBy: cap.by } : row };
}

/** The setups' searches, in setup order, as one answer: ranked by the objective, with the frontier and the choice. */
export function conclude(input: PlanInput, found: readonly { readonly row?: PlanRow; readonly unfit?: Unfit }[]): PlanResult {
  const rows = found.flatMap((f) => (f.row === undefined ? [] : [f.row]));
  const unfit = found.flatMap((f) => (f.unfit === undefined ? [] : [f.unfit]));
  const key = objectiveKey(input.objective);
  rows.sort((a, b) => Number(b.meets) - Number(a.meets) || key(a) - key(b) || b.goodShare - a.goodShare);
  const met = rows.filter((r) => r.meets);
  return { rows, unfit, frontier: paretoFrontier(met), best: met[0] };
}

/** One replica's power: its devices at TDP, its host's share (IT), and with the PUE (facility), kW. */
function replicaKw(fleet: SimFleet): { it: number; facility: number } {
  const island = fleet.islands[0]!;
  const it = (island.tp * island.hardware.tdpW * (1 + HOST_POWER_PER_DEVICE_W)) / 1000;
  return { it, facility: it * fleet.pue };
}

/** The most replicas of a setup the limits allow, and which limit that is (none: the search's own most). */
function replicaCap(input: PlanInput, one: SimFleet): { replicas: number; by?: "power" | "money"; reason: string } {
  const kw = replicaKw(one);
  const rackKw = input.rackKw ?? DEFAULT_RACK_KW;
  if (kw.it > rackKw) return { replicas: 0, reason: `one replica draws ${kw.it.toFixed(1)} kW at peak (devices and host), more than a ${rackKw} kW rack holds` };
  let cap: { replicas: number; by?: "power" | "money"; reason: string } = { replicas: input.maxReplicas, reason: "" };
  const { facilityKw, usdPerHour } = input.limits ?? {};
  if (facilityKw !== undefined && Math.floor(facilityKw / kw.facility) < cap.replicas) {
    cap = { replicas: Math.floor(facilityKw / kw.facility), by: "power", reason: `one replica draws ${kw.facility.toFixed(1)} kW at peak, more than the ${facilityKw} kW allowed` };
  }
  const perHour = one.islands[0]!.usdPerHour;
  if (usdPerHour !== undefined && perHour > 0 && Math.floor(usdPerHour / perHour) < cap.replicas) {
    cap = { replicas: Math.floor(usdPerHour / perHour), by: "money", reason: `one replica costs ${perHour.toFixed(2)} USD an hour, more than the ${usdPerHour} allowed` };
  }
  return cap;
}

function fleetFor(input: PlanInput, setup: Setup, count: number): SimFleet {
  const raw = {
    islands: [{ name: "plan", hardware: setup.hardware, count, model: input.model, precision: setup.precision, tp: setup.tp }],
    slo: { ttft_ms: input.slo.ttftMs, tpot_ms: input.slo.tpotMs },
    ...(input.seed === undefined ? {} : { seed: input.seed }),
  };
  return resolveSimFleet(raw, "plan");
}

/**
 * The most any number of a setup's replicas could do: the share of
 * requests that meet the objective each alone on an idle replica, with
 * every prefix block an earlier request brought in its cache (the hardware
 * model's served times at batch 1: sim/replica.ts runs the same passes,
 * and queueing, batching and evictions only add to them). Also the slowest
 * such first token and output token.
 */
export function idleBound(island: SimIsland, trace: Trace, slo: PlanInput["slo"]): { share: number; worstTtftMs: number; worstTpotMs: number } {
  const seen = new Set<number>();
  let good = 0;
  let worstTtftMs = 0;
  let worstTpotMs = 0;
  for (let i = 0; i < trace.count; i++) {
    const promptTokens = trace.inputTokens[i]!;
    const outputTokens = trace.outputTokens[i]!;
    let run = 0;
    let leading = true;
    for (let j = trace.blockOffsets[i]!; j < trace.blockOffsets[i + 1]!; j++) {
      const id = trace.blockIds[j]!;
      if (leading && seen.has(id)) run++;
      else leading = false;
      seen.add(id);
    }
    const cachedTokens = Math.min(promptTokens - 1, run * trace.blockTokens);
    const ttft = servedTtftMs(island.profile, { promptTokens, cachedTokens, batch: 1 });
    const tpot = outputTokens > 1 ? servedTpotMs(island.profile, { promptTokens, outputTokens, batch: 1 }) : 0;
    worstTtftMs = Math.max(worstTtftMs, ttft);
    worstTpotMs = Math.max(worstTpotMs, tpot);
    if (ttft <= slo.ttftMs && tpot <= slo.tpotMs) good++;
  }
  return { share: trace.count === 0 ? 0 : good / trace.count, worstTtftMs, worstTpotMs };
}

/**
 * The fewest replicas meeting the objective: doubling from one until a
 * count does, then bisecting below it; none where even the most replicas
 * allowed do not.
 */
function search(input: PlanInput, setup: Setup, fleetOf: (count: number) => SimFleet, one: SimFleet): PlanRow {
  let replays = 0;
  const replay = (count: number): SimReport => {
    replays++;
    return buildReport(simulate({ fleet: fleetOf(count), trace: input.trace }));
  };
  const meets = (r: SimReport): boolean => r.goodput.share >= input.slo.share;
  let high = 1;
  let at = replay(high);
  while (!meets(at) && high < input.maxReplicas) {
    high = Math.min(input.maxReplicas, high * 2);
    at = replay(high);
  }
  const row = (count: number, r: SimReport, met: boolean): PlanRow => rowOf(input, setup, { count, report: r, meets: met, replays, one });
  if (!meets(at)) return row(high, at, false);
  let low = Math.floor(high / 2) + 1;
  let best = at;
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    const r = replay(mid);
    if (meets(r)) {
      high = mid;
      best = r;
    } else low = mid + 1;
  }
  return row(high, best, true);
}

function rowOf(input: PlanInput, setup: Setup, at: { count: number; report: SimReport; meets: boolean; replays: number; one: SimFleet }): PlanRow {
  const { count: replicas, report: r, meets, replays } = at;
  const usdPerHour = r.fleet.islands.reduce((s, isl) => s + isl.usdPerHour * isl.count, 0);
  const kw = replicaKw(at.one);
  const perRack = Math.floor((input.rackKw ?? DEFAULT_RACK_KW) / kw.it);
  return {
    ...setup,
    replicas,
    devices: replicas * setup.tp,
    meets,
    peakKw: kw.facility * replicas,
    racks: Math.ceil(replicas / perRack),
    ...(input.userTokensPerMonth === undefined ? {} : { usdPerUserMonth: (r.cost.usdPerMTok * input.userTokensPerMonth) / 1e6 }),
    goodShare: r.goodput.share,
    usdPerMTok: r.cost.usdPerMTok,
    joulesPerToken: r.energy.joulesPerToken,
    usdPerHour,
    facilityKw: r.throughput.spanS > 0 ? r.energy.joules / r.throughput.spanS / 1000 : 0,
    ttftP99Ms: r.latency.ttftMs.p99,
    tpotP99Ms: r.latency.tpotMs.p99,
    replays,
  };
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
