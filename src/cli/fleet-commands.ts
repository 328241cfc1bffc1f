import type { Command } from "commander";
import { withGatewayUrl } from "./gateway-url.js";

interface AdminOptions {
  url: string;
}

/**
 * `flotilla fleet list|drain|resume|add|remove|update|reload`: the
 * operator's view of a running gateway, over its /admin routes
 * (FLOTILLA_ADMIN_TOKEN, when the gateway has an admin token). A replica is
 * described as in the fleet file, so `add` and `update` take the same keys.
 */
export function registerFleetCommands(program: Command): void {
  const fleet = program.command("fleet").description("inspect and steer the replicas of a running gateway");

  withGatewayUrl(fleet.command("list").description("replicas with their state and load")).action(async (opts: AdminOptions) => {
    const { data } = (await call(opts.url, "GET", "/admin/replicas")) as { data: Record<string, unknown>[] };
    // A discovered replica's engine names its provider too: "openai (kubernetes)".
    const rows = data.map((r) => [r.id, r.model, r.source === undefined ? r.engine : `${String(r.engine)} (${String(r.source)})`, r.state, `${r.active}/${r.slots}`, r.queued].map(String));
    process.stdout.write(table(["replica", "model", "engine", "state", "active", "queued"], rows));
  });

  withGatewayUrl(fleet.command("drain <replica>").description("stop new traffic to a replica and wait for its requests to finish"))
    .option("--wait <seconds>", "longest wait for in-flight requests", "30")
    .action(async (replica: string, opts: AdminOptions & { wait: string }) => {
      const r = (await call(opts.url, "POST", "/admin/drain", { replica, wait_s: Number(opts.wait) })) as { state: string; active: number; queued: number };
      process.stdout.write(`${replica}: ${r.state}${r.state === "drained" ? "" : ` (${r.active + r.queued} requests still running)`}\n`);
      if (r.state !== "drained") process.exitCode = 3;
    });

  withGatewayUrl(fleet.command("resume <replica>").description("send traffic to a drained replica again")).action(async (replica: string, opts: AdminOptions) => {
    const r = (await call(opts.url, "POST", "/admin/resume", { replica })) as { state: string };
    process.stdout.write(`${replica}: ${r.state}\n`);
  });
  registerMembershipCommands(fleet);
}

const collect = (value: string, prior: string[]): string[] => [...prior, value];

/** add, remove, update, reload: the fleet changed while it serves (gateway/membership.ts). */
function registerMembershipCommands(fleet: Command): void {
  withGatewayUrl(fleet.command("add <model> <setting...>").description("add replicas of a model, given as fleet-file keys, e.g.: engine=openai url=http://10.0.0.5:8000 count=2"))
    .action(async (model: string, settings: string[], opts: AdminOptions) => {
      const { data } = (await call(opts.url, "POST", "/admin/replicas", { model, replica: settingsObject(settings) })) as { data: { id: string; state: string }[] };
      for (const r of data) process.stdout.write(`${r.id}: added (${r.state})\n`);
    });

  withGatewayUrl(fleet.command("remove <replica>").description("take a replica out: no new requests; running ones finish, or move to other replicas after --wait"))
    .option("--wait <seconds>", "longest wait for its requests before they move on", "30")
    .action(async (replica: string, opts: AdminOptions & { wait: string }) => {
      const r = (await call(opts.url, "POST", "/admin/remove", { replica, wait_s: Number(opts.wait) })) as { moved_requests: number };
      process.stdout.write(`${replica}: removed${r.moved_requests > 0 ? ` (${r.moved_requests} requests moved to other replicas)` : ""}\n`);
    });

  withGatewayUrl(fleet.command("update <replica>").description("replace a replica by one with changed settings: the new one serves before the old one drains"))
    .option("--set <key=value>", "a fleet-file key to change (repeatable)", collect, [])
    .option("--wait <seconds>", "longest wait for the old replica's requests", "30")
    .action(async (replica: string, opts: AdminOptions & { set: string[]; wait: string }) => {
      const r = (await call(opts.url, "POST", "/admin/update", { replica, set: settingsObject(opts.set), wait_s: Number(opts.wait) })) as { id: string };
      process.stdout.write(`${replica}: replaced by ${r.id}\n`);
    });

  withGatewayUrl(fleet.command("reload").description("read the gateway's fleet file again and apply what changed (as SIGHUP does)")).action(async (opts: AdminOptions) => {
    const r = (await call(opts.url, "POST", "/admin/reload", {})) as { added: string[]; removed: string[]; kept: number; needsRestart: string[]; discovery?: string[] };
    process.stdout.write(`added: ${r.added.join(", ") || "none"}\nremoved: ${r.removed.join(", ") || "none"}\nunchanged: ${r.kept}\n`);
    if (r.needsRestart.length > 0) process.stdout.write(`take a restart: ${r.needsRestart.join(", ")}\n`);
    if ((r.discovery ?? []).length > 0) process.stdout.write(`discovery restarted: ${r.discovery!.join(", ")}\n`);
  });
}

/**
 * `key=value` pairs as a replica entry. A value is read as YAML would read
 * it in the fleet file (numbers, booleans), so the gateway checks it with
 * the same schema and names the same keys.
 */
export function settingsObject(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`"${pair}" is not key=value`);
    const value = pair.slice(eq + 1);
    out[pair.slice(0, eq)] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value === "true" || value === "false" ? value === "true" : value;
  }
  return out;
}

async function call(url: string, method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = {};
  const token = process.env.FLOTILLA_ADMIN_TOKEN;
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(new URL(path, url), { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch (err) {
    throw new Error(`cannot reach the gateway at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`);
  }
  const json = (await res.json()) as { error?: { message: string } };
  if (!res.ok) throw new Error(json.error?.message ?? `gateway answered ${res.status}`);
  return json;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
