import type {
  AdmitInput,
  AdmitOutcome,
  ApiKeyRecord,
  InstanceRecord,
  LedgerFilter,
  LedgerRow,
  NewTenant,
  SettleInput,
  Tenant,
  TenantWithState,
  UsageQuery,
  UsageRow,
} from "./types.js";

/**
 * The one storage interface, with an embedded (SQLite) and a shared
 * (Postgres) backend. Every method that moves a limit is one transaction
 * holding the tenant's row lock, so several gateway processes sharing the
 * database enforce limits exactly.
 */
export interface Store {
  readonly kind: "sqlite" | "postgres";
  /** Where it lives, with any password removed: for messages. */
  readonly where: string;

  createTenant(tenant: NewTenant): Promise<Tenant>;
  listTenants(): Promise<TenantWithState[]>;
  getTenant(id: string): Promise<TenantWithState | undefined>;
  /** Deletes the tenant and its keys (its ledger rows stay); false when there was none. */
  deleteTenant(id: string): Promise<boolean>;

  createKey(key: ApiKeyRecord & { readonly hash: string }): Promise<ApiKeyRecord>;
  listKeys(tenantId?: string): Promise<ApiKeyRecord[]>;
  /** False when no such key exists or it was already revoked. */
  revokeKey(id: string, at: number): Promise<boolean>;
  findKey(hash: string): Promise<{ readonly key: ApiKeyRecord; readonly tenant: Tenant } | undefined>;
  /** Whether any key that is not revoked exists. */
  hasActiveKeys(): Promise<boolean>;

  /**
   * Checks the request against its tenant's limits and, when it fits, takes
   * its reservation and writes its ledger row ('running'), atomically.
   * Requests of the anonymous tenant are only recorded.
   */
  admit(input: AdmitInput): Promise<AdmitOutcome>;
  /**
   * Records the outcome on the request's row and releases its reservation,
   * once: true when this call did it, false when the row was already settled.
   * A row crash recovery marked 'interrupted' takes the outcome too (its
   * reservation was already released).
   */
  settle(input: SettleInput): Promise<boolean>;

  registerInstance(instance: InstanceRecord): Promise<void>;
  /** False when the instance is no longer registered (another process took it for dead). */
  heartbeat(id: string, at: number): Promise<boolean>;
  listInstances(): Promise<InstanceRecord[]>;
  /**
   * Marks 'interrupted' every running row of the given instances and of
   * instances no longer registered (other than `keep`), releasing their
   * reservations; removes those instances. Returns the rows marked.
   */
  reap(deadIds: readonly string[], keep: readonly string[], at: number): Promise<number>;
  deregisterInstance(id: string): Promise<void>;

  /**
   * The database's own clock (epoch ms) where the backend keeps time for
   * several hosts (Postgres), so heartbeats and buckets do not depend on the
   * hosts' clocks agreeing; undefined where the caller's clock is used.
   */
  databaseNow(): Promise<number | undefined>;

  usage(query: UsageQuery): Promise<UsageRow[]>;
  ledger(filter?: LedgerFilter): Promise<LedgerRow[]>;
  close(): Promise<void>;
}

/** The schema, as ordered migrations; the SQL is valid for both SQLite and Postgres. */
export const MIGRATIONS: readonly { readonly version: number; readonly statements: readonly string[] }[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        weight DOUBLE PRECISION NOT NULL DEFAULT 1,
        priority TEXT NOT NULL DEFAULT 'interactive',
        requests_per_minute INTEGER,
        tokens_per_minute INTEGER,
        max_concurrent INTEGER,
        monthly_budget_nusd BIGINT,
        created_at BIGINT NOT NULL,
        rpm_tokens DOUBLE PRECISION,
        rpm_at BIGINT,
        tpm_tokens DOUBLE PRECISION,
        tpm_at BIGINT,
        in_flight INTEGER NOT NULL DEFAULT 0,
        reserved_nusd BIGINT NOT NULL DEFAULT 0,
        period TEXT NOT NULL DEFAULT '',
        spent_nusd BIGINT NOT NULL DEFAULT 0
      )`,
      `CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL DEFAULT '',
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      )`,
      `CREATE INDEX api_keys_tenant ON api_keys (tenant_id)`,
      `CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
      )`,
      `CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        key_id TEXT,
        model TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status TEXT NOT NULL,
        error_code TEXT,
        replica TEXT,
        hardware TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        device_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
        energy_j DOUBLE PRECISION NOT NULL DEFAULT 0,
        cost_nusd BIGINT NOT NULL DEFAULT 0,
        reserved_nusd BIGINT NOT NULL DEFAULT 0,
        reserved_tokens INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        continuations INTEGER NOT NULL DEFAULT 0,
        period TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT
      )`,
      `CREATE INDEX requests_tenant_started ON requests (tenant_id, started_at)`,
      `CREATE INDEX requests_started ON requests (started_at)`,
      `CREATE INDEX requests_running ON requests (instance_id) WHERE status = 'running'`,
    ],
  },
];

/** Redacts the password of a connection URL. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}
