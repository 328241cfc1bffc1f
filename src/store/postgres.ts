/**
 * The shared backend: Postgres, for several gateway or controller processes
 * on one ledger. Each limit decision is one transaction that locks the
 * tenant's row (SELECT ... FOR UPDATE), decides with the same pure code as
 * SQLite, writes the new state and the ledger row, and commits: processes
 * queue on the row lock, so limits hold exactly across all of them.
 * Migrations run under an advisory lock, so processes starting together
 * apply each one once.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
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
  numbered,
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
import { CommitGroup, commitTogetherAsync } from "./commit-group.js";
import { PostgresListener } from "./postgres-listen.js";
import { MIGRATIONS, redactUrl, type Broadcast, type Store } from "./store.js";
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

type Row = Record<string, unknown>;
type Queryable = Pick<pg.PoolClient, "query">;
/** An admission or a settlement, to run inside its group's transaction. */
type LedgerWrite = { readonly admit: AdmitInput } | { readonly settle: SettleInput };

/** Any fixed number: the advisory lock migrations hold. */
const MIGRATION_LOCK = 7_301_947;
const INT8_OID = 20;
/** The database's wall clock, epoch ms. */
const DB_NOW = "floor(extract(epoch from clock_timestamp()) * 1000)::float8";
const INSERT_REQUEST = insertRequestSql("postgres");
const INSTANCE_REGISTERED = instanceRegisteredSql("postgres");
/** A lease's `now` parameter is null on the database's clock. */
const LEASE = leaseSql(`COALESCE(CAST(? AS float8), ${DB_NOW})`);

/** BIGINT columns hold nano-dollars and epoch milliseconds, both well inside a double's exact range. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? "text")) as pg.CustomTypesConfig["getTypeParser"],
};

export interface PostgresStoreOptions {
  /** Connections this process holds at most (default 10). */
  readonly poolSize?: number;
  /**
   * Token buckets and heartbeats run on the database's clock (default), so
   * gateway hosts need not agree on the time; false uses the caller's `now`
   * (tests that drive time).
   */
  readonly databaseClock?: boolean;
  readonly onError?: (err: Error) => void;
  /** How long a group of ledger writes stays open, ms (0: one event-loop turn; see commit-group.ts). */
  readonly commitWindowMs?: number;
}

export class PostgresStore implements Store {
  readonly kind = "postgres";
  readonly where: string;
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #onError: (err: Error) => void;
  readonly #databaseClock: boolean;
  /** Admissions and settlements commit in groups, one transaction each (see #commitGroup). */
  readonly #group: CommitGroup<LedgerWrite>;

  private constructor(url: string, pool: pg.Pool, opts: PostgresStoreOptions) {
    this.where = redactUrl(url);
    this.#pool = pool;
    this.#url = url;
    this.#onError = opts.onError ?? ((e: Error) => process.stderr.write(`flotilla: postgres: ${e.message}\n`));
    this.#databaseClock = opts.databaseClock ?? true;
    this.#group = new CommitGroup({
      commit: (writes) => commitTogetherAsync<LedgerWrite, Queryable>(writes, (work) => this.#tx(async (c) => this.#lockGroup(c, writes).then(() => work(c))), (w, c) => this.#apply(w, c)),
      ...(opts.commitWindowMs === undefined ? {} : { windowMs: opts.commitWindowMs }),
    });
  }

  /** Connects and brings the schema up to date. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10, types, connectionTimeoutMillis: 10_000 });
    // An idle connection that breaks (a server restart) must not take the process down.
    pool.on("error", (err) => (opts.onError ?? ((e: Error) => process.stderr.write(`flotilla: postgres: ${e.message}\n`)))(err));
    const store = new PostgresStore(url, pool, opts);
    try {
      await store.#migrate();
    } catch (err) {
      await pool.end().catch(() => {});
      throw new Error(`cannot open the Postgres store at ${store.where}: ${(err as Error).message}`, { cause: err });
    }
    return store;
  }

  async #migrate(): Promise<void> {
    await this.#tx(async (c) => {
      await c.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await c.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
      const done = new Set((await c.query("SELECT version FROM schema_migrations")).rows.map((r: Row) => Number(r.version)));
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const s of m.statements) await c.query(s);
        await c.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [m.version, Date.now()]);
      }
    });
  }

  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await c.query("BEGIN");
      const result = await fn(c);
      await c.query("COMMIT");
      return result;
    } catch (err) {
      await c.query("ROLLBACK").catch((e: Error) => {
        broken = e;
      });
      throw err;
    } finally {
      c.release(broken);
    }
  }

  async #rows(q: Queryable, sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await q.query(numbered(sql), params)).rows as Row[];
  }

  async #count(q: Queryable, sql: string, params: unknown[] = []): Promise<number> {
    return (await q.query(numbered(sql), params)).rowCount ?? 0;
  }

  async createTenant(t: NewTenant): Promise<Tenant> {
    const tenant = { ...t, uid: randomUUID() };
    await this.#count(this.#pool, INSERT_TENANT, insertTenantParams(tenant));
    return tenant;
  }

  async listTenants(): Promise<TenantWithState[]> {
    return (await this.#rows(this.#pool, "SELECT * FROM tenants ORDER BY id")).map(tenantWithStateFrom);
  }

  async getTenant(id: string): Promise<TenantWithState | undefined> {
    const [r] = await this.#rows(this.#pool, "SELECT * FROM tenants WHERE id = ?", [id]);
    return r === undefined ? undefined : tenantWithStateFrom(r);
  }

  async deleteTenant(id: string): Promise<boolean> {
    return (await this.#count(this.#pool, "DELETE FROM tenants WHERE id = ?", [id])) > 0;
  }

  async createKey(k: NewApiKey): Promise<ApiKeyRecord | undefined> {
    return this.#tx(async (c) => {
      const [t] = await this.#rows(c, "SELECT uid FROM tenants WHERE id = ? FOR KEY SHARE", [k.tenantId]);
      if (t === undefined) return undefined;
      await this.#count(c, INSERT_KEY, insertKeyParams(k, t.uid));
      await this.#count(c, SET_KEYS_REQUIRED);
      return keyRecordOf(k);
    });
  }

  async listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const rows =
      tenantId === undefined
        ? await this.#rows(this.#pool, "SELECT * FROM api_keys ORDER BY created_at, id")
        : await this.#rows(this.#pool, "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", [tenantId]);
    return rows.map(keyFrom);
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    return (await this.#count(this.#pool, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id])) > 0;
  }

  async findKey(hash: string): Promise<{ key: ApiKeyRecord; tenant: Tenant } | undefined> {
    const [r] = await this.#rows(this.#pool, FIND_KEY, [hash]);
    return r === undefined ? undefined : foundKeyFrom(r);
  }

  async keysRequired(): Promise<boolean> {
    const [r] = await this.#rows(this.#pool, GET_KEYS_REQUIRED);
    return r?.value === "true";
  }

  admit(a: AdmitInput): Promise<AdmitOutcome> {
    return this.#group.run({ admit: a });
  }

  settle(s: SettleInput): Promise<boolean> {
    return this.#group.run({ settle: s });
  }

  /**
   * Locks in the order every transaction here takes them: the instance's
   * row, then request rows, then tenants' rows (reaping deletes the
   * instance first), so none waits for another in a cycle. A group takes
   * the request rows it settles and then every tenant row it touches, each
   * in id order, before its first write: two groups (of this process or
   * another) never hold tenants in opposite orders.
   */
  async #lockGroup(c: Queryable, writes: readonly LedgerWrite[]): Promise<void> {
    const settled = writes.flatMap((w) => ("settle" in w ? [w.settle.id] : []));
    const tenants = new Set(writes.flatMap((w) => ("admit" in w && w.admit.tenantId !== ANONYMOUS_TENANT ? [w.admit.tenantId] : [])));
    if (settled.length > 0) {
      const claims = await this.#rows(c, "SELECT tenant_id FROM requests WHERE id = ANY(?) ORDER BY id FOR UPDATE", [settled]);
      for (const r of claims) if (r.tenant_id !== ANONYMOUS_TENANT) tenants.add(String(r.tenant_id));
    }
    if (tenants.size > 1) await this.#rows(c, "SELECT id FROM tenants WHERE id = ANY(?) ORDER BY id FOR UPDATE", [[...tenants]]);
  }

  #apply(w: LedgerWrite, c: Queryable): Promise<AdmitOutcome | boolean> {
    return "admit" in w ? this.#admitNow(w.admit, c) : this.#settleNow(w.settle, c);
  }

  async #admitNow(a: AdmitInput, c: Queryable): Promise<AdmitOutcome> {
    if (a.tenantId === ANONYMOUS_TENANT) {
      return (await this.#count(c, INSERT_REQUEST, insertRequestParams(a, null))) > 0 ? { ok: true } : { ok: false, reason: "instance_gone" };
    }
    if ((await this.#rows(c, INSTANCE_REGISTERED, [a.instanceId])).length === 0) return { ok: false, reason: "instance_gone" };
    const [row] = await this.#rows(c, `SELECT *, ${DB_NOW} AS db_now FROM tenants WHERE id = ? FOR UPDATE`, [a.tenantId]);
    const d = admitOnRow(a, row, (r) => this.#now(r, a.now));
    if (d.refused !== undefined) return d.refused;
    await this.#count(c, UPDATE_TENANT_STATE, [...stateValues(d.state), a.tenantId]);
    await this.#count(c, INSERT_REQUEST, insertRequestParams(a, d.tenant.uid));
    return { ok: true };
  }

  async #settleNow(given: SettleInput, c: Queryable): Promise<boolean> {
    const [row] = await this.#rows(c, `${REQUEST_CLAIM} FOR UPDATE`, [given.id]);
    if (!settleable(row)) return false;
    const s = given.batchLine === undefined || (await this.#drive(finishLine(given.batchLine), c)) ? given : supersededSettlement(given);
    await this.#count(c, SETTLE_REQUEST, settleParams(s));
    await this.#releaseTenant(c, row, releaseOf(row, s), s.now);
    return true;
  }

  /** Releases the claim of a row on the tenant it was admitted under, if that tenant still exists. */
  async #releaseTenant(c: Queryable, claim: Row, r: Release, now: number): Promise<void> {
    if (!claimsTenant(claim)) return;
    const [t] = await this.#rows(c, `SELECT *, ${DB_NOW} AS db_now FROM tenants WHERE ${TENANT_OF_ROW} FOR UPDATE`, [claim.tenant_id, claim.tenant_uid]);
    if (t === undefined) return; // deleted meanwhile, perhaps created again: another tenant
    const next = release(tenantFrom(t), stateFrom(t), r, this.#now(t, now));
    await this.#count(c, UPDATE_TENANT_STATE, [...stateValues(next), claim.tenant_id]);
  }

  async registerInstance(i: InstanceRecord): Promise<void> {
    await this.#count(this.#pool, REGISTER_INSTANCE, [i.id, i.host, i.pid, i.startedAt, i.heartbeatAt]);
  }

  async heartbeat(id: string, at: number): Promise<boolean> {
    return (await this.#count(this.#pool, "UPDATE instances SET heartbeat_at = ? WHERE id = ?", [at, id])) > 0;
  }

  async listInstances(): Promise<InstanceRecord[]> {
    return (await this.#rows(this.#pool, "SELECT * FROM instances ORDER BY started_at")).map(instanceFrom);
  }

  async reapInstance(id: string, staleBefore: number, at: number): Promise<number | undefined> {
    return this.#tx(async (c) => ((await this.#count(c, DELETE_STALE_INSTANCE, [id, staleBefore])) > 0 ? this.#interruptRunning(c, id, at) : undefined));
  }

  async deregisterInstance(id: string, at: number): Promise<number> {
    return this.#tx(async (c) => {
      await this.#count(c, "DELETE FROM instances WHERE id = ?", [id]);
      return this.#interruptRunning(c, id, at);
    });
  }

  /**
   * Marks the instance's running rows 'interrupted' and releases them, inside
   * the caller's transaction, which has deleted the instance: admissions that
   * held it registered have committed, so their rows are seen here.
   */
  async #interruptRunning(c: Queryable, instanceId: string, at: number): Promise<number> {
    let n = 0;
    for (const r of await this.#rows(c, `${RUNNING_OF_INSTANCE} FOR UPDATE`, [instanceId])) {
      if ((await this.#count(c, INTERRUPT_REQUEST, [at, r.id])) === 0) continue;
      await this.#releaseTenant(c, r, releaseOf(r), at);
      n++;
    }
    return n;
  }

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
    return (await this.#count(this.#pool, LEASE.acquire, leaseParams("acquire", name, holder, ttlMs, this.#databaseClock ? null : now))) > 0;
  }

  async renewLease(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
    return (await this.#count(this.#pool, LEASE.renew, leaseParams("renew", name, holder, ttlMs, this.#databaseClock ? null : now))) > 0;
  }

  async releaseLease(name: string, holder: string): Promise<boolean> {
    return (await this.#count(this.#pool, RELEASE_LEASE, [name, holder])) > 0;
  }

  /** The database's time, read under the row lock, unless the caller's clock was asked for. */
  #now(row: Row, callers: number): number {
    return this.#databaseClock ? Number(row.db_now) : callers;
  }

  async databaseNow(): Promise<number | undefined> {
    if (!this.#databaseClock) return undefined;
    const [r] = await this.#rows(this.#pool, `SELECT ${DB_NOW} AS now`);
    return Number(r!.now);
  }

  transact<T>(plan: Plan<T>): Promise<T> {
    return this.#tx((c) => this.#drive(plan, c));
  }

  /** Runs a plan's statements in order on `c` (inside the caller's transaction). */
  async #drive<T>(plan: Plan<T>, c: Queryable): Promise<T> {
    let step = plan.next();
    while (step.done !== true) {
      const r = await c.query(numbered(step.value.sql), [...step.value.params]);
      step = plan.next({ rows: r.rows as Row[], changes: r.rowCount ?? 0 });
    }
    return step.value;
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const { sql, params } = usageSql(q, "postgres");
    return (await this.#rows(this.#pool, sql, params)).map((r) => usageFrom(r, q.groupBy));
  }

  async ledger(f: LedgerFilter = {}): Promise<LedgerRow[]> {
    const { sql, params } = ledgerSql(f);
    return (await this.#rows(this.#pool, sql, params)).map(ledgerFrom);
  }

  async broadcast(channel: string, onMessage: (payload: string) => void): Promise<Broadcast> {
    const listener = await PostgresListener.open(this.#url, channel, onMessage, this.#onError);
    return {
      publish: async (payload) => void (await this.#pool.query("SELECT pg_notify($1, $2)", [channel, payload])),
      close: () => listener.close(),
    };
  }

  async close(): Promise<void> {
    await this.#group.flush();
    await this.#pool.end();
  }
}
