/**
 * The embedded backend: one SQLite file in WAL mode (readers never block
 * the writer; several processes on one host may share the file). Every
 * change is a BEGIN IMMEDIATE transaction, which takes SQLite's single write
 * lock up front, so a read-decide-write on a tenant's row is atomic across
 * processes too. synchronous=NORMAL: a commit survives the process being
 * killed (the WAL is in the OS's cache); only a power cut can lose the last
 * few commits.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { decide, periodOf, release } from "./limits.js";
import {
  INSERT_REQUEST,
  INTERRUPT_REQUEST,
  SETTLE_REQUEST,
  STATE_SET,
  instanceFrom,
  keyFrom,
  ledgerFrom,
  ledgerSql,
  runningOfDeadSql,
  stateFrom,
  stateValues,
  tenantFrom,
  tenantWithStateFrom,
  usageFrom,
  usageSql,
} from "./sql.js";
import { MIGRATIONS, type Store } from "./store.js";
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
import { ANONYMOUS_TENANT } from "./types.js";

type Row = Record<string, unknown>;

export class SqliteStore implements Store {
  readonly kind = "sqlite";
  readonly where: string;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  /** Opens (creating when needed) the database file and brings its schema up to date. */
  constructor(path: string) {
    this.where = path;
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    this.#db.pragma("busy_timeout = 10000");
    this.#db.pragma("foreign_keys = ON");
    this.#migrate();
  }

  #migrate(): void {
    const db = this.#db;
    db.transaction(() => {
      db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
      const done = new Set((db.prepare("SELECT version FROM schema_migrations").all() as Row[]).map((r) => Number(r.version)));
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const s of m.statements) db.exec(s);
        db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(m.version, Date.now());
      }
    }).immediate();
  }

  /** Prepared once per distinct statement. */
  #prepare(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      if (this.#statements.size >= 256) this.#statements.clear();
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  #all(sql: string, ...params: unknown[]): Row[] {
    return this.#prepare(sql).all(...params) as Row[];
  }

  #get(sql: string, ...params: unknown[]): Row | undefined {
    return this.#prepare(sql).get(...params) as Row | undefined;
  }

  #run(sql: string, ...params: unknown[]): number {
    return this.#prepare(sql).run(...params).changes;
  }

  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  async createTenant(t: NewTenant): Promise<Tenant> {
    this.#run(
      `INSERT INTO tenants (id, weight, priority, requests_per_minute, tokens_per_minute, max_concurrent, monthly_budget_nusd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      t.id, t.weight, t.priority, t.requestsPerMinute, t.tokensPerMinute, t.maxConcurrent, t.monthlyBudgetNusd, t.createdAt,
    );
    return t;
  }

  async listTenants(): Promise<TenantWithState[]> {
    return this.#all("SELECT * FROM tenants ORDER BY id").map(tenantWithStateFrom);
  }

  async getTenant(id: string): Promise<TenantWithState | undefined> {
    const r = this.#get("SELECT * FROM tenants WHERE id = ?", id);
    return r === undefined ? undefined : tenantWithStateFrom(r);
  }

  async deleteTenant(id: string): Promise<boolean> {
    return this.#run("DELETE FROM tenants WHERE id = ?", id) > 0;
  }

  async createKey(k: ApiKeyRecord & { readonly hash: string }): Promise<ApiKeyRecord> {
    this.#run("INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)", k.id, k.tenantId, k.name, k.hash, k.prefix, k.createdAt, k.revokedAt);
    return { id: k.id, tenantId: k.tenantId, name: k.name, prefix: k.prefix, createdAt: k.createdAt, revokedAt: k.revokedAt };
  }

  async listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const rows = tenantId === undefined ? this.#all("SELECT * FROM api_keys ORDER BY created_at, id") : this.#all("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", tenantId);
    return rows.map(keyFrom);
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    return this.#run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", at, id) > 0;
  }

  async findKey(hash: string): Promise<{ key: ApiKeyRecord; tenant: Tenant } | undefined> {
    const r = this.#get(
      `SELECT k.id AS key_id, k.tenant_id, k.name AS key_name, k.prefix, k.created_at AS key_created_at, k.revoked_at, t.*
       FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = ?`,
      hash,
    );
    if (r === undefined) return undefined;
    return {
      key: keyFrom({ id: r.key_id, tenant_id: r.tenant_id, name: r.key_name, prefix: r.prefix, created_at: r.key_created_at, revoked_at: r.revoked_at }),
      tenant: tenantFrom(r),
    };
  }

  async hasActiveKeys(): Promise<boolean> {
    return this.#get("SELECT 1 AS one FROM api_keys WHERE revoked_at IS NULL LIMIT 1") !== undefined;
  }

  async admit(a: AdmitInput): Promise<AdmitOutcome> {
    const insert = (): void => {
      this.#run(INSERT_REQUEST, a.id, a.requestId, a.tenantId, a.keyId, a.model, a.endpoint, a.stream ? 1 : 0, a.reservedNusd, a.reservedTokens, periodOf(a.now), a.instanceId, a.now);
    };
    if (a.tenantId === ANONYMOUS_TENANT) {
      insert();
      return { ok: true };
    }
    return this.#tx((): AdmitOutcome => {
      const row = this.#get("SELECT * FROM tenants WHERE id = ?", a.tenantId);
      if (row === undefined) return { ok: false, reason: "unknown_tenant" };
      const tenant = tenantFrom(row);
      if (tenant.monthlyBudgetNusd !== null && !a.outputBounded) return { ok: false, reason: "max_tokens_required" };
      const d = decide(tenant, stateFrom(row), { tokens: a.reservedTokens, costNusd: a.reservedNusd }, a.now);
      if (!d.ok) return { ok: false, reason: "limit", limit: d.limit, resetAt: d.resetAt, state: { tenant, state: d.state } };
      this.#run(`UPDATE tenants SET ${STATE_SET} WHERE id = ?`, ...stateValues(d.state), a.tenantId);
      insert();
      return { ok: true };
    });
  }

  async settle(s: SettleInput): Promise<boolean> {
    return this.#tx(() => {
      const row = this.#get("SELECT status, tenant_id, reserved_nusd, reserved_tokens, period FROM requests WHERE id = ?", s.id);
      if (row === undefined || (row.status !== "running" && row.status !== "interrupted")) return false;
      this.#run(SETTLE_REQUEST, s.status, s.errorCode, s.replica, s.hardware, s.inputTokens, s.cachedTokens, s.outputTokens, s.deviceSeconds, s.energyJ, s.costNusd, s.attempts, s.continuations, s.now, s.id);
      this.#releaseTenant(String(row.tenant_id), {
        reservedTokens: Number(row.reserved_tokens),
        reservedNusd: Number(row.reserved_nusd),
        actualTokens: s.inputTokens + s.outputTokens,
        costNusd: s.costNusd,
        period: String(row.period),
        holdsReservation: row.status === "running",
      }, s.now);
      return true;
    });
  }

  #releaseTenant(tenantId: string, r: Parameters<typeof release>[2], now: number): void {
    if (tenantId === ANONYMOUS_TENANT) return;
    const t = this.#get("SELECT * FROM tenants WHERE id = ?", tenantId);
    if (t === undefined) return; // deleted meanwhile
    const next = release(tenantFrom(t), stateFrom(t), r, now);
    this.#run(`UPDATE tenants SET ${STATE_SET} WHERE id = ?`, ...stateValues(next), tenantId);
  }

  async registerInstance(i: InstanceRecord): Promise<void> {
    this.#run("INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)", i.id, i.host, i.pid, i.startedAt, i.heartbeatAt);
  }

  async heartbeat(id: string, at: number): Promise<boolean> {
    return this.#run("UPDATE instances SET heartbeat_at = ? WHERE id = ?", at, id) > 0;
  }

  async listInstances(): Promise<InstanceRecord[]> {
    return this.#all("SELECT * FROM instances ORDER BY started_at").map(instanceFrom);
  }

  async reap(deadIds: readonly string[], keep: readonly string[], at: number): Promise<number> {
    return this.#tx(() => {
      for (const id of deadIds) this.#run("DELETE FROM instances WHERE id = ?", id);
      const rows = this.#all(runningOfDeadSql(deadIds.length, keep.length), ...deadIds, ...keep);
      for (const r of rows) {
        this.#run(INTERRUPT_REQUEST, at, r.id);
        this.#releaseTenant(String(r.tenant_id), {
          reservedTokens: Number(r.reserved_tokens),
          reservedNusd: Number(r.reserved_nusd),
          actualTokens: 0,
          costNusd: 0,
          period: String(r.period),
          holdsReservation: true,
        }, at);
      }
      return rows.length;
    });
  }

  async deregisterInstance(id: string): Promise<void> {
    this.#run("DELETE FROM instances WHERE id = ?", id);
  }

  async databaseNow(): Promise<number | undefined> {
    return undefined;
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const { sql, params } = usageSql(q, "sqlite");
    return this.#all(sql, ...params).map((r) => usageFrom(r, q.groupBy));
  }

  async ledger(f: LedgerFilter = {}): Promise<LedgerRow[]> {
    const { sql, params } = ledgerSql(f);
    return this.#all(sql, ...params).map(ledgerFrom);
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
