import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { json, printable, table } from "./terminal-text.js";
import { withGatewayUrl } from "./gateway-url.js";

/** Where the commands write (tests capture it). */
export interface BatchIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
}

/** The most batches the gateway lists at a time (GET /admin/batches). */
const MAX_LIMIT = 100;

/**
 * `flotilla batches list`: every tenant's batches of the Batch API, newest
 * first, with how far their lines have got, over a running gateway's
 * GET /admin/batches (with FLOTILLA_ADMIN_TOKEN when the gateway has an
 * admin token).
 */
export function registerBatchCommands(program: Command, io: BatchIo = { stdout: process.stdout, stderr: process.stderr }): void {
  const batches = program.command("batches").description("follow the Batch API's batches, every tenant's");
  withGatewayUrl(batches.command("list").description("batches, newest first: status and progress of their lines"))
    .option("--limit <n>", `how many (1 to ${MAX_LIMIT}; default 20)`, limitOption)
    .option("--after <batch>", "the page after this batch (the last one listed)")
    .option("--json", "print the gateway's list as JSON")
    .action(async (o: { url: string; limit?: number; after?: string; json?: boolean }) => {
      const query = { ...(o.limit === undefined ? {} : { limit: String(o.limit) }), ...(o.after === undefined ? {} : { after: o.after }) };
      // A gateway that cannot be reached, or refuses, is an error main() prints (flotilla: …) with exit status 1.
      const list = (await getAdmin(o.url, "/admin/batches", query)) as BatchList;
      if (o.json === true) {
        io.stdout.write(json(list));
        return;
      }
      io.stdout.write(list.data.length === 0 ? "no batches\n" : batchTable(list.data));
      if (list.has_more && list.last_id !== null) io.stderr.write(`more: flotilla batches list --after ${printable(list.last_id)}\n`);
    });
}

/** What GET /admin/batches answers: OpenAI's batch objects, with their tenant and where every line stands. */
interface BatchList {
  object: "list";
  data: AdminBatch[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

interface AdminBatch {
  id: string;
  tenant: string;
  status: string;
  endpoint: string;
  created_at: number;
  x_flotilla: { lines: Record<"pending" | "running" | "completed" | "failed" | "cancelled" | "expired", number> };
}

/** One line a batch: done counts every line that finished, whichever way (completed, failed, cancelled, expired). */
function batchTable(data: readonly AdminBatch[]): string {
  const rows = data.map((b) => {
    const l = b.x_flotilla.lines;
    const done = l.completed + l.failed + l.cancelled + l.expired;
    const total = done + l.pending + l.running;
    const share = total === 0 ? "-" : `${Math.floor((done / total) * 100)}%`;
    return [b.id, b.tenant, b.status, b.endpoint, `${done}/${total} (${share})`, String(l.completed), String(l.failed), new Date(b.created_at * 1000).toISOString().replace(/\.\d+Z$/, "Z")];
  });
  return table(["batch", "tenant", "status", "endpoint", "progress", "completed", "failed", "created"], rows);
}

function limitOption(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < 1 || n > MAX_LIMIT) throw new InvalidArgumentError(`--limit must be a whole number from 1 to ${MAX_LIMIT}`);
  return n;
}

/** GET an admin route; an error says what went wrong and, for a refusal, what to do about it. */
async function getAdmin(url: string, path: string, query: Record<string, string>): Promise<unknown> {
  const token = process.env.FLOTILLA_ADMIN_TOKEN;
  let target: URL;
  try {
    target = new URL(path, url);
  } catch {
    throw new Error(`${JSON.stringify(url)} is not a URL; give the gateway as --url http://HOST:PORT (or FLOTILLA_URL)`);
  }
  for (const [k, v] of Object.entries(query)) target.searchParams.set(k, v);
  let res: Response;
  try {
    res = await fetch(target, { headers: token === undefined || token === "" ? {} : { authorization: `Bearer ${token}` } });
  } catch (err) {
    throw new Error(`cannot reach the gateway at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message} (is it running? --url or FLOTILLA_URL names another)`);
  }
  const text = await res.text();
  let body: { error?: { message?: string; code?: string } } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: reported below by status
  }
  if (res.ok && body !== undefined) return body;
  const said = printable(body?.error?.message ?? `the gateway answered ${res.status}${res.ok ? " without JSON" : ""}`);
  throw new Error(`${said}${refusalHint(res.status, body?.error?.code, token)}`);
}

/** What to do about a refusal of an admin route. */
function refusalHint(status: number, code: string | undefined, token: string | undefined): string {
  const set = token !== undefined && token !== "";
  if (status === 401) return set ? "; FLOTILLA_ADMIN_TOKEN is not the gateway's admin token (server.admin_token_env names where the gateway reads it)" : "; set FLOTILLA_ADMIN_TOKEN to the gateway's admin token";
  if (status === 403) return set ? "; FLOTILLA_ADMIN_TOKEN must be the gateway's admin token, not an API key" : "; run this on the gateway's host, or give the gateway an admin token (server.admin_token_env) and set FLOTILLA_ADMIN_TOKEN to it";
  if (status === 404 && code === "unknown_route") return "; this gateway is older than the Batch API: upgrade it";
  return "";
}
