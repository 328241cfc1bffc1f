/** SQL shared by the backends: row mapping and the usage query, per dialect. */
import { decide, periodOf, type Release } from "./limits.js";
import type {
  AdmitInput,
  AdmitOutcome,
  ApiKeyRecord,
  InstanceRecord,
  LedgerFilter,
  LedgerRow,
  GenerationTiming,
  LedgerStatus,
  NewApiKey,
  PriorityClass,
  ReplicaSetup,
  RequestUsage,
  SettleInput,
  Tenant,
  TenantState,
  TenantWithState,
  UsageGroup,
  UsageQuery,
  UsageRow,
} from "./types.js";
import { ANONYMOUS_TENANT } from "./types.js";

export type Dialect = "sqlite" | "postgres";

type Row = Record<string, unknown>;

/** Column values as the backends give them (Postgres BIGINT and COUNT arrive as numbers through the pool's type parser). */
export const num = (v: unknown): number => (typeof v === "number" ? v : Number(v));
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function tenantFrom(r: Row): Tenant {
  return {
    id: String(r.id),
    weight: num(r.weight),
    priority: String(r.priority) as PriorityClass,
    requestsPerMinute: numOrNull(r.requests_per_minute),
    tokensPerMinute: numOrNull(r.tokens_per_minute),
    maxConcurrent: numOrNull(r.max_concurrent),
    monthlyBudgetNusd: numOrNull(r.monthly_budget_nusd),
    createdAt: num(r.created_at),
    uid: String(r.uid),
  };
}

export function stateFrom(r: Row): TenantState {
  return {
    rpmTokens: numOrNull(r.rpm_tokens),
    rpmAt: numOrNull(r.rpm_at),
    tpmTokens: numOrNull(r.tpm_tokens),
    tpmAt: numOrNull(r.tpm_at),
    inFlight: num(r.in_flight),
    reservedNusd: num(r.reserved_nusd),
    period: String(r.period),
    spentNusd: num(r.spent_nusd),
  };
}

export function tenantWithStateFrom(r: Row): TenantWithState {
  return { tenant: tenantFrom(r), state: stateFrom(r) };
}

export const INSERT_TENANT = `INSERT INTO tenants (id, uid, weight, priority, requests_per_minute, tokens_per_minute, max_concurrent, monthly_budget_nusd, created_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export function insertTenantParams(t: Tenant): unknown[] {
  return [t.id, t.uid, t.weight, t.priority, t.requestsPerMinute, t.tokensPerMinute, t.maxConcurrent, t.monthlyBudgetNusd, t.createdAt];
}

/** The state columns in update order, with their values. */
export function stateValues(s: TenantState): unknown[] {
  return [s.rpmTokens, s.rpmAt, s.tpmTokens, s.tpmAt, s.inFlight, s.reservedNusd, s.period, s.spentNusd];
}
const STATE_SET = "rpm_tokens = ?, rpm_at = ?, tpm_tokens = ?, tpm_at = ?, in_flight = ?, reserved_nusd = ?, period = ?, spent_nusd = ?";
/** Writes a tenant's state: the parameters are stateValues(state), then the tenant's id. */
export const UPDATE_TENANT_STATE = `UPDATE tenants SET ${STATE_SET} WHERE id = ?`;

export function keyFrom(r: Row): ApiKeyRecord {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    name: String(r.name),
    prefix: String(r.prefix),
    createdAt: num(r.created_at),
    revokedAt: numOrNull(r.revoked_at),
  };
}

/** A key and its tenant as FIND_KEY reads them (the key's columns renamed where the tenant's share their names). */
export function foundKeyFrom(r: Row): { key: ApiKeyRecord; tenant: Tenant } {
  return {
    key: keyFrom({ id: r.key_id, tenant_id: r.tenant_id, name: r.key_name, prefix: r.prefix, created_at: r.key_created_at, revoked_at: r.revoked_at }),
    tenant: tenantFrom(r),
  };
}

export function instanceFrom(r: Row): InstanceRecord {
  return { id: String(r.id), host: String(r.host), pid: num(r.pid), startedAt: num(r.started_at), heartbeatAt: num(r.heartbeat_at) };
}

export function ledgerFrom(r: Row): LedgerRow {
  return {
    id: String(r.id),
    requestId: String(r.request_id),
    tenantId: String(r.tenant_id),
    tenantUid: strOrNull(r.tenant_uid),
    keyId: strOrNull(r.key_id),
    model: String(r.model),
    endpoint: String(r.endpoint),
    stream: num(r.stream) !== 0,
    status: String(r.status) as LedgerStatus,
    errorCode: strOrNull(r.error_code),
    estimated: num(r.estimated) !== 0,
    replica: strOrNull(r.replica),
    hardware: strOrNull(r.hardware),
    ...usageOf(r),
    reservedNusd: num(r.reserved_nusd),
    reservedTokens: num(r.reserved_tokens),
    attempts: num(r.attempts),
    continuations: num(r.continuations),
    period: String(r.period),
    instanceId: String(r.instance_id),
    startedAt: num(r.started_at),
    finishedAt: numOrNull(r.finished_at),
    setup: r.spec === null || r.spec === undefined ? null : { spec: String(r.spec), precision: String(r.precision), tp: num(r.tp) },
    timing: timingFrom(r),
  };
}

function timingFrom(r: Row): GenerationTiming | null {
  if (r.ttft_ms === null || r.ttft_ms === undefined) return null;
  return { batch: num(r.batch_start), batchMean: numOrNull(r.batch_mean), ttftMs: num(r.ttft_ms), tpotMs: numOrNull(r.tpot_ms) };
}

/** The usage columns of a ledger row, or their sums in a usage row. */
function usageOf(r: Row): RequestUsage {
  return {
    inputTokens: num(r.input_tokens),
    cachedTokens: num(r.cached_tokens),
    outputTokens: num(r.output_tokens),
    deviceSeconds: num(r.device_seconds),
    energyJ: num(r.energy_j),
    costNusd: num(r.cost_nusd),
  };
}

/**
 * Admission's decision on the tenant's row, read under its lock: refused
 * when there is no such tenant (or only one recreated under its name since
 * the key was found), when the tenant has a budget and the request no
 * max_tokens, or at a limit; else the tenant and its new state, which the
 * caller writes with the request's row. `now` reads the time off the row
 * (Postgres' clock) or gives the caller's.
 */
export function admitOnRow(
  a: AdmitInput,
  row: Row | undefined,
  now: (row: Row) => number,
): { readonly refused: Exclude<AdmitOutcome, { ok: true }> } | { readonly refused?: undefined; readonly tenant: Tenant; readonly state: TenantState } {
  if (row === undefined || (a.tenantUid !== undefined && row.uid !== a.tenantUid)) return { refused: { ok: false, reason: "unknown_tenant" } };
  const tenant = tenantFrom(row);
  if (tenant.monthlyBudgetNusd !== null && !a.outputBounded) return { refused: { ok: false, reason: "max_tokens_required" } };
  const d = decide(tenant, stateFrom(row), { tokens: a.reservedTokens, costNusd: a.reservedNusd }, now(row));
  if (!d.ok) return { refused: { ok: false, reason: "limit", limit: d.limit, resetAt: d.resetAt, state: { tenant, state: d.state } } };
  return { tenant, state: d.state };
}

/**
 * Inserts a 'running' row only while its instance is registered; on Postgres
 * it also holds the instance's row against a concurrent reaper's delete
 * until the transaction ends, so a reaper sees every row of the instance it
 * removes.
 */
export function insertRequestSql(d: Dialect): string {
  return `INSERT INTO requests
  (id, request_id, tenant_id, tenant_uid, key_id, model, endpoint, stream, status, reserved_nusd, reserved_tokens, period, instance_id, started_at)
  SELECT ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, id, ? FROM instances WHERE id = ?${d === "postgres" ? " FOR KEY SHARE" : ""}`;
}

export function insertRequestParams(a: AdmitInput, tenantUid: string | null): unknown[] {
  return [a.id, a.requestId, a.tenantId, tenantUid, a.keyId, a.model, a.endpoint, a.stream ? 1 : 0, a.reservedNusd, a.reservedTokens, periodOf(a.now), a.now, a.instanceId];
}

/** Whether an instance is registered; on Postgres, holding it registered (see insertRequestSql). */
export function instanceRegisteredSql(d: Dialect): string {
  return `SELECT 1 AS one FROM instances WHERE id = ?${d === "postgres" ? " FOR KEY SHARE" : ""}`;
}

export const SETTLE_REQUEST = `UPDATE requests SET status = ?, error_code = ?, replica = ?, hardware = ?, input_tokens = ?, cached_tokens = ?,
  output_tokens = ?, estimated = ?, device_seconds = ?, energy_j = ?, cost_nusd = ?, attempts = ?, continuations = ?, finished_at = ?,
  spec = ?, precision = ?, tp = ?, batch_start = ?, batch_mean = ?, ttft_ms = ?, tpot_ms = ? WHERE id = ?`;

export function settleParams(s: SettleInput): unknown[] {
  return [
    s.status, s.errorCode, s.replica, s.hardware, s.inputTokens, s.cachedTokens, s.outputTokens, s.estimated ? 1 : 0, s.deviceSeconds, s.energyJ, s.costNusd, s.attempts, s.continuations, s.now,
    ...setupValues(s.setup), ...timingValues(s.timing), s.id,
  ];
}

function setupValues(s: ReplicaSetup | undefined): unknown[] {
  return s === undefined ? [null, null, null] : [s.spec, s.precision, s.tp];
}

function timingValues(t: GenerationTiming | undefined): unknown[] {
  return t === undefined ? [null, null, null, null] : [t.batch, t.batchMean, t.ttftMs, t.tpotMs];
}

/**
 * What a settlement records when it carries a batch line's result that was
 * refused (the line is another attempt's now): the request ran, but its
 * result and its charge belong to the attempt that finished the line.
 */
export function supersededSettlement(s: SettleInput): SettleInput {
  return { ...s, status: "cancelled", errorCode: "batch_line_superseded", inputTokens: 0, cachedTokens: 0, outputTokens: 0, deviceSeconds: 0, energyJ: 0, costNusd: 0, estimated: false };
}

/** What settlement reads of the row it settles. */
export const REQUEST_CLAIM = "SELECT status, tenant_id, tenant_uid, reserved_nusd, reserved_tokens, period FROM requests WHERE id = ?";

/** A row is settled once: while running, or after crash recovery interrupted it (its reservation released, its outcome still unknown). */
export function settleable(claim: Row | undefined): claim is Row {
  return claim !== undefined && (claim.status === "running" || claim.status === "interrupted");
}

/** Whether a claimed row holds anything of a tenant's: not an anonymous request's, nor one admitted before tenants had uids. */
export function claimsTenant(claim: Row): boolean {
  return claim.tenant_id !== ANONYMOUS_TENANT && claim.tenant_uid !== null;
}

/** What a claimed row gives back: settled, what it used is charged; interrupted (no settlement), nothing is. */
export function releaseOf(claim: Row, settled?: SettleInput): Release {
  return {
    reservedTokens: num(claim.reserved_tokens),
    reservedNusd: num(claim.reserved_nusd),
    actualTokens: settled === undefined ? 0 : settled.inputTokens + settled.outputTokens,
    costNusd: settled?.costNusd ?? 0,
    period: String(claim.period),
    holdsReservation: claim.status === "running",
  };
}

/** The tenant a row's reservation belongs to: same name and same uid, so a tenant recreated under that name is never touched. */
export const TENANT_OF_ROW = "id = ? AND uid = ?";

/** A row is interrupted only while it is running, whoever else tries. */
export const INTERRUPT_REQUEST = `UPDATE requests SET status = 'interrupted', error_code = 'gateway_exited', finished_at = ? WHERE id = ? AND status = 'running'`;

/** Conditional on the heartbeat still being stale, so a live instance, or one another reaper already removed, is left alone. */
export const DELETE_STALE_INSTANCE = "DELETE FROM instances WHERE id = ? AND heartbeat_at < ?";

/** An instance's running rows, by tenant: tenants' rows are then locked in one order by every reaper. */
export const RUNNING_OF_INSTANCE = `SELECT id, status, tenant_id, tenant_uid, reserved_nusd, reserved_tokens, period FROM requests
  WHERE instance_id = ? AND status = 'running' ORDER BY tenant_id, id`;

export const REGISTER_INSTANCE = `INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`;

export const INSERT_KEY = "INSERT INTO api_keys (id, tenant_id, tenant_uid, name, key_hash, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

/** INSERT_KEY's parameters: the key bound to the uid of the tenant it is created for. */
export function insertKeyParams(k: NewApiKey, tenantUid: unknown): unknown[] {
  return [k.id, k.tenantId, tenantUid, k.name, k.hash, k.prefix, k.createdAt, k.revokedAt];
}

/** The record of a key just stored: all of it but the hash. */
export function keyRecordOf(k: NewApiKey): ApiKeyRecord {
  return { id: k.id, tenantId: k.tenantId, name: k.name, prefix: k.prefix, createdAt: k.createdAt, revokedAt: k.revokedAt };
}

/** Set with the first key and never unset by the store: see Store.keysRequired. */
export const SET_KEYS_REQUIRED = "INSERT INTO settings (name, value) VALUES ('require_keys', 'true') ON CONFLICT (name) DO UPDATE SET value = 'true'";
export const GET_KEYS_REQUIRED = "SELECT value FROM settings WHERE name = 'require_keys'";

/** A key counts only with the tenant it was created for: a recreated tenant of the same name never inherits one. */
export const FIND_KEY = `SELECT k.id AS key_id, k.tenant_id, k.name AS key_name, k.prefix, k.created_at AS key_created_at, k.revoked_at, t.*
  FROM api_keys k JOIN tenants t ON t.id = k.tenant_id AND t.uid = k.tenant_uid WHERE k.key_hash = ?`;

/**
 * Lease statements, `now` being the SQL for the current time (epoch ms).
 * Each takes the parameters [name, holder, now, ttlMs, now] in the order
 * `leaseParams` gives them.
 */
export function leaseSql(now: string): { readonly acquire: string; readonly renew: string } {
  return {
    acquire: `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ${now} + ?)
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
      WHERE leases.expires_at <= ${now} OR leases.holder = excluded.holder`,
    renew: `UPDATE leases SET expires_at = ${now} + ? WHERE name = ? AND holder = ? AND expires_at > ${now}`,
  };
}

export function leaseParams(kind: "acquire" | "renew", name: string, holder: string, ttlMs: number, now: number | null): unknown[] {
  return kind === "acquire" ? [name, holder, now, ttlMs, now] : [now, ttlMs, name, holder, now];
}

export const RELEASE_LEASE = "DELETE FROM leases WHERE name = ? AND holder = ?";

function groupExpr(g: UsageGroup, d: Dialect): string {
  switch (g) {
    case "tenant":
      return "tenant_id";
    case "key":
      return "key_id";
    case "month":
      return "period";
    case "day":
      return d === "sqlite" ? "strftime('%Y-%m-%d', started_at / 1000, 'unixepoch')" : "to_char(to_timestamp(started_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
    case "hour":
      return d === "sqlite"
        ? "strftime('%Y-%m-%dT%H:00Z', started_at / 1000, 'unixepoch')"
        : `to_char(to_timestamp(started_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:00"Z"')`;
    default:
      return g;
  }
}

/** The aggregate query behind GET /v1/usage, with `?` placeholders. */
export function usageSql(q: UsageQuery, d: Dialect): { sql: string; params: unknown[] } {
  const groups = [...new Set(q.groupBy)];
  const sum = (col: string): string => (d === "postgres" ? `COALESCE(SUM(${col}), 0)::float8` : `COALESCE(SUM(${col}), 0)`);
  const select = [
    ...groups.map((g, i) => `${groupExpr(g, d)} AS g${i}`),
    d === "postgres" ? "COUNT(*)::float8 AS requests" : "COUNT(*) AS requests",
    `${sum("input_tokens")} AS input_tokens`,
    `${sum("cached_tokens")} AS cached_tokens`,
    `${sum("output_tokens")} AS output_tokens`,
    `${sum("device_seconds")} AS device_seconds`,
    `${sum("energy_j")} AS energy_j`,
    `${sum("cost_nusd")} AS cost_nusd`,
  ];
  const where = ["started_at >= ?", "started_at < ?"];
  const params: unknown[] = [q.from, q.to];
  if (q.tenantId !== undefined) {
    where.push("tenant_id = ?");
    params.push(q.tenantId);
  }
  const grouped = groups.length > 0 ? ` GROUP BY ${groups.map((_, i) => `g${i}`).join(", ")} ORDER BY ${groups.map((_, i) => `g${i}`).join(", ")}` : "";
  return { sql: `SELECT ${select.join(", ")} FROM requests WHERE ${where.join(" AND ")}${grouped}`, params };
}

export function usageFrom(r: Row, groups: readonly UsageGroup[]): UsageRow {
  const group: Partial<Record<UsageGroup, string | null>> = {};
  [...new Set(groups)].forEach((g, i) => {
    group[g] = strOrNull(r[`g${i}`]);
  });
  return {
    group,
    requests: num(r.requests),
    ...usageOf(r),
  };
}

export function ledgerSql(f: LedgerFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.tenantId !== undefined) {
    where.push("tenant_id = ?");
    params.push(f.tenantId);
  }
  const equal: readonly [string, unknown][] = [["status", f.status], ["replica", f.replica], ["hardware", f.hardware]];
  for (const [column, value] of equal) {
    if (value === undefined) continue;
    where.push(`${column} = ?`);
    params.push(value);
  }
  if (f.since !== undefined) {
    where.push("started_at >= ?");
    params.push(f.since);
  }
  if (f.timed === true) where.push("ttft_ms IS NOT NULL");
  params.push(f.limit ?? 1_000_000);
  return { sql: `SELECT * FROM requests${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY started_at, id LIMIT ?`, params };
}

/** `?` placeholders to Postgres's `$1, $2, ...` (no `?` appears in our SQL otherwise). */
export function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}
