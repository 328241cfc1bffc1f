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
import { randomUUID } from "node:crypto";
import { release, type Release } from "./limits.js";
import {
  DELETE_STALE_INSTANCE,
  FIND_KEY,
  GET_KEYS_REQUIRED,
  INSERT_KEY,
  INSERT_TENANT,
  INTERRUPT_REQUEST,
  REGISTER_INSTANCE,
  RELEASE_LEASE,
  REQUEST_CLAIM,
  RUNNING_OF_INSTANCE,
  SETTLE_REQUEST,
  SET_KEYS_REQUIRED,
  TENANT_OF_ROW,
  UPDATE_TENANT_STATE,
  admitOnRow,
  claimsTenant,
  foundKeyFrom,
  insertKeyParams,
  insertRequestParams,
  insertRequestSql,
  insertTenantParams,
  instanceFrom,
  instanceRegisteredSql,
  keyFrom,
  keyRecordOf,
  leaseParams,
  leaseSql,
  ledgerFrom,
  ledgerSql,
  releaseOf,
  settleParams,
  settleable,
  stateFrom,
  stateValues,
  supersededSettlement,
  tenantFrom,
  tenantWithStateFrom,
  usageFrom,
  usageSql,
} from "./sql.js";
import { CommitGroup, commitTogether } from "./commit-group.js";
import { MIGRATIONS, type Store } from "./store.js";
import { finishLine, type Plan } from "./batches.js";
import type {
  AdmitInput,
  AdmitOutcome,
  ApiKeyRecord,
  InstanceRecord,
  LedgerFilter,
  LedgerRow,
  NewApiKey,
  NewTenant,
  SettleInput,
  Tenant,
  TenantWithState,
  UsageQuery,
  UsageRow,
} from "./types.js";
import { ANONYMOUS_TENANT } from "./types.js";

const INSERT_REQUEST = insertRequestSql("sqlite");
const INSTANCE_REGISTERED = instanceRegisteredSql("sqlite");
const LEASE = leaseSql("?");

type Row = Record<string, unknown>;

export class SqliteStore implements Store {
  readonly kind = "sqlite";
  readonly where: string;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  /** Runs its argument in a transaction (or, called inside one, a savepoint): made once, since making one per call costs. */
  readonly #transaction: Database.Transaction<(work: () => unknown) => unknown>;
  /** Admissions and settlements commit in groups (commit-group.ts); each write runs inside its group's transaction. */
  readonly #group: CommitGroup<() => unknown>;

  /** Opens (creating when needed) the database file and brings its schema up to date. */
  constructor(path: string, opts: { readonly commitWindowMs?: number } = {}) {
    this.where = path;
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    this.#db.pragma("busy_timeout = 10000");
    this.#db.pragma("foreign_keys = ON");
    this.#migrate();
    this.#transaction = this.#db.transaction((work: () => unknown) => work());
    this.#group = new CommitGroup({
      commit: (writes) => commitTogether(writes, (work) => this.#tx(work), (write) => write()),
      ...(opts.commitWindowMs === undefined ? {} : { windowMs: opts.commitWindowMs }),
    });
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
    return this.#transaction.immediate(fn) as T;
  }

  async createTenant(t: NewTenant): Promise<Tenant> {
    const tenant = { ...t, uid: randomUUID() };
    this.#run(INSERT_TENANT, ...insertTenantParams(tenant));
    return tenant;
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

  async createKey(k: NewApiKey): Promise<ApiKeyRecord | undefined> {
    return this.#tx(() => {
      const t = this.#get("SELECT uid FROM tenants WHERE id = ?", k.tenantId);
      if (t === undefined) return undefined;
      this.#run(INSERT_KEY, ...insertKeyParams(k, t.uid));
      this.#run(SET_KEYS_REQUIRED);
      return keyRecordOf(k);
    });
  }

  async listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const rows = tenantId === undefined ? this.#all("SELECT * FROM api_keys ORDER BY created_at, id") : this.#all("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", tenantId);
    return rows.map(keyFrom);
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    return this.#run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", at, id) > 0;
  }

  async findKey(hash: string): Promise<{ key: ApiKeyRecord; tenant: Tenant } | undefined> {
    const r = this.#get(FIND_KEY, hash);
    return r === undefined ? undefined : foundKeyFrom(r);
  }

  async keysRequired(): Promise<boolean> {
    return this.#get(GET_KEYS_REQUIRED)?.value === "true";
  }

  admit(a: AdmitInput): Promise<AdmitOutcome> {
    return this.#group.run(() => this.#admitNow(a));
  }

  /** Inside its group's transaction, like #settleNow. */
  #admitNow(a: AdmitInput): AdmitOutcome {
    if (a.tenantId === ANONYMOUS_TENANT) {
      return this.#run(INSERT_REQUEST, ...insertRequestParams(a, null)) > 0 ? { ok: true } : { ok: false, reason: "instance_gone" };
    }
    if (this.#get(INSTANCE_REGISTERED, a.instanceId) === undefined) return { ok: false, reason: "instance_gone" };
    const row = this.#get("SELECT * FROM tenants WHERE id = ?", a.tenantId);
    const d = admitOnRow(a, row, () => a.now);
    if (d.refused !== undefined) return d.refused;
    this.#run(UPDATE_TENANT_STATE, ...stateValues(d.state), a.tenantId);
    this.#run(INSERT_REQUEST, ...insertRequestParams(a, d.tenant.uid));
    return { ok: true };
  }

  settle(s: SettleInput): Promise<boolean> {
    return this.#group.run(() => this.#settleNow(s));
  }

  #settleNow(given: SettleInput): boolean {
    const row = this.#get(REQUEST_CLAIM, given.id);
    if (!settleable(row)) return false;
    const s = given.batchLine === undefined || this.#drive(finishLine(given.batchLine)) ? given : supersededSettlement(given);
    this.#run(SETTLE_REQUEST, ...settleParams(s));
    this.#releaseTenant(row, releaseOf(row, s), s.now);
    return true;
  }

  /** Releases the claim of a row on the tenant it was admitted under, if that tenant still exists. */
  #releaseTenant(claim: Row, r: Release, now: number): void {
    if (!claimsTenant(claim)) return;
    const t = this.#get(`SELECT * FROM tenants WHERE ${TENANT_OF_ROW}`, claim.tenant_id, claim.tenant_uid);
    if (t === undefined) return; // deleted meanwhile, perhaps created again: another tenant
    const next = release(tenantFrom(t), stateFrom(t), r, now);
    this.#run(UPDATE_TENANT_STATE, ...stateValues(next), claim.tenant_id);
  }

  async registerInstance(i: InstanceRecord): Promise<void> {
    this.#run(REGISTER_INSTANCE, i.id, i.host, i.pid, i.startedAt, i.heartbeatAt);
  }

  async heartbeat(id: string, at: number): Promise<boolean> {
    return this.#run("UPDATE instances SET heartbeat_at = ? WHERE id = ?", at, id) > 0;
  }

  async listInstances(): Promise<InstanceRecord[]> {
    return this.#all("SELECT * FROM instances ORDER BY started_at").map(instanceFrom);
  }

  async reapInstance(id: string, staleBefore: number, at: number): Promise<number | undefined> {
    return this.#tx(() => (this.#run(DELETE_STALE_INSTANCE, id, staleBefore) > 0 ? this.#interruptRunning(id, at) : undefined));
  }

  async deregisterInstance(id: string, at: number): Promise<number> {
    return this.#tx(() => {
      this.#run("DELETE FROM instances WHERE id = ?", id);
      return this.#interruptRunning(id, at);
    });
  }

  /** Marks the instance's running rows 'interrupted' and releases them; inside the caller's transaction. */
  #interruptRunning(instanceId: string, at: number): number {
    let n = 0;
    for (const r of this.#all(RUNNING_OF_INSTANCE, instanceId)) {
      if (this.#run(INTERRUPT_REQUEST, at, r.id) === 0) continue;
      this.#releaseTenant(r, releaseOf(r), at);
      n++;
    }
    return n;
  }

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
    return this.#run(LEASE.acquire, ...leaseParams("acquire", name, holder, ttlMs, now)) > 0;
  }

  async renewLease(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
    return this.#run(LEASE.renew, ...leaseParams("renew", name, holder, ttlMs, now)) > 0;
  }

  async releaseLease(name: string, holder: string): Promise<boolean> {
    return this.#run(RELEASE_LEASE, name, holder) > 0;
  }

  async databaseNow(): Promise<number | undefined> {
    return undefined;
  }

  async transact<T>(plan: Plan<T>): Promise<T> {
    return this.#tx(() => this.#drive(plan));
  }

  /** Runs a plan's statements in order, inside the caller's transaction. */
  #drive<T>(plan: Plan<T>): T {
    let step = plan.next();
    while (step.done !== true) {
      const st = this.#prepare(step.value.sql);
      step = plan.next(st.reader ? { rows: st.all(...step.value.params) as Row[], changes: 0 } : { rows: [], changes: st.run(...step.value.params).changes });
    }
    return step.value;
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
    if (!this.#db.open) return;
    void this.#group.flush(); // synchronous here: committed when it returns
    this.#db.close();
  }
}
