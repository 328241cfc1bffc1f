/**
 * The arithmetic of limits, shared by every backend: each backend reads a
 * tenant's row under a write lock, asks these pure functions what the row
 * becomes, and writes it back in the same transaction. So the decision is
 * the same everywhere, and it is exact because the row is locked.
 *
 * - Requests/minute and tokens/minute are token buckets holding up to one
 *   minute's allowance, refilled continuously at limit/60 s. A request takes
 *   1 from the first and its worst-case tokens (prompt + max_tokens) from the
 *   second; settlement returns the unused tokens (or takes the excess, for a
 *   request without max_tokens, leaving the bucket in debt). A bucket is never
 *   more than one minute's allowance in debt (its burst floor): however large
 *   one request, or however much an upstream claims it used, a tenant waits
 *   at most two minutes for its next one.
 * - Concurrency counts admitted, unsettled requests.
 * - The monthly budget holds spent (settled this month) + reserved (the
 *   worst case of every admitted, unsettled request); a request is admitted
 *   only if its own worst case still fits, so no interleaving can overspend.
 */
import type { LimitName, TenantLimits, TenantState, TenantWithState } from "./types.js";

const MINUTE_MS = 60_000;

/** "YYYY-MM" of an epoch-ms instant, in UTC. */
export function periodOf(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** Start of the month after the one `ms` falls in (UTC), epoch ms. */
export function nextPeriodStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** Start of the month `ms` falls in (UTC), epoch ms. */
export function periodStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

export const EMPTY_STATE: TenantState = { rpmTokens: null, rpmAt: null, tpmTokens: null, tpmAt: null, inFlight: 0, reservedNusd: 0, period: "", spentNusd: 0 };

interface Bucket {
  readonly tokens: number;
  readonly at: number;
}

/**
 * The bucket's level at `now`. A bucket never used is full. Time never runs
 * backwards for a bucket (another process's clock may be a little ahead), so
 * skew can delay a refill but never grant one twice.
 */
export function refill(tokens: number | null, at: number | null, perMinute: number, now: number): Bucket {
  if (tokens === null || at === null) return { tokens: perMinute, at: now };
  const elapsed = Math.max(0, now - at);
  return { tokens: Math.min(perMinute, tokens + (elapsed * perMinute) / MINUTE_MS), at: Math.max(at, now) };
}

/** When a bucket refilled at `b` holds `need` again. */
function bucketReady(b: Bucket, need: number, perMinute: number): number {
  return b.at + Math.ceil(((need - b.tokens) * MINUTE_MS) / perMinute);
}

export interface Ask {
  /** Worst-case tokens. */
  readonly tokens: number;
  /** Worst-case cost, nano-USD. */
  readonly costNusd: number;
}

export type Decision =
  | { readonly ok: true; readonly state: TenantState }
  | { readonly ok: false; readonly limit: LimitName; readonly resetAt: number | null; readonly state: TenantState };

/** The state with the month rolled over, when `now` is in a later month than the counter. */
function current(state: TenantState, now: number): TenantState {
  const period = periodOf(now);
  return state.period === period ? state : { ...state, period, spentNusd: 0 };
}

/**
 * Whether `ask` fits the tenant's limits at `now`, and the state after
 * taking it. When several limits refuse, the one that frees up last is named
 * (retrying before it resets is pointless).
 */
export function decide(limits: TenantLimits, prior: TenantState, ask: Ask, now: number): Decision {
  const state = current(prior, now);
  const refusals: { limit: LimitName; resetAt: number | null }[] = [];
  let rpm: Bucket | undefined;
  let tpm: Bucket | undefined;
  if (limits.maxConcurrent !== null && state.inFlight + 1 > limits.maxConcurrent) {
    // Frees when some running request ends: unknowable here.
    refusals.push({ limit: "max_concurrent", resetAt: null });
  }
  if (limits.requestsPerMinute !== null) {
    rpm = refill(state.rpmTokens, state.rpmAt, limits.requestsPerMinute, now);
    if (rpm.tokens < 1) refusals.push({ limit: "requests_per_minute", resetAt: bucketReady(rpm, 1, limits.requestsPerMinute) });
  }
  if (limits.tokensPerMinute !== null) {
    tpm = refill(state.tpmTokens, state.tpmAt, limits.tokensPerMinute, now);
    // A request larger than a whole minute's allowance waits for a full bucket (and leaves it in debt).
    const need = Math.min(ask.tokens, limits.tokensPerMinute);
    if (tpm.tokens < need) refusals.push({ limit: "tokens_per_minute", resetAt: bucketReady(tpm, need, limits.tokensPerMinute) });
  }
  if (limits.monthlyBudgetNusd !== null && state.spentNusd + state.reservedNusd + ask.costNusd > limits.monthlyBudgetNusd) {
    // Reservations free up as requests settle; if spending alone is over, only the new month helps.
    const resetAt = state.spentNusd + ask.costNusd > limits.monthlyBudgetNusd ? nextPeriodStart(now) : null;
    refusals.push({ limit: "monthly_budget", resetAt });
  }
  if (refusals.length > 0) {
    const worst = refusals.reduce((a, b) => (later(b.resetAt, a.resetAt) ? b : a));
    return { ok: false, limit: worst.limit, resetAt: worst.resetAt, state };
  }
  return {
    ok: true,
    state: {
      ...state,
      ...(rpm === undefined ? {} : { rpmTokens: rpm.tokens - 1, rpmAt: rpm.at }),
      ...(tpm === undefined ? {} : { tpmTokens: floored(tpm.tokens - ask.tokens, limits.tokensPerMinute!), tpmAt: tpm.at }),
      inFlight: state.inFlight + 1,
      reservedNusd: state.reservedNusd + ask.costNusd,
    },
  };
}

/** A bucket level held at its burst floor: at most one minute's allowance in debt. */
function floored(tokens: number, perMinute: number): number {
  return Math.max(-perMinute, tokens);
}

function later(a: number | null, b: number | null): boolean {
  if (a === null) return false;
  if (b === null) return true;
  return a > b;
}

export interface Release {
  /** What admission reserved. */
  readonly reservedTokens: number;
  readonly reservedNusd: number;
  /** What the request actually used and is charged. */
  readonly actualTokens: number;
  readonly costNusd: number;
  /** The month the request was admitted in: its cost counts there. */
  readonly period: string;
  /** Admission's claim (in-flight slot, reservation) is still held; false once crash recovery has released it. */
  readonly holdsReservation: boolean;
}

/** The tenant's state after a request settles. */
export function release(limits: TenantLimits, prior: TenantState, r: Release, now: number): TenantState {
  let state = current(prior, now);
  if (r.holdsReservation) {
    state = { ...state, inFlight: Math.max(0, state.inFlight - 1), reservedNusd: Math.max(0, state.reservedNusd - r.reservedNusd) };
    if (limits.tokensPerMinute !== null && state.tpmTokens !== null) {
      const b = refill(state.tpmTokens, state.tpmAt, limits.tokensPerMinute, now);
      state = { ...state, tpmTokens: floored(Math.min(limits.tokensPerMinute, b.tokens + r.reservedTokens - r.actualTokens), limits.tokensPerMinute), tpmAt: b.at };
    }
  }
  // A request admitted last month and settled in this one was charged to last month.
  if (r.period === state.period) state = { ...state, spentNusd: state.spentNusd + r.costNusd };
  return state;
}

/** A readable account of a refusal, for the 429's message. */
export function describeRefusal(t: TenantWithState, limit: LimitName, resetAt: number | null, now: number): string {
  const { tenant, state } = t;
  const when = resetAt === null ? "" : `; it resets in ${Math.max(1, Math.ceil((resetAt - now) / 1000))} s (at ${new Date(resetAt).toISOString()})`;
  switch (limit) {
    case "max_concurrent":
      return `tenant "${tenant.id}" has ${state.inFlight} requests running, its max_concurrent limit (${tenant.maxConcurrent}); retry when one finishes`;
    case "requests_per_minute":
      return `tenant "${tenant.id}" is over its requests_per_minute limit (${tenant.requestsPerMinute})${when}`;
    case "tokens_per_minute":
      return `tenant "${tenant.id}" is over its tokens_per_minute limit (${tenant.tokensPerMinute}; this request may use up to prompt + max_tokens)${when}`;
    case "monthly_budget": {
      const usd = (n: number | null): string => {
        const x = (n ?? 0) / 1e9;
        return `${x === 0 || x >= 0.01 ? x.toFixed(2) : x.toPrecision(3)} USD`;
      };
      const reserved = state.reservedNusd > 0 ? ` and ${usd(state.reservedNusd)} held by running requests` : "";
      const tail = resetAt === null ? "; retry when running requests finish" : when;
      return `tenant "${tenant.id}" is over its monthly_budget (${usd(tenant.monthlyBudgetNusd)}: ${usd(state.spentNusd)} spent${reserved}; this request may cost up to its max_tokens)${tail}`;
    }
  }
}
