import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { json, printable, table } from "./terminal-text.js";
import { withGatewayUrl } from "./gateway-url.js";

interface UrlOption {
  url: string;
}

/**
 * `flotilla tenants|keys|usage`: the operator's side of multi-tenancy, over
 * a running gateway's admin routes (with FLOTILLA_ADMIN_TOKEN when the
 * gateway has an admin token). `flotilla usage --api-key` (or
 * FLOTILLA_API_KEY) shows a tenant its own usage instead.
 */
export function registerTenancyCommands(program: Command): void {
  registerTenantCommands(program);
  registerKeyCommands(program);
  registerUsageCommand(program);
}

function registerTenantCommands(program: Command): void {
  const tenants = program.command("tenants").description("create, list and delete tenants (who may use the fleet, with what limits)");
  withGatewayUrl(tenants.command("create <name>").description("create a tenant; limits left out are unlimited"))
    .option("--weight <w>", "fair-share weight (default 1)", positiveNumber("weight"))
    .option("--priority <class>", "interactive (default) or batch")
    .option("--rpm <n>", "requests per minute", positiveInt("rpm"))
    .option("--tpm <n>", "tokens (prompt + max_tokens) per minute", positiveInt("tpm"))
    .option("--max-concurrent <n>", "requests running at once", positiveInt("max-concurrent"))
    .option("--budget-usd <x>", "monthly budget in USD (requests must then set max_tokens)", nonNegativeNumber("budget-usd"))
    .option("--json", "print the tenant as JSON")
    .action(async (name: string, o: UrlOption & { weight?: number; priority?: string; rpm?: number; tpm?: number; maxConcurrent?: number; budgetUsd?: number; json?: boolean }) => {
      const body = {
        name,
        ...(o.weight === undefined ? {} : { weight: o.weight }),
        ...(o.priority === undefined ? {} : { priority: o.priority }),
        ...(o.rpm === undefined ? {} : { requests_per_minute: o.rpm }),
        ...(o.tpm === undefined ? {} : { tokens_per_minute: o.tpm }),
        ...(o.maxConcurrent === undefined ? {} : { max_concurrent: o.maxConcurrent }),
        ...(o.budgetUsd === undefined ? {} : { monthly_budget_usd: o.budgetUsd }),
      };
      const t = (await call(o.url, "POST", "/admin/tenants", { body })) as Tenant;
      process.stdout.write(o.json === true ? json(t) : tenantTable([t]));
    });

  withGatewayUrl(tenants.command("list").description("tenants with their limits and this month's spending"))
    .option("--json", "print JSON")
    .action(async (o: UrlOption & { json?: boolean }) => {
      const { data } = (await call(o.url, "GET", "/admin/tenants")) as { data: Tenant[] };
      process.stdout.write(o.json === true ? json(data) : data.length === 0 ? "no tenants\n" : tenantTable(data));
    });

  withGatewayUrl(tenants.command("delete <name>").description("delete a tenant and its keys (its usage history stays)")).action(async (name: string, o: UrlOption) => {
    await call(o.url, "DELETE", `/admin/tenants/${encodeURIComponent(name)}`);
    process.stdout.write(`deleted tenant ${name}\n`);
  });
}

function registerKeyCommands(program: Command): void {
  const keys = program.command("keys").description("create, list and revoke API keys");
  withGatewayUrl(keys.command("create <tenant>").description("create an API key for a tenant; the key is shown once"))
    .option("--name <name>", "a label for the key")
    .option("--json", "print JSON")
    .action(async (tenant: string, o: UrlOption & { name?: string; json?: boolean }) => {
      const k = (await call(o.url, "POST", "/admin/keys", { body: { tenant, ...(o.name === undefined ? {} : { name: o.name }) } })) as Key & { key: string };
      if (o.json === true) {
        process.stdout.write(json(k));
        return;
      }
      process.stdout.write(`${printable(k.key)}\n`);
      process.stderr.write(`key ${printable(k.id)} for tenant ${printable(k.tenant)}: store it now, it is not shown again (clients send it as Authorization: Bearer <key>)\n`);
    });

  withGatewayUrl(keys.command("list").description("API keys (their first characters only)"))
    .option("--tenant <name>", "only this tenant's keys")
    .option("--json", "print JSON")
    .action(async (o: UrlOption & { tenant?: string; json?: boolean }) => {
      const { data } = (await call(o.url, "GET", "/admin/keys", { query: o.tenant === undefined ? {} : { tenant: o.tenant } })) as { data: Key[] };
      if (o.json === true) {
        process.stdout.write(json(data));
        return;
      }
      const rows = data.map((k) => [k.id, k.tenant, k.name, `${k.prefix}…`, k.created_at, k.revoked_at ?? "active"]);
      process.stdout.write(data.length === 0 ? "no keys\n" : table(["key", "tenant", "name", "prefix", "created", "revoked"], rows));
    });

  withGatewayUrl(keys.command("revoke <id>").description("revoke an API key at once")).action(async (id: string, o: UrlOption) => {
    await call(o.url, "DELETE", `/admin/keys/${encodeURIComponent(id)}`);
    process.stdout.write(`revoked ${id}\n`);
  });
}

function registerUsageCommand(program: Command): void {
  withGatewayUrl(program.command("usage").description("usage from the ledger: requests, tokens, device-seconds, energy and cost"))
    .option("--tenant <name>", "only this tenant (admin)")
    .option("--from <date>", "start, ISO 8601 or Unix seconds (default: start of this month, UTC)")
    .option("--to <date>", "end, exclusive (default: now)")
    .option("--group-by <groups>", "comma-separated: tenant, key, model, replica, hardware, status, endpoint, day, hour, month")
    .option("--api-key <key>", "show this key's tenant its own usage (default: $FLOTILLA_API_KEY; without one, the admin view)")
    .option("--json", "print JSON")
    .action(async (o: UrlOption & { tenant?: string; from?: string; to?: string; groupBy?: string; apiKey?: string; json?: boolean }) => {
      const apiKey = o.apiKey ?? process.env.FLOTILLA_API_KEY;
      const query: Record<string, string> = {
        ...(o.from === undefined ? {} : { from: o.from }),
        ...(o.to === undefined ? {} : { to: o.to }),
        ...(o.groupBy === undefined ? {} : { group_by: o.groupBy }),
        ...(o.tenant === undefined || apiKey !== undefined ? {} : { tenant: o.tenant }),
      };
      const report = (await (apiKey === undefined ? call(o.url, "GET", "/admin/usage", { query }) : call(o.url, "GET", "/v1/usage", { query, token: apiKey }))) as UsageReport;
      process.stdout.write(o.json === true ? json(report) : usageTable(report));
    });
}

interface Tenant {
  id: string;
  weight: number;
  priority: string;
  limits: { requests_per_minute: number | null; tokens_per_minute: number | null; max_concurrent: number | null; monthly_budget_usd: number | null };
  state: { in_flight: number; period: string; spent_usd: number; reserved_usd: number };
}

interface Key {
  id: string;
  tenant: string;
  name: string;
  prefix: string;
  created_at: string;
  revoked_at: string | null;
}

type UsageLine = Record<string, string | number | null>;

interface UsageReport {
  tenant?: string;
  from: string;
  to: string;
  group_by: string[];
  data: UsageLine[];
  total: UsageLine;
}

function tenantTable(data: readonly Tenant[]): string {
  const lim = (n: number | null): string => (n === null ? "-" : String(n));
  const rows = data.map((t) => [
    t.id,
    String(t.weight),
    t.priority,
    lim(t.limits.requests_per_minute),
    lim(t.limits.tokens_per_minute),
    lim(t.limits.max_concurrent),
    t.limits.monthly_budget_usd === null ? "-" : usd(t.limits.monthly_budget_usd),
    usd(t.state.spent_usd),
    String(t.state.in_flight),
  ]);
  return table(["tenant", "weight", "priority", "rpm", "tpm", "concurrent", "budget $/month", `spent ${data[0]?.state.period ?? ""}`, "running"], rows);
}

/** The usage report as a table, one line per group and a total. */
export function usageTable(r: UsageReport): string {
  const groups = r.group_by;
  const line = (u: UsageLine, label?: string): string[] => [
    ...groups.map((g, i) => (label !== undefined ? (i === 0 ? label : "") : String(u[g] ?? "-"))),
    String(u.requests),
    String(u.input_tokens),
    String(u.cached_tokens),
    String(u.output_tokens),
    Number(u.device_seconds).toFixed(3),
    joules(Number(u.energy_j)),
    usd(Number(u.cost_usd)),
  ];
  const rows = r.data.map((u) => line(u));
  if (groups.length > 0 && r.data.length > 1) rows.push(line(r.total, "total"));
  const head = [...groups, "requests", "input", "cached", "output", "device-s", "energy", "cost $"];
  const title = printable(`usage${r.tenant === undefined ? "" : ` of ${r.tenant}`} from ${r.from} to ${r.to}`) + "\n";
  return title + (r.data.length === 0 && groups.length > 0 ? "no requests\n" : table(head, rows.length > 0 ? rows : [line(r.total)]));
}

function usd(x: number): string {
  if (x === 0) return "0";
  return x >= 0.01 ? x.toFixed(2) : x.toPrecision(3);
}

function joules(j: number): string {
  if (j >= 3.6e6) return `${(j / 3.6e6).toFixed(2)} kWh`;
  if (j >= 1000) return `${(j / 1000).toFixed(2)} kJ`;
  return `${j.toPrecision(3)} J`;
}

async function call(url: string, method: "GET" | "POST" | "DELETE", path: string, opts: { body?: unknown; query?: Record<string, string>; token?: string } = {}): Promise<unknown> {
  const headers: Record<string, string> = {};
  const token = opts.token ?? process.env.FLOTILLA_ADMIN_TOKEN;
  if (token !== undefined && token !== "") headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const target = new URL(path, url);
  for (const [k, v] of Object.entries(opts.query ?? {})) target.searchParams.set(k, v);
  let res: Response;
  try {
    res = await fetch(target, { method, headers, ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }) });
  } catch (err) {
    throw new Error(`cannot reach the gateway at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
  }
  const text = await res.text();
  let json: { error?: { message: string } } = {};
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    // not JSON: reported below by status
  }
  if (!res.ok) throw new Error(printable(json.error?.message ?? `gateway answered ${res.status}`));
  return json;
}

function positiveInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

function positiveNumber(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

function nonNegativeNumber(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number >= 0`);
    return n;
  };
}
