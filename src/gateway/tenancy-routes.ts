import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FlotillaError } from "../core/errors.js";
import type { Clock } from "../core/clock.js";
import { TENANT_RANGES, type TenancyAdmin, type ValueRange } from "../metering/admin-api.js";
import type { Principal, Tenancy } from "../metering/tenancy.js";
import { periodOf, periodStart } from "../store/limits.js";
import { ANONYMOUS_TENANT, NUSD_PER_USD, PRIORITY_CLASSES, USAGE_GROUPS, type ApiKeyRecord, type TenantWithState, type UsageGroup, type UsageRow } from "../store/types.js";
import { errorBody } from "./errors.js";

/** A setting within its TENANT_RANGES entry (null: unlimited); an out-of-range value is a 400 naming it. */
const ranged = <R extends ValueRange>(r: R) => ({ type: [r.integer ? "integer" : "number", "null"], minimum: r.min, maximum: r.max }) as const;

const tenantBody = {
  type: "object",
  required: ["name"],
  properties: {
    name: { type: "string", minLength: 1, maxLength: 64 },
    weight: { type: "number", minimum: TENANT_RANGES.weight.min, maximum: TENANT_RANGES.weight.max },
    priority: { type: "string", enum: [...PRIORITY_CLASSES] },
    requests_per_minute: ranged(TENANT_RANGES.requests_per_minute),
    tokens_per_minute: ranged(TENANT_RANGES.tokens_per_minute),
    max_concurrent: ranged(TENANT_RANGES.max_concurrent),
    monthly_budget_usd: ranged(TENANT_RANGES.monthly_budget_usd),
  },
  additionalProperties: false,
} as const;

interface TenantBody {
  name: string;
  weight?: number;
  priority?: (typeof PRIORITY_CLASSES)[number];
  requests_per_minute?: number | null;
  tokens_per_minute?: number | null;
  max_concurrent?: number | null;
  monthly_budget_usd?: number | null;
}

const keyBody = {
  type: "object",
  required: ["tenant"],
  properties: { tenant: { type: "string", minLength: 1 }, name: { type: "string", maxLength: 200 } },
  additionalProperties: false,
} as const;

interface UsageQuerystring {
  from?: string;
  to?: string;
  group_by?: string;
  tenant?: string;
}

/**
 * Tenants, keys and usage over HTTP. The /admin routes have "admin" access
 * like the fleet's (gateway/access.ts); GET /v1/usage answers a tenant for
 * its own usage.
 */
export function registerTenancyRoutes(app: FastifyInstance, tenancy: Tenancy, principalOf: (request: FastifyRequest) => Principal | undefined, clock: Clock): void {
  const admin = tenancy.admin;
  const ADMIN = { config: { access: "admin" } } as const;

  app.get<{ Querystring: UsageQuerystring }>("/v1/usage", { config: { access: "tenant" } }, async (request, reply) => {
    if (admin === undefined) return noLedger(reply);
    const tenantId = principalOf(request)?.tenantId ?? ANONYMOUS_TENANT;
    return usageReport(admin, request.query, tenantId, clock.epochMs());
  });

  app.register(async (scope) => {
    if (admin === undefined) {
      for (const path of ["/admin/tenants", "/admin/tenants/:id", "/admin/keys", "/admin/keys/:id", "/admin/usage"]) scope.all(path, ADMIN, (_request, reply) => noLedger(reply));
      return;
    }

    scope.get("/admin/tenants", ADMIN, async () => {
      const now = clock.epochMs();
      return { object: "list", data: (await admin.listTenants()).map((t) => tenantJson(t, now)) };
    });

    scope.get<{ Params: { id: string } }>("/admin/tenants/:id", ADMIN, async (request, reply) => {
      const t = await admin.getTenant(request.params.id);
      if (t === undefined) return notFound(reply, `no tenant "${request.params.id}"`);
      return tenantJson(t, clock.epochMs());
    });

    scope.post<{ Body: TenantBody }>("/admin/tenants", { ...ADMIN, schema: { body: tenantBody } }, async (request, reply) => {
      const b = request.body;
      const t = await admin.createTenant({
        id: b.name,
        ...(b.weight === undefined ? {} : { weight: b.weight }),
        ...(b.priority === undefined ? {} : { priority: b.priority }),
        requestsPerMinute: b.requests_per_minute ?? null,
        tokensPerMinute: b.tokens_per_minute ?? null,
        maxConcurrent: b.max_concurrent ?? null,
        monthlyBudgetUsd: b.monthly_budget_usd ?? null,
      });
      return reply.code(201).send(tenantJson(t, clock.epochMs()));
    });

    scope.delete<{ Params: { id: string } }>("/admin/tenants/:id", ADMIN, async (request, reply) => {
      if (!(await admin.deleteTenant(request.params.id))) return notFound(reply, `no tenant "${request.params.id}"`);
      return { id: request.params.id, object: "tenant", deleted: true };
    });

    scope.get<{ Querystring: { tenant?: string } }>("/admin/keys", ADMIN, async (request) => ({ object: "list", data: (await admin.listKeys(request.query.tenant)).map(keyJson) }));

    scope.post<{ Body: { tenant: string; name?: string } }>("/admin/keys", { ...ADMIN, schema: { body: keyBody } }, async (request, reply) => {
      const { key, record } = await admin.createKey(request.body.tenant, request.body.name ?? "");
      // The only time the key exists outside its holder's hands.
      return reply.code(201).header("cache-control", "no-store").send({ ...keyJson(record), key });
    });

    scope.delete<{ Params: { id: string } }>("/admin/keys/:id", ADMIN, async (request, reply) => {
      if (!(await admin.revokeKey(request.params.id))) return notFound(reply, `no active key "${request.params.id}"`);
      return { id: request.params.id, object: "api_key", revoked: true };
    });

    scope.get<{ Querystring: UsageQuerystring }>("/admin/usage", ADMIN, async (request) => usageReport(admin, request.query, request.query.tenant, clock.epochMs()));
  });
}

async function usageReport(admin: TenancyAdmin, q: UsageQuerystring, tenantId: string | undefined, now: number): Promise<Record<string, unknown>> {
  const from = q.from === undefined ? periodStart(now) : instant(q.from, "from");
  const to = q.to === undefined ? now + 1 : instant(q.to, "to");
  if (to <= from) throw new FlotillaError("invalid_request", "to must be later than from", { param: "to" });
  const groupBy = (q.group_by ?? "")
    .split(",")
    .map((g) => g.trim())
    .filter((g) => g.length > 0);
  for (const g of groupBy) {
    if (!(USAGE_GROUPS as readonly string[]).includes(g)) throw new FlotillaError("invalid_request", `group_by must be a comma-separated list of: ${USAGE_GROUPS.join(", ")}`, { param: "group_by" });
  }
  const rows = await admin.usage({ ...(tenantId === undefined ? {} : { tenantId }), from, to, groupBy: groupBy as UsageGroup[] });
  const total = rows.reduce(
    (a, r) => ({
      group: {},
      requests: a.requests + r.requests,
      inputTokens: a.inputTokens + r.inputTokens,
      cachedTokens: a.cachedTokens + r.cachedTokens,
      outputTokens: a.outputTokens + r.outputTokens,
      deviceSeconds: a.deviceSeconds + r.deviceSeconds,
      energyJ: a.energyJ + r.energyJ,
      costNusd: a.costNusd + r.costNusd,
    }),
    { group: {}, requests: 0, inputTokens: 0, cachedTokens: 0, outputTokens: 0, deviceSeconds: 0, energyJ: 0, costNusd: 0 } as UsageRow,
  );
  return {
    object: "usage",
    ...(tenantId === undefined ? {} : { tenant: tenantId }),
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    group_by: groupBy,
    data: rows.map(usageJson),
    total: usageJson(total),
  };
}

/** The instants usage can be asked about: 1970-01-01 up to the end of 9999 (UTC), which every date API can print. */
const LATEST_MS = Date.UTC(10000, 0, 1);

/** An ISO 8601 date or time, or Unix seconds, within 1970-9999. */
function instant(v: string, param: string): number {
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v);
  if (!Number.isFinite(ms)) throw new FlotillaError("invalid_request", `${param} must be an ISO 8601 date or time (2026-11-01, 2026-11-01T12:00:00Z) or Unix seconds`, { param });
  if (ms < 0 || ms >= LATEST_MS) {
    throw new FlotillaError("invalid_request", `${param} must be from 1970-01-01 to 9999-12-31 (Unix seconds 0 to ${LATEST_MS / 1000 - 1})`, { param });
  }
  return ms;
}

function usageJson(r: UsageRow): Record<string, unknown> {
  return {
    ...r.group,
    requests: r.requests,
    input_tokens: r.inputTokens,
    cached_tokens: r.cachedTokens,
    output_tokens: r.outputTokens,
    total_tokens: r.inputTokens + r.outputTokens,
    device_seconds: r.deviceSeconds,
    energy_j: r.energyJ,
    cost_usd: r.costNusd / NUSD_PER_USD,
  };
}

function tenantJson(t: TenantWithState, now: number): Record<string, unknown> {
  const { tenant, state } = t;
  const period = periodOf(now);
  const usd = (n: number | null): number | null => (n === null ? null : n / NUSD_PER_USD);
  return {
    id: tenant.id,
    object: "tenant",
    weight: tenant.weight,
    priority: tenant.priority,
    limits: {
      requests_per_minute: tenant.requestsPerMinute,
      tokens_per_minute: tenant.tokensPerMinute,
      max_concurrent: tenant.maxConcurrent,
      monthly_budget_usd: usd(tenant.monthlyBudgetNusd),
    },
    state: {
      in_flight: state.inFlight,
      period,
      spent_usd: state.period === period ? usd(state.spentNusd) : 0,
      reserved_usd: usd(state.reservedNusd),
    },
    created_at: new Date(tenant.createdAt).toISOString(),
  };
}

function keyJson(k: ApiKeyRecord): Record<string, unknown> {
  return {
    id: k.id,
    object: "api_key",
    tenant: k.tenantId,
    name: k.name,
    prefix: k.prefix,
    created_at: new Date(k.createdAt).toISOString(),
    revoked_at: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(),
  };
}

function noLedger(reply: FastifyReply): FastifyReply {
  return reply.code(404).send(errorBody("this gateway keeps no usage ledger (server.store is none)", "invalid_request_error", null, "no_ledger"));
}

function notFound(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(404).send(errorBody(message, "invalid_request_error", null, "not_found"));
}
