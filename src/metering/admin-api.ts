import type { ApiKeyRecord, PriorityClass, TenantWithState, UsageQuery, UsageRow } from "../store/types.js";

/** A tenant to create; absent limits are unlimited. */
export interface TenantSpec {
  /** A short name: letters, digits, '.', '_' and '-'; it is the tenant's id. */
  readonly id: string;
  readonly weight?: number;
  readonly priority?: PriorityClass;
  readonly requestsPerMinute?: number | null;
  readonly tokensPerMinute?: number | null;
  readonly maxConcurrent?: number | null;
  readonly monthlyBudgetUsd?: number | null;
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
