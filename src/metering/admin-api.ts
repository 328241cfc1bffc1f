import type { ApiKeyRecord, PriorityClass, TenantWithState, UsageQuery, UsageRow } from "../store/types.js";

/** A tenant to create; absent limits are unlimited. */
export interface TenantSpec {
  /** A short name (TENANT_NAME); it labels ledger rows and metrics. */
  readonly id: string;
  readonly weight?: number;
  readonly priority?: PriorityClass;
  readonly requestsPerMinute?: number | null;
  readonly tokensPerMinute?: number | null;
  readonly maxConcurrent?: number | null;
  readonly monthlyBudgetUsd?: number | null;
}

/** 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * At most 200 of: letters, digits, space, '.', '_', '-', ':', '/', '@'. Key
 * names reach operators' terminals (`flotilla keys list`), so nothing that
 * a terminal would act on.
 */
export const KEY_NAME = /^[A-Za-z0-9 ._:/@-]{0,200}$/;

export interface ValueRange {
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
}

/**
 * What a tenant's settings may be, checked at the edge (the admin routes'
 * schema and createTenant) so that every backend stores exactly the same
 * values: limits fit a 32-bit integer column; a budget in nano-USD stays
 * well inside a double's exact integers; weights keep fair-share arithmetic
 * finite.
 */
export const TENANT_RANGES = {
  weight: { min: 0.001, max: 1000, integer: false },
  requests_per_minute: { min: 1, max: 1_000_000_000, integer: true },
  tokens_per_minute: { min: 1, max: 1_000_000_000, integer: true },
  max_concurrent: { min: 1, max: 1_000_000, integer: true },
  monthly_budget_usd: { min: 0, max: 9_000_000, integer: false },
} as const satisfies Record<string, ValueRange>;

/** "an integer from 1 to 1,000,000,000", for messages. */
export function describeRange(r: ValueRange): string {
  return `${r.integer ? "an integer" : "a number"} from ${r.min.toLocaleString("en-US")} to ${r.max.toLocaleString("en-US")}`;
}

/** The operator's side of tenancy, behind the admin routes and `flotilla tenants|keys|usage`. */
export interface TenancyAdmin {
  createTenant(spec: TenantSpec): Promise<TenantWithState>;
  listTenants(): Promise<TenantWithState[]>;
  getTenant(id: string): Promise<TenantWithState | undefined>;
  /** Deletes the tenant and its keys at once (its ledger rows stay); false when there was none. */
  deleteTenant(id: string): Promise<boolean>;
  /** A new key: `key` is shown this once and never stored. */
  createKey(tenantId: string, name?: string): Promise<{ readonly key: string; readonly record: ApiKeyRecord }>;
  listKeys(tenantId?: string): Promise<ApiKeyRecord[]>;
  /** Revokes at once; false when no such active key exists. */
  revokeKey(id: string): Promise<boolean>;
  usage(query: UsageQuery): Promise<UsageRow[]>;
}
