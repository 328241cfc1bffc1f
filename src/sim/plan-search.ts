/**
 * One plan candidate's search (plan.ts): the fewest replicas per island
 * whose twin replay meets the objective. It starts at the planner's
 * estimate (never below the capacity bound, below which no count can
 * meet it) and, while a replay falls short, grows by a quarter the island
 * whose growth serves the most requests (each is tried: a full decode
 * island holds prefilled requests back, so late first tokens do not say
 * the prefill island binds); then it brings each island's count down in
 * turn, the others held, to the fewest that still meets the objective. Independent of every other candidate's, so candidates can be
 * searched on several threads (plan-threads.ts).
 */
import { DEFAULT_PUE } from "../hardware/index.js";
import { buildReport, type SimReport } from "./report.js";
import { resolveSimFleet, type SimFleet, type SimIsland } from "./fleet-file.js";
import { simulate } from "./simulator.js";
import { DEFAULT_RACK_KW, HOST_POWER_PER_DEVICE_W, type Candidate, type PlanInput, type PlanJob, type PlanRow, type Setup } from "./plan.js";

/** The fleet file of a candidate at the given counts (prefill island first): what the search replays and `flotilla plan --out` writes. */
export function plannedFleet(input: PlanInput, candidate: Candidate, counts: readonly number[]): Record<string, unknown> {
  const island = (name: string, s: Setup, count: number, role?: "prefill" | "decode"): Record<string, unknown> => ({
    name,
    hardware: s.hardware,
    count,
    model: input.model,
    precision: s.precision,
    tp: s.tp,
    ...(input.profile === undefined ? {} : { profile: input.profile.path }),
    ...(role === undefined ? {} : { role }),
  });
  const islands =
    candidate.prefill === undefined
      ? [island("planned", candidate.setup, counts[0]!)]
      : [island("prefill", candidate.prefill, counts[0]!, "prefill"), island("decode", candidate.setup, counts[1]!, "decode")];
  return {
    islands,
    slo: { ttft_ms: input.slo.ttftMs, tpot_ms: input.slo.tpotMs },
    ...(candidate.prefill === undefined ? {} : { kv_transfer: { link: input.kvLink ?? "rdma-400g" } }),
    seed: input.seed ?? 1,
  };
}

/** The planned fleet file resolved, its islands running the plan's engine profile (already read). */
function resolvePlanned(input: PlanInput, candidate: Candidate, counts: readonly number[]): SimFleet {
  const engine = input.profile?.engine;
  return resolveSimFleet(plannedFleet(input, candidate, counts), "plan", engine === undefined ? {} : { loadProfile: () => engine });
}

/** A setup's island at one replica (throws FleetFileError where the model does not fit it, or a name is unknown). */
export function oneReplica(input: PlanInput, setup: Setup): SimIsland {
  return resolvePlanned(input, { shape: "aggregated", setup }, [1]).islands[0]!;
}

/** One replica's power: its devices at TDP and its host's share (IT), and with the PUE (facility), kW. */
function replicaKw(island: SimIsland, pue: number): { it: number; facility: number } {
  const it = (island.tp * island.hardware.tdpW * (1 + HOST_POWER_PER_DEVICE_W)) / 1000;
  return { it, facility: it * pue };
}

/** Why not even one replica of the island is allowed (a rack, the power limit, the money limit), or undefined. */
export function overLimit(input: PlanInput, island: SimIsland, pue = DEFAULT_PUE): string | undefined {
  const kw = replicaKw(island, pue);
  const rackKw = input.rackKw ?? DEFAULT_RACK_KW;
  if (kw.it > rackKw) return `one replica draws ${kw.it.toFixed(1)} kW at peak (devices and host), more than a ${rackKw} kW rack holds`;
  const { facilityKw, usdPerHour } = input.limits ?? {};
  if (facilityKw !== undefined && kw.facility > facilityKw) return `one replica draws ${kw.facility.toFixed(1)} kW at peak, more than the ${facilityKw} kW allowed`;
  if (usdPerHour !== undefined && island.usdPerHour > usdPerHour) return `one replica costs ${island.usdPerHour.toFixed(2)} USD an hour, more than the ${usdPerHour} allowed`;
  return undefined;
}

/** The most replicas island k may have with the others at `counts`, and the limit that sets it (none: the search's own most). */
function islandCap(input: PlanInput, fleet: SimFleet, counts: readonly number[], k: number): { most: number; by?: "power" | "money" } {
  let cap: { most: number; by?: "power" | "money" } = { most: input.maxReplicas };
  const others = (per: (isl: SimIsland) => number): number => fleet.islands.reduce((s, isl, j) => (j === k ? s : s + per(isl) * counts[j]!), 0);
  const isl = fleet.islands[k]!;
  const { facilityKw, usdPerHour } = input.limits ?? {};
  if (facilityKw !== undefined) {
    const kw = (i: SimIsland): number => replicaKw(i, fleet.pue).facility;
    const most = Math.floor((facilityKw - others(kw)) / kw(isl));
    if (most < cap.most) cap = { most, by: "power" };
  }
  if (usdPerHour !== undefined && isl.usdPerHour > 0) {
    const most = Math.floor((usdPerHour - others((i) => i.usdPerHour)) / isl.usdPerHour);
    if (most < cap.most) cap = { most, by: "money" };
  }
  return cap;
}

/**
 * The candidate's row at its fewest replicas that meet the objective, or
 * at the most the limits allow where none do. `start` (per island, prefill
 * first) is where the search begins: the hardware model's estimate, as the
 * planner scaled it; never below the capacity bound.
 */
export function searchCandidate(input: PlanInput, job: PlanJob, start: readonly number[] = job.lowest): PlanRow {
  let replays = 0;
  const fleetOf = (counts: readonly number[]): SimFleet => resolvePlanned(input, job.candidate, counts);
  const replay = (counts: readonly number[]): Trial => {
    replays++;
    return { counts, report: buildReport(simulate({ fleet: fleetOf(counts), trace: input.trace })) };
  };
  const meets = (t: Trial): boolean => t.report.goodput.share >= input.slo.share;
  const capOf = (counts: readonly number[], k: number): { most: number; by?: "power" | "money" } => islandCap(input, fleetOf(counts), counts, k);
  const first = start.map((n, k) => Math.max(job.lowest[k]!, n));
  let at = replay(first.map((n, k) => Math.min(n, capOf(first, k).most)));
  // One island: the largest count a replay fell short at (with two, a count short beside fewer of the other may do beside more).
  let short = 0;
  let flat = 0;
  while (!meets(at)) {
    // Grow each island that may by a quarter; keep the growth that served the most requests (the prefill island's on a tie).
    const grown = at.counts.flatMap((n, k) => {
      const cap = capOf(at.counts, k);
      return n >= cap.most ? [] : [{ k, counts: at.counts.map((m, j) => (j === k ? Math.min(cap.most, Math.max(m + 1, Math.ceil(m * 1.25))) : m)) }];
    });
    if (grown.length === 0) return rowOf(input, job, fleetOf(at.counts), at.report, false, replays, capOf(at.counts, 0).by ?? capOf(at.counts, at.counts.length - 1).by);
    const trials = grown.map((g) => ({ k: g.k, trial: replay(g.counts) }));
    const best = trials.reduce((a, b) => (b.trial.report.goodput.share > a.trial.report.goodput.share ? b : a));
    if (at.counts.length === 1) short = at.counts[0]!;
    // Growing served not one more request, twice: the count is not what binds (requests too long for the replicas, say).
    flat = best.trial.report.goodput.share > at.report.goodput.share ? 0 : flat + 1;
    at = best.trial;
    if (flat >= 2) return rowOf(input, job, fleetOf(at.counts), at.report, false, replays);
  }
  for (let k = 0; k < at.counts.length; k++) at = shrink(at, k, Math.max(job.lowest[k]!, short + 1), replay, meets);
  return rowOf(input, job, fleetOf(at.counts), at.report, true, replays);
}

type Trial = { readonly counts: readonly number[]; readonly report: SimReport };

/**
 * Island k's fewest replicas beside the others' counts, down from a trial
 * that meets the objective: one fewer, two, four … until one falls short
 * (a good start is near the answer), then bisection between.
 */
function shrink(at: Trial, k: number, lowest: number, replay: (counts: readonly number[]) => Trial, meets: (t: Trial) => boolean): Trial {
  const withK = (n: number): number[] => at.counts.map((m, j) => (j === k ? n : m));
  let low = lowest;
  for (let step = 1; low < at.counts[k]!; step *= 2) {
    const trial = replay(withK(Math.max(low, at.counts[k]! - step)));
    if (!meets(trial)) {
      low = trial.counts[k]! + 1;
      break;
    }
    at = trial;
  }
  while (low < at.counts[k]!) {
    const trial = replay(withK(Math.floor((low + at.counts[k]!) / 2)));
    if (meets(trial)) at = trial;
    else low = trial.counts[k]! + 1;
  }
  return at;
}

function rowOf(input: PlanInput, job: PlanJob, fleet: SimFleet, r: SimReport, meets: boolean, replays: number, cappedBy?: "power" | "money"): PlanRow {
  const { candidate } = job;
  const islands = fleet.islands;
  const counts = islands.map((isl) => isl.count);
  const rackKw = input.rackKw ?? DEFAULT_RACK_KW;
  const kw = (k: number): { it: number; facility: number } => replicaKw(islands[k]!, fleet.pue);
  const sum = (per: (k: number) => number): number => counts.reduce((s, _, k) => s + per(k), 0);
  const decode = counts.length - 1;
  return {
    shape: candidate.shape,
    ...candidate.setup,
    replicas: counts[decode]!,
    ...(candidate.prefill === undefined ? {} : { prefill: { ...candidate.prefill, replicas: counts[0]! } }),
    devices: sum((k) => counts[k]! * islands[k]!.tp),
    meets,
    peakKw: sum((k) => kw(k).facility * counts[k]!),
    racks: sum((k) => Math.ceil(counts[k]! / Math.floor(rackKw / kw(k).it))),
    ...(input.userTokensPerMonth === undefined ? {} : { usdPerUserMonth: (r.cost.usdPerMTok * input.userTokensPerMonth) / 1e6 }),
    goodShare: r.goodput.share,
    usdPerMTok: r.cost.usdPerMTok,
    joulesPerToken: r.energy.joulesPerToken,
    usdPerHour: sum((k) => islands[k]!.usdPerHour * counts[k]!),
    facilityKw: r.throughput.spanS > 0 ? r.energy.joules / r.throughput.spanS / 1000 : 0,
    ...(cappedBy === undefined ? {} : { cappedBy }),
    ttftP99Ms: r.latency.ttftMs.p99,
    tpotP99Ms: r.latency.tpotMs.p99,
    ...(r.kvTransfer === undefined ? {} : { kvTransfer: { gb: r.kvTransfer.bytes / 1e9, p99Ms: r.kvTransfer.ms.p99 } }),
    replays,
  };
}
