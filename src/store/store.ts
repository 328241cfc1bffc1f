import type {
  AdmitInput,
  AdmitOutcome,
  ApiKeyRecord,
  InstanceRecord,
  NewApiKey,
  LedgerFilter,
  LedgerRow,
  NewTenant,
  SettleInput,
  Tenant,
  TenantWithState,
  UsageQuery,
  UsageRow,
} from "./types.js";
import type { Plan } from "./batches.js";

/** Postgres refuses a NOTIFY payload of 8,000 bytes or more. */
export const BROADCAST_MAX_BYTES = 7_900;

export interface Broadcast {
  /** Tells every listener, this process's included. */
  publish(payload: string): Promise<void>;
  /** Stops listening. */
  close(): Promise<void>;
}

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

  /** Creates the tenant with a fresh uid, its identity for as long as it exists (a recreated name gets another). */
  createTenant(tenant: NewTenant): Promise<Tenant>;
  listTenants(): Promise<TenantWithState[]>;
  getTenant(id: string): Promise<TenantWithState | undefined>;
  /** Deletes the tenant and its keys (its ledger rows stay); false when there was none. */
  deleteTenant(id: string): Promise<boolean>;

  /**
   * Stores a key of the tenant that has `key.tenantId` now (bound to its uid),
   * and from then on keys are required (`keysRequired`), in one transaction;
   * undefined when there is no such tenant.
   */
  createKey(key: NewApiKey): Promise<ApiKeyRecord | undefined>;
  listKeys(tenantId?: string): Promise<ApiKeyRecord[]>;
  /** False when no such key exists or it was already revoked. */
  revokeKey(id: string, at: number): Promise<boolean>;
  /** The key with this hash and the tenant it was created for; undefined when either is gone. */
  findKey(hash: string): Promise<{ readonly key: ApiKeyRecord; readonly tenant: Tenant } | undefined>;
  /**
   * Whether a key was ever created here. It never turns back off: revoking
   * every key or deleting every tenant must not reopen the gateway.
   */
  keysRequired(): Promise<boolean>;

  /**
   * Checks the request against its tenant's limits and, when it fits, takes
   * its reservation and writes its ledger row ('running'), atomically.
   * Requests of the anonymous tenant are only recorded. Refused with
   * "instance_gone" when `instanceId` is not registered (it was reaped):
   * every running row belongs to a registered instance, so reaping an
   * instance finds all of its rows.
   */
  admit(input: AdmitInput): Promise<AdmitOutcome>;
  /**
   * Records the outcome on the request's row and releases its reservation,
   * once: true when this call did it, false when the row was already settled.
   * A row crash recovery marked 'interrupted' takes the outcome too (its
   * reservation was already released). Only the tenant with the uid the row
   * was admitted under is released or charged.
   */
  settle(input: SettleInput): Promise<boolean>;

  /** Registers a gateway instance, or renews it if it is still there. */
  registerInstance(instance: InstanceRecord): Promise<void>;
  /** False when the instance is no longer registered (another process reaped it). */
  heartbeat(id: string, at: number): Promise<boolean>;
  listInstances(): Promise<InstanceRecord[]>;
  /**
   * Reaps an instance whose heartbeat is older than `staleBefore`: one
   * conditional delete decides, so of several reapers only one acts, and an
   * instance that heartbeats meanwhile is left alone. The reaper that removed
   * it marks its running rows 'interrupted' and releases their reservations
   * in the same transaction. Returns the rows marked, or undefined when the
   * instance was not reaped by this call.
   */
  reapInstance(id: string, staleBefore: number, at: number): Promise<number | undefined>;
  /** A clean stop: unregisters the instance and marks whatever it still has running 'interrupted'. Returns the rows marked. */
  deregisterInstance(id: string, at: number): Promise<number>;

  /**
   * A named lease for a singleton job: taken when free, expired, or already
   * this holder's (which extends it), for `ttlMs`. One conditional statement,
   * so of several contenders exactly one gets it. Expiry is on the database's
   * clock where it keeps one (Postgres), else on `now` (default: this host's).
   */
  tryAcquireLease(name: string, holder: string, ttlMs: number, now?: number): Promise<boolean>;
  /** Extends a lease this holder still holds; false once it expired or another took it (acquire again). */
  renewLease(name: string, holder: string, ttlMs: number, now?: number): Promise<boolean>;
  /** Gives the lease up; false when this holder did not hold it. */
  releaseLease(name: string, holder: string): Promise<boolean>;

  /**
   * The database's own clock (epoch ms) where the backend keeps time for
   * several hosts (Postgres), so heartbeats and buckets do not depend on the
   * hosts' clocks agreeing; undefined where the caller's clock is used.
   */
  databaseNow(): Promise<number | undefined>;

  /** Runs a plan (store/batches.ts) in one transaction. */
  transact<T>(plan: Plan<T>): Promise<T>;

  usage(query: UsageQuery): Promise<UsageRow[]>;
  ledger(filter?: LedgerFilter): Promise<LedgerRow[]>;
  /**
   * A channel every process sharing the store hears (Postgres LISTEN /
   * NOTIFY); absent where the store has none (SQLite). Messages are at most
   * BROADCAST_MAX_BYTES, fire and forget: one a process misses while its
   * listening connection reconnects is gone.
   */
  broadcast?(channel: string, onMessage: (payload: string) => void): Promise<Broadcast>;
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
  {
    // Tenant identity, keys staying required, and leases.
    version: 2,
    statements: [
      // A tenant's immutable identity: a name deleted and created again is another tenant. Rows from
      // before get a uid derived from their name, which a generated one (a UUID) can never equal.
      `ALTER TABLE tenants ADD COLUMN uid TEXT NOT NULL DEFAULT ''`,
      `UPDATE tenants SET uid = 'v1-' || id`,
      `CREATE UNIQUE INDEX tenants_uid ON tenants (uid)`,
      `ALTER TABLE api_keys ADD COLUMN tenant_uid TEXT NOT NULL DEFAULT ''`,
      `UPDATE api_keys SET tenant_uid = COALESCE((SELECT uid FROM tenants WHERE tenants.id = api_keys.tenant_id), '')`,
      // Only running rows are ever released; settled ones keep NULL (admitted before uids existed).
      `ALTER TABLE requests ADD COLUMN tenant_uid TEXT`,
      `UPDATE requests SET tenant_uid = (SELECT uid FROM tenants WHERE tenants.id = requests.tenant_id) WHERE status = 'running'`,
      `CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
      // The promise "once any key exists keys are always required" holds for keys created before this flag.
      `INSERT INTO settings (name, value) SELECT 'require_keys', 'true' WHERE EXISTS (SELECT 1 FROM api_keys)`,
      `CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)`,
      // 1: some token count on the row is an estimate (an upstream that did not count per chunk; no tokenizer).
      `ALTER TABLE requests ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0`,
    ],
  },
  {
    // What the twin needs of each request (types.ts ReplicaSetup, GenerationTiming); null on older rows.
    version: 3,
    statements: [
      `ALTER TABLE requests ADD COLUMN spec TEXT`,
      `ALTER TABLE requests ADD COLUMN precision TEXT`,
      `ALTER TABLE requests ADD COLUMN tp INTEGER`,
      `ALTER TABLE requests ADD COLUMN batch_start INTEGER`,
      `ALTER TABLE requests ADD COLUMN batch_mean DOUBLE PRECISION`,
      `ALTER TABLE requests ADD COLUMN ttft_ms DOUBLE PRECISION`,
      `ALTER TABLE requests ADD COLUMN tpot_ms DOUBLE PRECISION`,
    ],
  },
  {
    // The Batch API (types.ts FileRecord, BatchRecord; store/batches.ts).
    version: 4,
    statements: [
      `CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        bytes BIGINT NOT NULL DEFAULT 0,
        lines INTEGER NOT NULL DEFAULT 0,
        endpoint TEXT,
        batch_id TEXT,
        created_at BIGINT NOT NULL
      )`,
      `CREATE INDEX files_owner ON files (owner, created_at)`,
      // An upload's content, in pieces of whole lines.
      `CREATE TABLE file_chunks (file_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (file_id, seq))`,
      `CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        key_id TEXT,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        metadata TEXT,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        in_progress_at BIGINT,
        finalizing_at BIGINT,
        completed_at BIGINT,
        expired_at BIGINT,
        cancelling_at BIGINT,
        cancelled_at BIGINT,
        output_file_id TEXT,
        error_file_id TEXT
      )`,
      `CREATE INDEX batches_owner ON batches (owner, created_at)`,
      `CREATE INDEX batches_status ON batches (status, created_at)`,
      `CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        result_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (batch_id, line)
      )`,
      // A batch's lines in one state, in order: what a claim takes and a count groups.
      `CREATE INDEX batch_lines_state ON batch_lines (batch_id, state, line)`,
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
