/**
 * What the hardware model says about a plan's candidate before any replay:
 *
 * - idleBound: the most any number of its replicas could do, each request
 *   alone on an idle replica (and refused where longer than the replica's
 *   context). A candidate under the objective's share here cannot meet it
 *   at any count.
 * - countBound: the fewest replicas its capacity allows. Every request that
 *   meets the objective is prefilled, and decoded at no more than the
 *   TPOT objective, inside the window from the first arrival to the last
 *   moment such a request can finish; one replica prefills at most its
 *   best pass's rate and decodes at most the largest batch whose step
 *   meets the TPOT objective. Both rates are the hardware model's ceilings
 *   (no prefix cache misses beyond the trace's own, no queueing), so the
 *   bound is below the count a replay finds: no search goes below it, and
 *   a candidate whose bound already costs more than a fleet found is never
 *   replayed (plan.ts).
 * - countEstimate: what a replay will likely find, tail included (not a
 *   bound): what ranks candidates and where their searches start.
 */
import { servedTpotMs, servedTtftMs } from "../hardware/served.js";
import { decodeStepMs, largestBatchWithin } from "../hardware/perf.js";
import { batchPrefillEnergy, decodeStepJoules } from "../hardware/energy.js";
import { kvBytesPerToken } from "../hardware/kv.js";
import { kvLanes, kvLink, kvTransferMs } from "../hardware/links.js";
import type { KvLinkId } from "../hardware/links.js";
import type { SimIsland } from "./fleet-file.js";
import type { Trace } from "./traces.js";

export interface Slo {
  readonly ttftMs: number;
  readonly tpotMs: number;
  readonly share: number;
}

/** The trace's totals the capacity bound needs, computed once per plan. */
export interface Workload {
  readonly requests: number;
  /** Prompt tokens left to compute with every prefix block an earlier request brought cached. */
  readonly freshPromptTokens: number;
  /** Output tokens after each request's first (the first comes out of its prefill). */
  readonly decodeTokens: number;
  readonly outputTokens: number;
  readonly meanPromptTokens: number;
  /** Mean tokens a decoding sequence attends to: its prompt and half its answer. */
  readonly meanContextTokens: number;
  /** From the first arrival to the last moment a request meeting the objective can finish, ms. */
  readonly windowMs: number;
  readonly lastArrivalMs: number;
  /** Request i's prompt tokens found cached (the leading run of blocks seen before), optimistically. */
  readonly cachedTokens: Int32Array;
}

export function workloadOf(trace: Trace, slo: Slo): Workload {
  const n = trace.count;
  const cachedTokens = new Int32Array(n);
  const seen = new Set<number>();
  let fresh = 0;
  let decode = 0;
  let output = 0;
  let prompt = 0;
  let context = 0;
  let end = 0;
  for (let i = 0; i < n; i++) {
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
    cachedTokens[i] = Math.min(promptTokens - 1, run * trace.blockTokens);
    fresh += promptTokens - cachedTokens[i]!;
    decode += outputTokens - 1;
    output += outputTokens;
    prompt += promptTokens;
    context += promptTokens + outputTokens / 2;
    end = Math.max(end, trace.arrivalMs[i]! + slo.ttftMs + (outputTokens - 1) * slo.tpotMs);
  }
  const first = n > 0 ? trace.arrivalMs[0]! : 0;
  return {
    requests: n,
    freshPromptTokens: fresh,
    decodeTokens: decode,
    outputTokens: output,
    meanPromptTokens: n > 0 ? prompt / n : 0,
    meanContextTokens: n > 0 ? context / n : 0,
    windowMs: Math.max(1, end - first),
    lastArrivalMs: n > 0 ? trace.arrivalMs[n - 1]! : 0,
    cachedTokens,
  };
}

/**
 * One replica's ceilings: prompt tokens per ms at its best pass, output
 * tokens per ms at the largest batch within the TPOT objective (0: not
 * even one); and the joules each takes there beyond the devices' static
 * power (all the replica's devices, before PUE).
 */
export interface Capacity {
  readonly prefillTokPerMs: number;
  readonly decodeTokPerMs: number;
  readonly prefillJoulesPerToken: number;
  readonly decodeJoulesPerToken: number;
}

/** The rates alone, what the counts need. */
export type Rates = Pick<Capacity, "prefillTokPerMs" | "decodeTokPerMs">;

export function capacityOf(island: SimIsland, w: Workload, tpotMs: number): Capacity {
  const p = island.profile;
  const e = island.energy;
  // Whole passes of the mean prompt: the prefill rate a busy replica reaches.
  const prompt = Math.max(1, w.meanPromptTokens);
  const sequences = Math.max(1, Math.ceil((4 * p.maxTokensPerPass) / prompt));
  const pass = batchPrefillEnergy(p, e, sequences, prompt);
  const dynamic = (joulesPerDevice: number, ms: number, tokens: number): number => (island.tp * (joulesPerDevice - (e.staticW * ms) / 1000)) / tokens;
  const prefill = { prefillTokPerMs: (sequences * prompt) / pass.ms, prefillJoulesPerToken: dynamic(pass.joulesPerDevice, pass.ms, sequences * prompt) };
  const context = Math.max(1, w.meanContextTokens);
  const most = Math.min(island.maxBatch, Math.floor(p.kvCapacityTokens / context));
  const b = largestBatchWithin(p, context, most, tpotMs);
  if (b === 0) return { ...prefill, decodeTokPerMs: 0, decodeJoulesPerToken: Infinity };
  const stepMs = decodeStepMs(p, b, b * context);
  return { ...prefill, decodeTokPerMs: b / stepMs, decodeJoulesPerToken: dynamic(decodeStepJoules(p, e, b, b * context), stepMs, b) };
}

/**
 * The hardware model's estimate of a fleet's joules per output token at
 * `counts` replicas of `islands` (prefill island first): every device's
 * static power over the trace, and the work's dynamic energy at the
 * capacity's rates (prompts on the first island, output tokens on the
 * last), with the PUE. Like countEstimate, it ranks; the planner scales it
 * by what replays find.
 */
export function joulesEstimate(w: Workload, islands: readonly { readonly island: SimIsland; readonly capacity: Capacity }[], counts: readonly number[], pue: number): number {
  const spanS = w.windowMs / 1000;
  const staticJ = islands.reduce((sum, x, k) => sum + counts[k]! * x.island.tp * x.island.energy.staticW * spanS, 0);
  const work = w.meanPromptTokens * w.requests * islands[0]!.capacity.prefillJoulesPerToken + w.decodeTokens * islands[islands.length - 1]!.capacity.decodeJoulesPerToken;
  return w.outputTokens > 0 ? (pue * (staticJ + work)) / w.outputTokens : 0;
}

/** The fewest replicas that prefill (`prefill`) and that decode (`decode`) what the objective's share of requests need. */
export function countBound(w: Workload, slo: Slo, capacity: Rates): { prefill: number; decode: number } {
  const need = (work: number, perMs: number): number => (perMs > 0 ? Math.max(1, Math.ceil((slo.share * work) / (w.windowMs * perMs) - 1e-9)) : Infinity);
  return { prefill: need(w.freshPromptTokens, capacity.prefillTokPerMs), decode: need(w.decodeTokens, capacity.decodeTokPerMs) };
}

/** A disaggregated candidate's link. */
export interface Handoff {
  readonly link: KvLinkId;
}

/**
 * Each request alone on idle replicas: prefilled on `prefill`, decoded on
 * `decode` (the same island when aggregated), the KV's crossing counted in
 * the output tokens' time as the twin counts it. Per request, how many
 * times slower than that its first token (`ttft`) and its output tokens
 * (`tpot`) may come and still meet the objective: its slowdown budget (0
 * where it cannot be served at all: longer than a replica's context). Also
 * the slowest first token and output token.
 */
export interface Budgets {
  readonly ttft: Float64Array;
  readonly tpot: Float64Array;
  readonly worstTtftMs: number;
  readonly worstTpotMs: number;
  /** Requests longer than a replica's context, and that context (tokens: the model's, or what a replica's KV holds). */
  readonly refused: number;
  readonly contextTokens: number;
}

/** A setup's times for each request alone on an idle replica: first token (prefix cache warm), and output tokens at batch 1. */
export interface Alone {
  readonly island: SimIsland;
  readonly ttftMs: Float64Array;
  readonly tpotMs: Float64Array;
}

export function aloneOf(island: SimIsland, trace: Trace, w: Workload): Alone {
  const ttftMs = new Float64Array(trace.count);
  const tpotMs = new Float64Array(trace.count);
  for (let i = 0; i < trace.count; i++) {
    const promptTokens = trace.inputTokens[i]!;
    const outputTokens = trace.outputTokens[i]!;
    ttftMs[i] = servedTtftMs(island.profile, { promptTokens, cachedTokens: w.cachedTokens[i]!, batch: 1 });
    tpotMs[i] = outputTokens > 1 ? servedTpotMs(island.profile, { promptTokens, outputTokens, batch: 1 }) : 0;
  }
  return { island, ttftMs, tpotMs };
}

export function budgetsOf(prefill: Alone, decode: Alone, trace: Trace, slo: Slo, handoff?: Handoff): Budgets {
  const [p, d] = [prefill.island, decode.island];
  const link = handoff === undefined ? undefined : kvLink(handoff.link, p.hardware, d.hardware);
  const kvBytes = kvBytesPerToken(p.model, p.profile.kvFormat);
  const lanes = link === undefined ? 1 : kvLanes(link, p.tp, d.tp);
  const context = Math.min(p.contextSize, d.contextSize);
  const ttftBudget = new Float64Array(trace.count);
  const tpotBudget = new Float64Array(trace.count);
  let worstTtftMs = 0;
  let worstTpotMs = 0;
  let refused = 0;
  for (let i = 0; i < trace.count; i++) {
    const promptTokens = trace.inputTokens[i]!;
    const outputTokens = trace.outputTokens[i]!;
    const ttft = prefill.ttftMs[i]!;
    const moveMs = link === undefined ? 0 : kvTransferMs(link, promptTokens * kvBytes, lanes);
    const tpot = outputTokens > 1 ? decode.tpotMs[i]! + moveMs / (outputTokens - 1) : 0;
    worstTtftMs = Math.max(worstTtftMs, ttft);
    worstTpotMs = Math.max(worstTpotMs, tpot);
    // A request longer than a replica's context (the model's, or what its KV holds) is refused: it cannot be good at any count.
    const fits = promptTokens + outputTokens <= context;
    if (!fits) refused++;
    ttftBudget[i] = fits ? slo.ttftMs / ttft : 0;
    tpotBudget[i] = fits ? (tpot > 0 ? slo.tpotMs / tpot : Infinity) : 0;
  }
  return { ttft: ttftBudget, tpot: tpotBudget, worstTtftMs, worstTpotMs, refused, contextTokens: context };
}

/** The share of requests that meet the objective each alone on idle replicas: the most any count of replicas could serve within it. */
export function idleShare(b: Budgets): number {
  let good = 0;
  for (let i = 0; i < b.ttft.length; i++) if (b.ttft[i]! >= 1 && b.tpot[i]! >= 1) good++;
  return b.ttft.length === 0 ? 0 : good / b.ttft.length;
}

/** The idle bound of the candidate (see budgetsOf): its share, and the slowest first token and output token. */
export function idleBound(prefill: SimIsland, decode: SimIsland, trace: Trace, w: Workload, slo: Slo, handoff?: Handoff): { share: number; worstTtftMs: number; worstTpotMs: number } {
  const p = aloneOf(prefill, trace, w);
  const b = budgetsOf(p, prefill === decode ? p : aloneOf(decode, trace, w), trace, slo, handoff);
  return { share: idleShare(b), worstTtftMs: b.worstTtftMs, worstTpotMs: b.worstTpotMs };
}

/**
 * The slowdown the objective's share of requests can take: the budget
 * `share` of them have at least (the smaller of each one's two budgets,
 * or the one side's).
 */
function budgetAtShare(per: (i: number) => number, n: number, share: number): number {
  const all = Float64Array.from({ length: n }, (_, i) => per(i)).sort();
  // Ascending: the requests below index `misses` may miss.
  const misses = Math.floor((1 - share) * n + 1e-9);
  return n === 0 ? 0 : all[Math.min(n - 1, misses)]!;
}

/**
 * The hardware model's estimate of the count a replay finds (not a bound):
 * replicas share their passes between every request on them, so a
 * request's time stretches by about 1 / (1 - load) at a replica's load
 * (its share of the time busy with prompts and decode steps, at the
 * capacity's rates, every prompt token computed). The fewest replicas
 * whose load keeps the objective's share of requests within their
 * slowdown budgets. The twin's counts run about 2-3x above it on the
 * Mooncake trace (load is uneven between replicas and over time), but
 * evenly so across setups: it ranks candidates, and the planner scales it
 * by what replays found so far (plan.ts).
 */
export function countEstimate(w: Workload, slo: Slo, capacity: Rates, budgets: Budgets, side: "both" | "prefill" | "decode"): number {
  const prefillLoad = (w.meanPromptTokens * w.requests) / w.windowMs / capacity.prefillTokPerMs;
  const decodeLoad = capacity.decodeTokPerMs > 0 ? w.decodeTokens / w.windowMs / capacity.decodeTokPerMs : Infinity;
  const load = side === "prefill" ? prefillLoad : side === "decode" ? decodeLoad : prefillLoad + decodeLoad;
  const per = side === "prefill" ? (i: number) => budgets.ttft[i]! : side === "decode" ? (i: number) => budgets.tpot[i]! : (i: number) => Math.min(budgets.ttft[i]!, budgets.tpot[i]!);
  const budget = budgetAtShare(per, budgets.ttft.length, slo.share);
  if (budget <= 1 || !Number.isFinite(load)) return Infinity;
  return Math.max(1, Math.ceil(load / (1 - 1 / budget) - 1e-9));
}
