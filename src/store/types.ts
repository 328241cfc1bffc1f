/**
 * What the store keeps: tenants with their limits and the live state those
 * limits are enforced on, API keys (hashes only), gateway instances, and the
 * usage ledger (one row per request). Money is integer nano-dollars
 * (1e-9 USD) everywhere, so sums and comparisons are exact.
 */

/** Priority classes, as the scheduler's admission queue knows them. */
export const PRIORITY_CLASSES = ["interactive", "batch"] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];

/** The tenant id of requests that carry no key (loopback callers while no key exists). */
export const ANONYMOUS_TENANT = "anonymous";

/** Token counts in the ledger are 32-bit integers on every backend. */
export const MAX_LEDGER_TOKENS = 2 ** 31 - 1;

/** Nano-dollars per dollar. */
export const NUSD_PER_USD = 1e9;

export type LimitName = "max_concurrent" | "requests_per_minute" | "tokens_per_minute" | "monthly_budget";

export interface TenantLimits {
  readonly requestsPerMinute: number | null;
  readonly tokensPerMinute: number | null;
  readonly maxConcurrent: number | null;
  /** Monthly budget in nano-USD. */
  readonly monthlyBudgetNusd: number | null;
}

export interface NewTenant extends TenantLimits {
  readonly id: string;
  readonly weight: number;
  readonly priority: PriorityClass;
  readonly createdAt: number;
}

export interface Tenant extends NewTenant {
  /** Generated when the tenant is created and never changed: what keys and running requests belong to. */
  readonly uid: string;
}

/** The counters admission and settlement move, kept on the tenant's row. */
export interface TenantState {
  /** Token-bucket level and when it was last refilled (epoch ms); null before first use. */
  readonly rpmTokens: number | null;
  readonly rpmAt: number | null;
  readonly tpmTokens: number | null;
  readonly tpmAt: number | null;
  /** Admitted requests not yet settled. */
  readonly inFlight: number;
  /** Worst-case cost of admitted, unsettled requests (nano-USD). */
  readonly reservedNusd: number;
  /** The month `spentNusd` belongs to, "YYYY-MM" (UTC); "" before first use. */
  readonly period: string;
  readonly spentNusd: number;
}

export interface TenantWithState {
  readonly tenant: Tenant;
  readonly state: TenantState;
}

export interface ApiKeyRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  /** The key's first characters, to tell keys apart in listings. */
  readonly prefix: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
}

/** A key to store: its record and its hash, never the key itself. */
export type NewApiKey = ApiKeyRecord & { readonly hash: string };

/** A gateway process; host and pid only say where it ran (liveness is its heartbeat alone). */
export interface InstanceRecord {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export type LedgerStatus = "running" | "ok" | "cancelled" | "failed" | "deadline_exceeded" | "interrupted";

/** The request a ledger row is for, as admission records it. */
export interface RequestIdentity {
  /** The ledger's own id: unique, generated at admission. */
  readonly id: string;
  /** The request id the client saw (x-request-id); not necessarily unique. */
  readonly requestId: string;
  readonly tenantId: string;
  readonly keyId: string | null;
  readonly model: string;
  readonly endpoint: string;
  readonly stream: boolean;
}

/** What a request used: settlement records it on the request's row, and usage sums it over rows. */
export interface RequestUsage {
  readonly inputTokens: number;
  readonly cachedTokens: number;
  readonly outputTokens: number;
  readonly deviceSeconds: number;
  readonly energyJ: number;
  readonly costNusd: number;
}

/** How a request ended, as settlement records it on the request's row. */
export interface RequestOutcome extends RequestUsage {
  readonly errorCode: string | null;
  /** Some token count on the row is a bounded estimate, not a count (see the billing rule in docs/tenancy.md). */
  readonly estimated: boolean;
  readonly replica: string | null;
  readonly hardware: string | null;
  readonly attempts: number;
  readonly continuations: number;
}

/**
 * What the replica that answered runs, as the hardware model names it, when
 * the fleet file gives its hardware: rows are grouped by it (with `hardware`)
 * when a profile is calibrated from the ledger. Kept on the row, not looked up
 * in the fleet file later, because replica ids are positions in that file and
 * an edited file would give old rows another replica's setup.
 */
export interface ReplicaSetup {
  /** The model's shape: a catalog id, or the id of the shape read from a GGUF file. */
  readonly spec: string;
  readonly precision: string;
  /** Devices per replica (tensor parallelism). */
  readonly tp: number;
}

/**
 * One generation's timing on the replica that answered it: what the twin is
 * calibrated from (`flotilla calibrate --from-ledger`) and checked against
 * (flotilla_twin_error_ratio). Measured by the gateway, so it includes the
 * replica's own queueing but not the gateway's.
 */
export interface GenerationTiming {
  /** Requests this gateway had running on the replica when the request started there, itself included. */
  readonly batch: number;
  /** Their mean over the time the request decoded (first token to last); null with fewer than two output tokens. */
  readonly batchMean: number | null;
  /** From the replica taking the request to its first token, ms. */
  readonly ttftMs: number;
  /**
   * Decode time (first token to last) / (output tokens - 1), ms; null unless the request ended ok with at
   * least two output tokens. Not to the end of the request: the gateway's own work after the last token is no
   * engine's time per token.
   */
  readonly tpotMs: number | null;
}

export interface LedgerRow extends RequestIdentity, RequestOutcome {
  /** The uid of the tenant it was admitted under (null for anonymous and older settled rows). */
  readonly tenantUid: string | null;
  readonly status: LedgerStatus;
  readonly reservedNusd: number;
  readonly reservedTokens: number;
  readonly period: string;
  readonly instanceId: string;
  readonly startedAt: number;
  readonly finishedAt: number | null;
  /** Null where the replica has no hardware in the fleet file (or the row is not settled). */
  readonly setup: ReplicaSetup | null;
  /** Null for a request that never got a first token, and for one whose time is not one generation's on one replica (see SettleInput). */
  readonly timing: GenerationTiming | null;
}

export interface AdmitInput extends RequestIdentity {
  /** The tenant's uid as the caller's key found it: admission refuses a tenant of that name with another uid. */
  readonly tenantUid?: string;
  /** Worst-case cost, held against the budget until settlement. */
  readonly reservedNusd: number;
  /** Worst-case tokens (prompt + max_tokens), taken from the tokens/minute bucket; at most MAX_LEDGER_TOKENS. */
  readonly reservedTokens: number;
  /** Whether the request bounds its output (max_tokens): budgets need it. */
  readonly outputBounded: boolean;
  readonly instanceId: string;
  readonly now: number;
}

export type AdmitOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "limit"; readonly limit: LimitName; readonly state: TenantWithState; readonly resetAt: number | null }
  | { readonly ok: false; readonly reason: "unknown_tenant" | "max_tokens_required" | "instance_gone" };

export interface SettleInput extends RequestOutcome {
  readonly id: string;
  readonly status: Exclude<LedgerStatus, "running" | "interrupted">;
  readonly now: number;
  readonly setup?: ReplicaSetup;
  /**
   * Absent for a request that failed before its first token, and for one
   * answered by more than one generation or replica (a failover, a hedge, a
   * mid-stream continuation, a cascade's second leg): its time is no one
   * replica's.
   */
  readonly timing?: GenerationTiming;
  /**
   * The Batch API line this request ran, whose result commits with this
   * settlement. When the line is no longer running under that attempt (a
   * runner that lost its lease finished late), the request is recorded as
   * cancelled and charged nothing: the line's result and charge are another
   * attempt's.
   */
  readonly batchLine?: BatchLineResult;
}

export const USAGE_GROUPS = ["tenant", "key", "model", "replica", "hardware", "status", "endpoint", "day", "hour", "month"] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

export interface UsageQuery {
  /** Only this tenant's requests; all tenants when absent. */
  readonly tenantId?: string;
  /** Epoch ms, inclusive. */
  readonly from: number;
  /** Epoch ms, exclusive. */
  readonly to: number;
  readonly groupBy: readonly UsageGroup[];
}

export interface UsageRow extends RequestUsage {
  /** The value of each grouping column, by group name. */
  readonly group: Readonly<Partial<Record<UsageGroup, string | null>>>;
  readonly requests: number;
}

export interface LedgerFilter {
  readonly tenantId?: string;
  readonly status?: LedgerStatus;
  readonly limit?: number;
  /** Rows of requests started at or after this (epoch ms). */
  readonly since?: number;
  readonly replica?: string;
  readonly hardware?: string;
  /** Only rows with a timing (GenerationTiming). */
  readonly timed?: boolean;
}

/**
 * The Batch API's records (OpenAI's files and batches). A batch's lines are
 * copied from its input file when it is created, and each line's result is
 * committed in the same transaction as the ledger row of the request that
 * produced it (SettleInput.batchLine): a line never has two results, nor a
 * result without its charge.
 */
export type FileKind = "upload" | "output" | "errors";

export interface FileRecord {
  readonly id: string;
  /** Who may see it: the uploading tenant's uid (its name for the anonymous tenant). */
  readonly owner: string;
  readonly tenantId: string;
  readonly purpose: string;
  readonly filename: string;
  readonly bytes: number;
  readonly lines: number;
  readonly createdAt: number;
  readonly kind: FileKind;
  /** The one endpoint every line of a batch input file calls; the batch whose output an output or error file is. */
  readonly endpoint: string | null;
  readonly batchId: string | null;
}

export const BATCH_STATUSES = ["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

export type BatchLineState = "pending" | "running" | "completed" | "failed" | "cancelled" | "expired";

export interface NewBatch {
  readonly id: string;
  readonly owner: string;
  readonly tenantId: string;
  readonly keyId: string | null;
  readonly endpoint: string;
  readonly inputFileId: string;
  readonly completionWindow: string;
  readonly metadata: Readonly<Record<string, string>> | null;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export interface BatchRecord extends NewBatch {
  readonly status: BatchStatus;
  readonly inProgressAt: number | null;
  readonly finalizingAt: number | null;
  readonly completedAt: number | null;
  readonly expiredAt: number | null;
  readonly cancellingAt: number | null;
  readonly cancelledAt: number | null;
  readonly outputFileId: string | null;
  readonly errorFileId: string | null;
  /** Lines by state. */
  readonly counts: Readonly<Record<BatchLineState, number>>;
}

/** A line a runner has claimed: its `attempt` is what its result is written under. */
export interface BatchLine {
  readonly batchId: string;
  readonly line: number;
  readonly customId: string;
  readonly body: string;
  readonly attempt: number;
  readonly owner: string;
  readonly tenantId: string;
  readonly keyId: string | null;
  readonly endpoint: string;
}

/** A line's result, written only while the line is still `running` under the same attempt. */
export interface BatchLineResult {
  readonly batchId: string;
  readonly line: number;
  readonly attempt: number;
  readonly state: "completed" | "failed" | "cancelled";
  /** The output or error file's line (JSON, no newline). */
  readonly result: string;
}
