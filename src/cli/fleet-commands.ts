import type { Command } from "commander";

interface AdminOptions {
  url: string;
}

/**
 * `flotilla fleet list|drain|resume`: the operator's view of a running
 * gateway, over its /admin routes (FLOTILLA_ADMIN_TOKEN, when the gateway
 * has an admin token).
 */
export function registerFleetCommands(program: Command): void {
  const fleet = program.command("fleet").description("inspect and steer the replicas of a running gateway");
  const withUrl = (c: Command): Command => c.option("--url <url>", "the gateway", "http://127.0.0.1:8080");

  withUrl(fleet.command("list").description("replicas with their state and load")).action(async (opts: AdminOptions) => {
    const { data } = (await call(opts.url, "GET", "/admin/replicas")) as { data: Record<string, unknown>[] };
    const rows = data.map((r) => [r.id, r.model, r.engine, r.state, `${r.active}/${r.slots}`, r.queued].map(String));
    process.stdout.write(table(["replica", "model", "engine", "state", "active", "queued"], rows));
  });

  withUrl(fleet.command("drain <replica>").description("stop new traffic to a replica and wait for its requests to finish"))
    .option("--wait <seconds>", "longest wait for in-flight requests", "30")
    .action(async (replica: string, opts: AdminOptions & { wait: string }) => {
      const r = (await call(opts.url, "POST", "/admin/drain", { replica, wait_s: Number(opts.wait) })) as { state: string; active: number; queued: number };
      process.stdout.write(`${replica}: ${r.state}${r.state === "drained" ? "" : ` (${r.active + r.queued} requests still running)`}\n`);
      if (r.state !== "drained") process.exitCode = 3;
    });

  withUrl(fleet.command("resume <replica>").description("send traffic to a drained replica again")).action(async (replica: string, opts: AdminOptions) => {
    const r = (await call(opts.url, "POST", "/admin/resume", { replica })) as { state: string };
    process.stdout.write(`${replica}: ${r.state}\n`);
  });
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
