/**
 * What a request costs, from the hardware model. Each replica with a known
 * accelerator gets a rate card: joules, device-seconds and nano-dollars per
 * uncached prompt token, per cached prompt token and per generated token,
 * derived from `src/hardware` for its model, accelerator, precision and
 * tensor-parallel degree at a nominal operating point:
 *
 * - prompt tokens: prefill of a 1,024-token chunk, the whole replica busy;
 * - cached prompt tokens: the extra prefill time a cached prefix costs the
 *   tokens after it (reading its KV), per cached token;
 * - generated tokens: one decode step at the replica's concurrency
 *   (`parallel`, capped by what its KV cache holds) with 1,024 tokens of
 *   context per sequence, shared by the sequences of the batch.
 *
 * Money = device time at the accelerator's rental price (tp devices) plus
 * facility energy (device energy x PUE) at the electricity price. Pricing by
 * token rather than by measured wall time makes a request's worst case
 * knowable at admission (prompt + max_tokens), which budgets need, and
 * charges the same work the same whatever else the replica was doing.
 */
import type { TokenUsage } from "../core/request.js";
import { routeConstants, type RouteConstants } from "../scheduler/constants.js";
import {
  DEFAULT_PUE,
  DEFAULT_USD_PER_KWH,
  decodeStepJoules,
  decodeStepMs,
  deviceUsdPerHour,
  makeEnergyProfile,
  maxBatch,
  prefillJoules,
  prefillMs,
  profileFor,
  rooflineProfile,
  type HardwareSpec,
  type ModelSpec,
  type PerfParams,
  type PerfProfile,
  type Pricing,
  type PrecisionSpec,
} from "../hardware/index.js";
import type { ReplicaSetup } from "../store/types.js";

export const UNKNOWN_HARDWARE = "unknown";

export interface RateCard {
  /** The accelerator's catalog id, or "unknown" (priced at zero). */
  readonly hardware: string;
  /** Devices per replica (tensor parallelism). */
  readonly devices: number;
  /** Sequences the replica runs at once: device-seconds split between them. */
  readonly slots: number;
  /** Prefill time per prompt token with the whole replica on it: what the router predicts TTFT from. */
  readonly msPerInputToken: number;
  readonly nusdPerInputToken: number;
  readonly nusdPerCachedToken: number;
  readonly nusdPerOutputToken: number;
  readonly joulesPerInputToken: number;
  readonly joulesPerCachedToken: number;
  readonly joulesPerOutputToken: number;
  /** What the router reads about this replica, from the same function the simulator uses (absent when unpriced). */
  readonly route?: RouteConstants;
  /** The setup priced, as the ledger records it on each row (absent when unpriced). */
  readonly setup?: ReplicaSetup;
  /** The hardware model of the replica at that setup: what flotilla_twin_error_ratio predicts its requests' timings with (absent when unpriced). */
  readonly perf?: PerfProfile;
  /** The same replica at its devices' physical limit: what its efficiency is measured against (absent when unpriced). */
  readonly roofline?: PerfProfile;
}

/** A replica without hardware in the fleet file: metered in tokens and device-seconds, priced at zero. */
export function unpriced(slots: number, devices = 1): RateCard {
  return {
    hardware: UNKNOWN_HARDWARE,
    devices,
    slots,
    msPerInputToken: 0,
    nusdPerInputToken: 0,
    nusdPerCachedToken: 0,
    nusdPerOutputToken: 0,
    joulesPerInputToken: 0,
    joulesPerCachedToken: 0,
    joulesPerOutputToken: 0,
  };
}

export interface RateCardInput {
  readonly model: ModelSpec;
  readonly hardware: HardwareSpec;
  readonly precision: PrecisionSpec;
  readonly tp: number;
  readonly slots: number;
  readonly pue?: number;
  readonly usdPerKwh?: number;
  readonly pricing?: Pricing;
  /** The engine's parameters (a replica's calibrated profile); default the built-in fit. */
  readonly params?: PerfParams;
}

const CHUNK = 1024;
const CONTEXT_PER_SEQUENCE = 1024;

export function rateCard(input: RateCardInput): RateCard {
  const { tp } = input;
  const p = profileFor({ model: input.model, hardware: input.hardware, precision: input.precision, tp, ...(input.params === undefined ? {} : { params: input.params }) });
  const e = makeEnergyProfile(p, input.hardware, input.precision, input.params);
  const pue = input.pue ?? DEFAULT_PUE;
  const usdPerKwh = input.usdPerKwh ?? DEFAULT_USD_PER_KWH;
  const replicaUsdPerS = (tp * deviceUsdPerHour(input.hardware, input.pricing === undefined ? {} : { pricing: input.pricing })) / 3600;
  const batch = Math.max(1, Math.min(input.slots, maxBatch(p, CONTEXT_PER_SEQUENCE / 2, CONTEXT_PER_SEQUENCE / 2, input.slots)));

  const inS = prefillMs(p, CHUNK) / CHUNK / 1000;
  // Reading a cached prefix never costs more than computing it would (so prompt + max_tokens bounds any request).
  const cachedS = Math.min(inS, Math.max(0, prefillMs(p, CHUNK, CHUNK) - prefillMs(p, CHUNK)) / CHUNK / 1000);
  const outS = decodeStepMs(p, batch, batch * CONTEXT_PER_SEQUENCE) / batch / 1000;
  const joules = (perDevice: number): number => perDevice * tp * pue;
  const inJ = joules(prefillJoules(p, e, CHUNK) / CHUNK);
  const cachedJ = Math.min(inJ, joules(Math.max(0, prefillJoules(p, e, CHUNK, CHUNK) - prefillJoules(p, e, CHUNK)) / CHUNK));
  const outJ = joules(decodeStepJoules(p, e, batch, batch * CONTEXT_PER_SEQUENCE) / batch);
  const nusd = (seconds: number, j: number): number => (seconds * replicaUsdPerS + (j / 3.6e6) * usdPerKwh) * 1e9;
  return {
    hardware: input.hardware.id,
    devices: tp,
    slots: input.slots,
    msPerInputToken: inS * 1000,
    nusdPerInputToken: nusd(inS, inJ),
    nusdPerCachedToken: nusd(cachedS, cachedJ),
    nusdPerOutputToken: nusd(outS, outJ),
    joulesPerInputToken: inJ,
    joulesPerCachedToken: cachedJ,
    joulesPerOutputToken: outJ,
    route: routeConstants(p, e, { usdPerHour: replicaUsdPerS * 3600, pue, usdPerKwh }),
    setup: { spec: input.model.id, precision: input.precision.id, tp },
    perf: p,
    roofline: rooflineProfile(input.model, input.hardware, input.precision, { tp, kvFormat: p.kvFormat }),
  };
}

export interface Metered {
  readonly hardware: string;
  readonly energyJ: number;
  /** Whole nano-dollars, rounded up. */
  readonly costNusd: number;
  readonly deviceSeconds: number;
}

/**
 * Energy and cost of `usage` on a replica, and its device-seconds: the
 * request's wall time on the replica times its devices, divided by the
 * sequences it runs at once (each concurrent request holds a share).
 */
export function meter(rate: RateCard, usage: TokenUsage, durationMs: number): Metered {
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  const fresh = usage.promptTokens - cached;
  const energyJ = fresh * rate.joulesPerInputToken + cached * rate.joulesPerCachedToken + usage.completionTokens * rate.joulesPerOutputToken;
  const cost = fresh * rate.nusdPerInputToken + cached * rate.nusdPerCachedToken + usage.completionTokens * rate.nusdPerOutputToken;
  return {
    hardware: rate.hardware,
    energyJ,
    costNusd: Math.max(0, Math.ceil(cost - 1e-9)),
    deviceSeconds: (Math.max(0, durationMs) / 1000) * (rate.devices / Math.max(1, rate.slots)),
  };
}

/** The most a request of `promptTokens` and `maxTokens` can cost on this card (nothing cached), nano-USD. */
export function worstCase(rate: RateCard, promptTokens: number, maxTokens: number): number {
  return Math.max(0, Math.ceil(promptTokens * rate.nusdPerInputToken + maxTokens * rate.nusdPerOutputToken - 1e-9));
}

/** What the router's TTFT, cost and energy scorers read about a replica (the Candidate fields of the same names). */
export interface RouteHints {
  readonly prefillMsPerToken: number;
  /** Dollars per million generated tokens, with the prompt tokens that come with them. */
  readonly usdPerMTok: number;
  /** Facility joules per generated token, with the prompt tokens that come with them. */
  readonly joulesPerToken: number;
}

/**
 * The router's view of a rate card: scheduler/constants.ts routeConstants,
 * the function the simulator calls for its islands, so cost-aware and
 * energy scorers rank replicas alike live and simulated. Undefined for a
 * replica without hardware, whose scorers then stay neutral.
 */
export function routeHints(rate: RateCard): RouteHints | undefined {
  const route = rate.route;
  if (route === undefined || rate.hardware === UNKNOWN_HARDWARE) return undefined;
  return { prefillMsPerToken: route.prefillMsPerToken, usdPerMTok: route.usdPerMTok, joulesPerToken: route.joulesPerToken };
}

/**
 * Rate cards by replica id, and the dearest per model for admission (the
 * replica is chosen later). Replicas come and go while serving
 * (gateway/membership.ts): `set` and `delete` keep the dearest current.
 */
export class RateBook {
  readonly #entries = new Map<string, { readonly model: string; readonly rate: RateCard }>();
  readonly #worstByModel = new Map<string, RateCard>();
  #worstOverall: RateCard = unpriced(1);

  constructor(replicas: ReadonlyMap<string, { readonly model: string; readonly rate: RateCard }> = new Map()) {
    for (const [id, entry] of replicas) this.#entries.set(id, entry);
    this.#recompute();
  }

  replica(id: string | undefined): RateCard | undefined {
    return id === undefined ? undefined : this.#entries.get(id)?.rate;
  }

  set(id: string, model: string, rate: RateCard): void {
    this.#entries.set(id, { model, rate });
    this.#recompute();
  }

  delete(id: string): void {
    if (this.#entries.delete(id)) this.#recompute();
  }

  /** What the router should know of a replica's speed, price and energy. */
  hints(id: string): RouteHints | undefined {
    const rate = this.#entries.get(id)?.rate;
    return rate === undefined ? undefined : routeHints(rate);
  }

  /**
   * Per token, the dearest of the model's replicas (of all replicas, for a
   * name not in the book): what admission reserves against, since the
   * replica is chosen after it.
   */
  worstFor(model: string): RateCard {
    return this.#worstByModel.get(model) ?? this.#worstOverall;
  }

  #recompute(): void {
    this.#worstByModel.clear();
    let overall = unpriced(1);
    for (const { model, rate } of this.#entries.values()) {
      const prior = this.#worstByModel.get(model);
      this.#worstByModel.set(model, prior === undefined ? rate : dearest(prior, rate));
      overall = dearest(overall, rate);
    }
    this.#worstOverall = overall;
  }
}

function dearest(a: RateCard, b: RateCard): RateCard {
  if (a === b) return a;
  return {
    hardware: a.hardware === b.hardware ? a.hardware : "mixed",
    devices: Math.max(a.devices, b.devices),
    slots: Math.min(a.slots, b.slots),
    msPerInputToken: Math.max(a.msPerInputToken, b.msPerInputToken),
    nusdPerInputToken: Math.max(a.nusdPerInputToken, b.nusdPerInputToken),
    nusdPerCachedToken: Math.max(a.nusdPerCachedToken, b.nusdPerCachedToken),
    nusdPerOutputToken: Math.max(a.nusdPerOutputToken, b.nusdPerOutputToken),
    joulesPerInputToken: Math.max(a.joulesPerInputToken, b.joulesPerInputToken),
    joulesPerCachedToken: Math.max(a.joulesPerCachedToken, b.joulesPerCachedToken),
    joulesPerOutputToken: Math.max(a.joulesPerOutputToken, b.joulesPerOutputToken),
  };
}
