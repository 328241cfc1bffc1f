/** SQL shared by the backends: row mapping and the usage query, per dialect. */
import type { ApiKeyRecord, InstanceRecord, LedgerFilter, LedgerRow, LedgerStatus, PriorityClass, Tenant, TenantState, TenantWithState, UsageGroup, UsageQuery, UsageRow } from "./types.js";

export type Dialect = "sqlite" | "postgres";

type Row = Record<string, unknown>;

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

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

/** The state columns in update order, with their values. */
export function stateValues(s: TenantState): unknown[] {
  return [s.rpmTokens, s.rpmAt, s.tpmTokens, s.tpmAt, s.inFlight, s.reservedNusd, s.period, s.spentNusd];
}
export const STATE_SET = "rpm_tokens = ?, rpm_at = ?, tpm_tokens = ?, tpm_at = ?, in_flight = ?, reserved_nusd = ?, period = ?, spent_nusd = ?";

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

export function instanceFrom(r: Row): InstanceRecord {
  return { id: String(r.id), host: String(r.host), pid: num(r.pid), startedAt: num(r.started_at), heartbeatAt: num(r.heartbeat_at) };
}

export function ledgerFrom(r: Row): LedgerRow {
  return {
    id: String(r.id),
    requestId: String(r.request_id),
    tenantId: String(r.tenant_id),
    keyId: strOrNull(r.key_id),
    model: String(r.model),
    endpoint: String(r.endpoint),
    stream: num(r.stream) !== 0,
    status: String(r.status) as LedgerStatus,
    errorCode: strOrNull(r.error_code),
    replica: strOrNull(r.replica),
    hardware: strOrNull(r.hardware),
    inputTokens: num(r.input_tokens),
    cachedTokens: num(r.cached_tokens),
    outputTokens: num(r.output_tokens),
    deviceSeconds: num(r.device_seconds),
    energyJ: num(r.energy_j),
    costNusd: num(r.cost_nusd),
    reservedNusd: num(r.reserved_nusd),
    reservedTokens: num(r.reserved_tokens),
    attempts: num(r.attempts),
    continuations: num(r.continuations),
    period: String(r.period),
    instanceId: String(r.instance_id),
    startedAt: num(r.started_at),
    finishedAt: numOrNull(r.finished_at),
  };
}

export const INSERT_REQUEST = `INSERT INTO requests
  (id, request_id, tenant_id, key_id, model, endpoint, stream, status, reserved_nusd, reserved_tokens, period, instance_id, started_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)`;

export const SETTLE_REQUEST = `UPDATE requests SET status = ?, error_code = ?, replica = ?, hardware = ?, input_tokens = ?, cached_tokens = ?,
  output_tokens = ?, device_seconds = ?, energy_j = ?, cost_nusd = ?, attempts = ?, continuations = ?, finished_at = ? WHERE id = ?`;

export const INTERRUPT_REQUEST = `UPDATE requests SET status = 'interrupted', error_code = 'gateway_exited', finished_at = ? WHERE id = ?`;

/** Rows crash recovery must interrupt: running rows of dead instances, and of instances no longer registered. */
export function runningOfDeadSql(dead: number, keep: number): string {
  const marks = (n: number): string => Array.from({ length: n }, () => "?").join(", ");
  const conditions = [`instance_id NOT IN (SELECT id FROM instances)`];
  if (dead > 0) conditions.push(`instance_id IN (${marks(dead)})`);
  const kept = keep > 0 ? ` AND instance_id NOT IN (${marks(keep)})` : "";
  return `SELECT id, tenant_id, reserved_nusd, reserved_tokens, period FROM requests WHERE status = 'running' AND (${conditions.join(" OR ")})${kept}`;
}

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
    inputTokens: num(r.input_tokens),
    cachedTokens: num(r.cached_tokens),
    outputTokens: num(r.output_tokens),
    deviceSeconds: num(r.device_seconds),
    energyJ: num(r.energy_j),
    costNusd: num(r.cost_nusd),
  };
}

export function ledgerSql(f: LedgerFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.tenantId !== undefined) {
    where.push("tenant_id = ?");
    params.push(f.tenantId);
  }
  if (f.status !== undefined) {
    where.push("status = ?");
    params.push(f.status);
  }
  params.push(f.limit ?? 1_000_000);
  return { sql: `SELECT * FROM requests${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY started_at, id LIMIT ?`, params };
}

/** `?` placeholders to Postgres's `$1, $2, ...` (no `?` appears in our SQL otherwise). */
export function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}
