/**
 * `flotilla batches list` against an in-process gateway with the Batch API
 * and an admin token: a batch is listed with its tenant and how far its
 * lines have got, up to all of them; --json is the gateway's list; --limit
 * pages; a bad --limit, an unreachable gateway and a refused token each end
 * the command with an error that says what to do (exit status 1).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import OpenAI, { toFile } from "openai";
import { registerBatchCommands } from "../../src/cli/batch-commands.js";
import { runCli, type CliRun } from "../cli-run.js";
import { sqliteBackend, startTenantGateway, type TenantGateway } from "../metering/harness.js";
import { CLI } from "../paths.js";

const ADMIN_TOKEN = "batches-cli-test-admin-token";

/** `flotilla batches …` in-process, with FLOTILLA_ADMIN_TOKEN as given (unset for null) while it runs. */
async function cli(args: readonly string[], token: string | null = ADMIN_TOKEN): Promise<CliRun> {
  const before = process.env.FLOTILLA_ADMIN_TOKEN;
  if (token === null) delete process.env.FLOTILLA_ADMIN_TOKEN;
  else process.env.FLOTILLA_ADMIN_TOKEN = token;
  try {
    return await runCli(args, (program, io) => registerBatchCommands(program, io));
  } finally {
    if (before === undefined) delete process.env.FLOTILLA_ADMIN_TOKEN;
    else process.env.FLOTILLA_ADMIN_TOKEN = before;
  }
}

/** Runs the command until its output satisfies `check`, for up to `ms`. */
async function listUntil(args: readonly string[], check: (r: CliRun) => boolean, what: string, ms = 60_000): Promise<CliRun> {
  const deadline = performance.now() + ms;
  for (;;) {
    const r = await cli(args);
    if (check(r)) return r;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last output:\n${r.stdout}${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const chatLine = (customId: string, content: string): string =>
  JSON.stringify({ custom_id: customId, method: "POST", url: "/v1/chat/completions", body: { model: "tiny", messages: [{ role: "user", content }], max_tokens: 4 } });

/** A URL on a port that was just free: nothing listens on it. */
async function nobodyListening(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return url;
}

/** The table's line for `id`, split into its columns (two spaces or more apart). */
function rowOf(stdout: string, id: string): string[] | undefined {
  return stdout
    .split("\n")
    .find((l) => l.startsWith(id))
    ?.split(/ {2,}/);
}

describe("flotilla batches list", () => {
  let db: Awaited<ReturnType<typeof sqliteBackend.fresh>>;
  let gw: TenantGateway;
  let client: OpenAI;
  let batch: OpenAI.Batches.Batch;
  let second: OpenAI.Batches.Batch;

  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { adminToken: ADMIN_TOKEN, batches: { headroomSlots: 0 } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  it("lists a new batch with its tenant, and its progress up to all of its lines", async () => {
    const text = [chatLine("a", "hi"), chatLine("b", "one two"), chatLine("c", "three")].join("\n") + "\n";
    const input = await client.files.create({ file: await toFile(Buffer.from(text), "in.jsonl"), purpose: "batch" });
    batch = await client.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });

    const first = await cli(["batches", "list", "--url", gw.url]);
    assert.equal(first.exitCode, undefined, first.stderr);
    assert.match(first.stdout, /^batch +tenant +status +endpoint +progress +completed +failed +created$/m);
    const row = rowOf(first.stdout, batch.id);
    assert.ok(row !== undefined, `no line for ${batch.id} in:\n${first.stdout}`);
    assert.deepEqual([row[0], row[1], row[3]], [batch.id, "anonymous", "/v1/chat/completions"]);
    assert.ok(["validating", "in_progress", "finalizing", "completed"].includes(row[2]!), `status ${row[2]}`);
    assert.match(row[4]!, /^[0-3]\/3 \(\d+%\)$/);
    assert.match(row[7]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(row[7], new Date(batch.created_at * 1000).toISOString().replace(/\.\d+Z$/, "Z"));

    const done = await listUntil(["batches", "list", "--url", gw.url], (r) => rowOf(r.stdout, batch.id)?.[2] === "completed", `${batch.id} to complete`);
    assert.deepEqual(rowOf(done.stdout, batch.id), [batch.id, "anonymous", "completed", "/v1/chat/completions", "3/3 (100%)", "3", "0", row[7]]);
  });

  it("prints the gateway's list with --json", async () => {
    const r = await cli(["batches", "list", "--url", gw.url, "--json"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    const list = JSON.parse(r.stdout) as { object: string; data: { id: string; tenant: string; status: string; x_flotilla: { lines: Record<string, number> } }[]; has_more: boolean };
    assert.equal(list.object, "list");
    assert.equal(list.has_more, false);
    assert.deepEqual(
      list.data.map((b) => [b.id, b.tenant, b.status]),
      [[batch.id, "anonymous", "completed"]],
    );
    assert.deepEqual(list.data[0]!.x_flotilla.lines, { pending: 0, running: 0, completed: 3, failed: 0, cancelled: 0, expired: 0 });
  });

  it("pages with --limit, saying how to get the next page", async () => {
    second = await client.batches.create({ input_file_id: batch.input_file_id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const page = await cli(["batches", "list", "--url", gw.url, "--limit", "1"]);
    assert.equal(page.exitCode, undefined, page.stderr);
    assert.ok(rowOf(page.stdout, second.id) !== undefined, page.stdout);
    assert.equal(rowOf(page.stdout, batch.id), undefined, "only the newest");
    assert.equal(page.stderr, `more: flotilla batches list --after ${second.id}\n`);
    const next = await cli(["batches", "list", "--url", gw.url, "--limit", "1", "--after", second.id]);
    assert.equal(next.exitCode, undefined, next.stderr);
    assert.ok(rowOf(next.stdout, batch.id) !== undefined, next.stdout);
    assert.equal(next.stderr, "");
  });

  it("refuses a --limit outside 1 to 100 before asking the gateway", async () => {
    for (const limit of ["0", "101", "ten", "2.5"]) {
      const r = await cli(["batches", "list", "--url", gw.url, "--limit", limit]);
      assert.ok(r.exitCode !== undefined && r.exitCode !== 0, `--limit ${limit}: exit code ${r.exitCode}`);
      assert.match(r.stderr, /--limit must be a whole number from 1 to 100/);
      assert.equal(r.stdout, "");
    }
  });

  it("says what to do when the admin token is missing or wrong", async () => {
    await assert.rejects(cli(["batches", "list", "--url", gw.url], null), /^Error: admin routes need Authorization: Bearer <admin token>; set FLOTILLA_ADMIN_TOKEN to the gateway's admin token$/);
    await assert.rejects(cli(["batches", "list", "--url", gw.url], "not-the-token"), /FLOTILLA_ADMIN_TOKEN is not the gateway's admin token/);
  });

  it("says so when no gateway answers at the URL", async () => {
    const url = await nobodyListening();
    await assert.rejects(cli(["batches", "list", "--url", url]), new RegExp(`^Error: cannot reach the gateway at ${url.replaceAll(".", "\\.")}: .*ECONNREFUSED`));
  });

  it("ends flotilla with exit status 1 and the reason on stderr when the gateway cannot be reached", async () => {
    const url = await nobodyListening();
    const r = spawnSync(process.execPath, [...CLI, "batches", "list", "--url", url], { encoding: "utf8" });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr.split("\n")[0], `flotilla: cannot reach the gateway at ${url}: connect ECONNREFUSED ${url.slice("http://".length)} (is it running? --url or FLOTILLA_URL names another)`);
    assert.equal(r.stdout, "");
  });
});
