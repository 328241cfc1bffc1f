import type { ApiEndpoint, Prompt, TokenUsage } from "../core/request.js";
import type { TenancyAdmin } from "./admin-api.js";
import type { BatchLineResult, GenerationTiming } from "../store/types.js";

/**
 * The seam between the gateway and multi-tenancy: who is calling, may they
 * run this request now, and what it cost. The gateway calls these at fixed
 * points of every /v1 request; the store-backed implementation lives beside
 * this file, and `openTenancy` (no keys, no limits, no ledger) is what a
 * gateway without a store uses.
 */

export interface Principal {
  readonly tenantId: string;
  /** The tenant's immutable uid, where known: admission refuses a tenant recreated under the same name since. */
  readonly tenantUid?: string;
  readonly keyId: string;
  /** The tenant's fair-share weight and priority class, for the scheduler's admission queue. */
  readonly weight?: number;
  readonly priority?: "interactive" | "batch";
}

export interface AdmissionRequest {
  readonly requestId: string;
  readonly principal: Principal | undefined;
  readonly model: string;
  readonly endpoint: ApiEndpoint;
  readonly stream: boolean;
  /** Upper bound on output tokens, when the request gave one. */
  readonly maxTokens: number | undefined;
  /** The prompt (and any assistant prefill to continue), so admission can count its tokens for the worst-case reservation. */
  readonly prompt?: Prompt;
  readonly continuation?: string | undefined;
  /** Tokens an engine reads beyond the prompt's own text (an embedding model's beginning and end marks around each input): reserved and billed with it. */
  readonly promptMarks?: number;
  /** Generations the request may run (a cascade that may redo its light answer on the heavy model: 2); reserves for each. Default 1. */
  readonly legs?: number;
  /** A Batch API line: priced with the batch discount. */
  readonly batch?: boolean;
}

/** A generation a request ran before the one that answered it (a cascade's light leg): metered too. */
export interface EarlierLeg {
  readonly usage: TokenUsage;
  readonly replica: string;
  readonly durationMs: number;
}

export type RequestStatus = "ok" | "cancelled" | "failed" | "deadline_exceeded";

export interface Settlement {
  readonly status: RequestStatus;
  /** Tokens actually processed; undefined when the request never reached an engine. */
  readonly usage: TokenUsage | undefined;
  /** The replica that finished (or last tried) the request. */
  readonly replica: string | undefined;
  readonly attempts: number;
  readonly continuations: number;
  readonly durationMs: number;
  /** The FailureCode, for failed requests. */
  readonly errorCode?: string;
  /** Tokens already streamed to the client, for a request that ended without a result (cancelled mid-stream). */
  readonly streamedTokens?: number;
  /** Some of streamedTokens were estimated (an upstream that does not count per chunk). */
  readonly streamedEstimated?: boolean;
  /** The usage of an ok request is an estimate (the engine reported none, or the gateway cut it at max_tokens). */
  readonly usageEstimated?: boolean;
  /** Generations that ran before the final one; their tokens, energy and cost count too. */
  readonly earlier?: readonly EarlierLeg[];
  /** The answering generation's timing on its replica, where the observer measured one (RequestWatch.finish). */
  readonly timing?: GenerationTiming;
  /** The Batch API line's result, committed with the ledger row (SettleInput.batchLine). */
  readonly batchLine?: BatchLineResult;
}

/** Flotilla's usage extension in responses (`x_flotilla`), beyond who served it. */
export type UsageExtension = Readonly<Record<string, number | string>>;

/** One admitted request's claim on its tenant's limits; settled exactly once. */
export interface Ticket {
  /** Energy, cost and the like of a finished generation (and any earlier legs), for the response's x_flotilla. */
  price(usage: TokenUsage, replica: string, durationMs: number, earlier?: readonly EarlierLeg[]): UsageExtension;
  /** Records what happened and releases what admission reserved; idempotent. */
  settle(settlement: Settlement): Promise<void>;
}

export interface Tenancy {
  /**
   * Identifies the caller from its Authorization header; throws a
   * FlotillaError with code "unauthorized" when a key is required and
   * missing, malformed or revoked.
   */
  authenticate(authorization: string | undefined, remoteAddress: string | undefined): Promise<Principal | undefined>;
  /** Reserves the request against its tenant's limits, or throws "quota_exceeded" naming the limit. */
  admit(request: AdmissionRequest): Promise<Ticket>;
  close(): Promise<void>;
  /** Tenants, keys and usage, for the admin routes; absent where there is no store. */
  readonly admin?: TenancyAdmin;
}

const openTicket: Ticket = {
  price: () => ({}),
  settle: async () => {},
};

export const openTenancy: Tenancy = {
  authenticate: async () => undefined,
  admit: async () => openTicket,
  close: async () => {},
};
