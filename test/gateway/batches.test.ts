/**
 * The Batch API through the official openai client: upload, create, follow,
 * read the output and error files, cancel; each line one ledger row at the
 * batch discount; tenants see only their own files and batches.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI, { toFile, type APIError } from "openai";
import { CURL_MISSING, curl } from "../helpers.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { rateBookFromConfig } from "../../src/metering/config.js";
import { meter } from "../../src/metering/pricing.js";
import { admin, backends, sqliteBackend, startTenantGateway, tinyConfig, type TenantGateway } from "../metering/harness.js";

interface Line {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

function jsonl(lines: readonly unknown[]): string {
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}

function chatLine(customId: string, content: string, maxTokens = 4, model = "tiny"): unknown {
  return { custom_id: customId, method: "POST", url: "/v1/chat/completions", body: { model, messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0 } };
}

/** Polls `read` until it gives a value (as a client polls a batch), for up to `ms`. */
async function until<T>(read: () => Promise<T | undefined>, what: string, ms = 60_000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await read();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function finished(client: OpenAI, id: string): Promise<OpenAI.Batches.Batch> {
  return until(async () => {
    const b = await client.batches.retrieve(id);
    return ["completed", "cancelled", "expired", "failed"].includes(b.status) ? b : undefined;
  }, `batch ${id} to finish`);
}

async function linesOf(client: OpenAI, fileId: string | null | undefined): Promise<Line[]> {
  if (fileId === null || fileId === undefined) return [];
  const text = await (await client.files.content(fileId)).text();
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
}

for (const backend of backends) describe(`the Batch API, through the openai client (${backend.name})`, { skip: backend.skip }, () => {
  let db: Awaited<ReturnType<typeof backend.fresh>>;
  let gw: TenantGateway;
  let client: OpenAI;
  before(async () => {
    db = await backend.fresh();
    gw = await startTenantGateway(db.url, { batches: { headroomSlots: 0 } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  test("a batch runs every line once, writes the output file, and bills each line at the batch discount", async () => {
    const input = await client.files.create({ file: await toFile(Buffer.from(jsonl([chatLine("a", "hello"), chatLine("b", "one two"), chatLine("c", "three")])), "in.jsonl"), purpose: "batch" });
    assert.equal(input.purpose, "batch");
    assert.equal(input.filename, "in.jsonl");
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { job: "t1" } });
    assert.equal(batch.status, "in_progress");
    assert.deepEqual(batch.metadata, { job: "t1" });
    const done = await finished(client, batch.id);
    assert.equal(done.status, "completed");
    assert.deepEqual(done.request_counts, { total: 3, completed: 3, failed: 0 });
    assert.equal(done.error_file_id, null);
    const out = await linesOf(client, done.output_file_id);
    assert.deepEqual(out.map((l) => l.custom_id), ["a", "b", "c"]);
    for (const l of out) {
      assert.equal(l.response?.status_code, 200);
      assert.equal((l.response?.body as { object: string }).object, "chat.completion");
      assert.equal(l.error, null);
    }
    const rows = (await gw.store.ledger()).filter((r) => r.requestId.startsWith(batch.id));
    assert.equal(rows.length, 3);
    assert.ok(rows.every((r) => r.status === "ok"));
    // The discount: each line costs half of what its tokens cost at the replica's rate; an interactive request pays the whole.
    const rate = (await rateBookFromConfig(parseFleetConfig(tinyConfig({ hardware: "h100" })), process.cwd())).replica("tiny/0")!;
    const full = (r: { inputTokens: number; cachedTokens: number; outputTokens: number }): number => meter(rate, { promptTokens: r.inputTokens, cachedTokens: r.cachedTokens, completionTokens: r.outputTokens }, 0).costNusd;
    for (const r of rows) assert.equal(r.costNusd, Math.round(full(r) / 2), `line ${r.requestId}`);
    assert.ok(full(rows[0]!) > 0);
    await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 4, temperature: 0 });
    // Its row is settled just after the answer is sent.
    const direct = await until(async () => (await gw.store.ledger({ status: "ok" })).find((r) => !r.requestId.startsWith("batch_") && r.endpoint === "chat"), "the direct request's settled row");
    assert.equal(direct.costNusd, full(direct));
    const listed = await client.batches.list();
    assert.ok(listed.data.some((b) => b.id === batch.id));
  });

  test("lines the fleet refuses go to the error file with their status; the rest complete", async () => {
    const lines = [chatLine("ok", "hi"), chatLine("nomodel", "hi", 4, "no-such-model"), { custom_id: "bad", method: "POST", url: "/v1/chat/completions", body: { model: "tiny" } }];
    const input = await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), "mixed.jsonl"), purpose: "batch" });
    const done = await finished(client, (await client.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).id);
    assert.deepEqual(done.request_counts, { total: 3, completed: 1, failed: 2 });
    const errors = await linesOf(client, done.error_file_id);
    const byId = new Map(errors.map((l) => [l.custom_id, l]));
    assert.equal(byId.get("nomodel")?.response?.status_code, 404);
    assert.equal(byId.get("bad")?.response?.status_code, 400);
    assert.match(JSON.stringify(byId.get("bad")?.response?.body), /messages is required/);
    assert.deepEqual((await linesOf(client, done.output_file_id)).map((l) => l.custom_id), ["ok"]);
  });

  test("a malformed input file is refused at upload, naming the line, and nothing is kept", async () => {
    const inputs = async (): Promise<number> => (await client.files.list({ purpose: "batch" })).data.length;
    const before = await inputs();
    const bad = jsonl([chatLine("x", "hi")]) + "{not json\n";
    await assert.rejects(client.files.create({ file: await toFile(Buffer.from(bad), "bad.jsonl"), purpose: "batch" }), (err: APIError) => {
      assert.equal(err.status, 400);
      assert.match(err.message, /line 2 is not valid JSON/);
      return true;
    });
    const dup = jsonl([chatLine("x", "hi"), chatLine("x", "again")]);
    await assert.rejects(client.files.create({ file: await toFile(Buffer.from(dup), "dup.jsonl"), purpose: "batch" }), /line 2: custom_id "x" is used by an earlier line/);
    await assert.rejects(client.files.create({ file: await toFile(Buffer.from(jsonl([chatLine("y", "hi")])), "p.jsonl"), purpose: "fine-tune" }), /purpose must be "batch"/);
    assert.equal(await inputs(), before);
  });

  test("a batch's endpoint must be its lines' endpoint, and an unknown file is a 404", async () => {
    const input = await client.files.create({ file: await toFile(Buffer.from(jsonl([chatLine("a", "hi")])), "in.jsonl"), purpose: "batch" });
    await assert.rejects(client.batches.create({ input_file_id: input.id, endpoint: "/v1/embeddings", completion_window: "24h" }), /call \/v1\/chat\/completions, not \/v1\/embeddings/);
    await assert.rejects(client.batches.create({ input_file_id: "file-nope", endpoint: "/v1/chat/completions", completion_window: "24h" }), (err: APIError) => err.status === 404);
    await assert.rejects(client.batches.retrieve("batch_nope"), (err: APIError) => err.status === 404);
    const deleted = await client.files.delete(input.id);
    assert.equal(deleted.deleted, true);
    await assert.rejects(client.files.retrieve(input.id), (err: APIError) => err.status === 404);
  });

  test("a batch cancelled mid-run stops: what completed stays, the rest is cancelled, nothing is left running", async () => {
    const lines = Array.from({ length: 24 }, (_, i) => chatLine(`l${i}`, `count ${i}`, 48));
    const input = await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), "long.jsonl"), purpose: "batch" });
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await until(async () => ((await client.batches.retrieve(batch.id)).request_counts!.completed >= 1 ? true : undefined), "a first completed line");
    const cancelling = await client.batches.cancel(batch.id);
    assert.ok(["cancelling", "cancelled"].includes(cancelling.status));
    const done = await finished(client, batch.id);
    assert.equal(done.status, "cancelled");
    const out = await linesOf(client, done.output_file_id);
    const errors = await linesOf(client, done.error_file_id);
    assert.ok(errors.length > 0, "some lines were cancelled");
    assert.equal(out.length + errors.length, 24);
    assert.ok(errors.every((l) => l.error?.code === "batch_cancelled" || l.response !== null));
    const rows = (await gw.store.ledger()).filter((r) => r.requestId.startsWith(batch.id));
    assert.equal(rows.filter((r) => r.status === "ok").length, out.length, "one charged row per completed line");
    assert.ok(rows.every((r) => r.status !== "running"));
    assert.ok(rows.filter((r) => r.status !== "ok").every((r) => r.costNusd === 0));
  });

  test("another tenant sees none of a tenant's files or batches, and one out of budget holds up nobody else's", async () => {
    const a = await admin(gw.url, "POST", "/admin/tenants", { name: "team-a" });
    assert.equal(a.status, 201);
    await admin(gw.url, "POST", "/admin/tenants", { name: "team-b" });
    const keyA = String((await admin(gw.url, "POST", "/admin/keys", { tenant: "team-a" })).json.key);
    const keyB = String((await admin(gw.url, "POST", "/admin/keys", { tenant: "team-b" })).json.key);
    const ca = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: keyA, maxRetries: 0 });
    const cb = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: keyB, maxRetries: 0 });
    const input = await ca.files.create({ file: await toFile(Buffer.from(jsonl([chatLine("a", "hi")])), "a.jsonl"), purpose: "batch" });
    const batch = await ca.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await assert.rejects(cb.files.retrieve(input.id), (err: APIError) => err.status === 404);
    await assert.rejects(cb.files.content(input.id), (err: APIError) => err.status === 404);
    await assert.rejects(cb.files.delete(input.id), (err: APIError) => err.status === 404);
    await assert.rejects(cb.batches.retrieve(batch.id), (err: APIError) => err.status === 404);
    await assert.rejects(cb.batches.cancel(batch.id), (err: APIError) => err.status === 404);
    await assert.rejects(cb.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" }), (err: APIError) => err.status === 404);
    assert.equal((await cb.batches.list()).data.length, 0);
    // A tenant out of budget: its batch waits (its lines are refused 429 for now) while the others' run.
    await admin(gw.url, "POST", "/admin/tenants", { name: "broke", monthly_budget_usd: 0 });
    const cx = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: String((await admin(gw.url, "POST", "/admin/keys", { tenant: "broke" })).json.key), maxRetries: 0 });
    const waiting = await cx.batches.create({ input_file_id: (await cx.files.create({ file: await toFile(Buffer.from(jsonl([chatLine("w", "hi")])), "w.jsonl"), purpose: "batch" })).id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const behind = await ca.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    assert.equal((await finished(ca, behind.id)).status, "completed", "a batch created after the waiting one completes");
    const stuck = await cx.batches.retrieve(waiting.id);
    assert.deepEqual([stuck.status, stuck.request_counts?.completed, stuck.request_counts?.failed], ["in_progress", 0, 0]);
    assert.equal((await gw.store.ledger({ tenantId: "broke" })).length, 0, "a refused admission writes no row");
    await cx.batches.cancel(waiting.id);
    assert.equal((await finished(cx, waiting.id)).status, "cancelled");
    const done = await finished(ca, batch.id);
    assert.equal(done.status, "completed");
    const rows = (await gw.store.ledger({ tenantId: "team-a" })).filter((r) => r.requestId.startsWith(batch.id));
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.status, "ok");
    assert.equal(rows[0]!.keyId !== null, true);
  });
});

describe("the Files API through curl", { skip: CURL_MISSING }, () => {
  let db: Awaited<ReturnType<typeof sqliteBackend.fresh>>;
  let gw: TenantGateway;
  let dir: string;
  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { batches: { headroomSlots: 0 } });
    dir = mkdtempSync(join(tmpdir(), "flotilla-batch-curl-"));
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a file past the 4 MiB request limit uploads as it streams, reads back byte for byte, and deletes", async () => {
    const pad = "x".repeat(300);
    const text = jsonl(Array.from({ length: 16_000 }, (_, i) => chatLine(`c${i}`, `${i} ${pad}`)));
    assert.ok(Buffer.byteLength(text) > 4 * 1024 * 1024);
    const path = join(dir, "big.jsonl");
    writeFileSync(path, text);
    const file = JSON.parse(await curl(["-F", "purpose=batch", "-F", `file=@${path}`, `${gw.url}/v1/files`])) as { id: string; bytes: number; filename: string };
    assert.deepEqual([file.bytes, file.filename], [Buffer.byteLength(text), "big.jsonl"]);
    assert.equal(await curl([`${gw.url}/v1/files/${file.id}/content`]), text);
    assert.deepEqual(JSON.parse(await curl(["-X", "DELETE", `${gw.url}/v1/files/${file.id}`])), { id: file.id, object: "file", deleted: true });
    assert.match(await curl(["-w", "%{http_code}", `${gw.url}/v1/files/${file.id}`]), /404$/);
  });

  test("a file of more than 50,000 requests is refused, and so is a non-multipart upload", async () => {
    const path = join(dir, "many.jsonl");
    writeFileSync(path, jsonl(Array.from({ length: 50_001 }, (_, i) => ({ custom_id: `${i}`, method: "POST", url: "/v1/embeddings", body: { model: "tiny", input: "a" } }))));
    const refused = await curl(["-w", "\n%{http_code}", "-F", "purpose=batch", "-F", `file=@${path}`, `${gw.url}/v1/files`]);
    assert.match(refused, /more than 50000 requests[\s\S]*\n400$/);
    const plain = await curl(["-w", "\n%{http_code}", "-H", "content-type: application/json", "-d", "{}", `${gw.url}/v1/files`]);
    assert.match(plain, /multipart\/form-data[\s\S]*\n400$/);
  });

  test("a batch created, followed and read through curl", async () => {
    const path = join(dir, "small.jsonl");
    writeFileSync(path, jsonl([chatLine("only", "hi")]));
    const file = JSON.parse(await curl(["-F", "purpose=batch", "-F", `file=@${path}`, `${gw.url}/v1/files`])) as { id: string };
    const created = JSON.parse(await curl(["-H", "content-type: application/json", "-d", JSON.stringify({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }), `${gw.url}/v1/batches`])) as { id: string };
    const done = await until(async () => {
      const b = JSON.parse(await curl([`${gw.url}/v1/batches/${created.id}`])) as { status: string; output_file_id: string };
      return b.status === "completed" ? b : undefined;
    }, "the batch to complete");
    const [line] = (await curl([`${gw.url}/v1/files/${done.output_file_id}/content`])).split("\n");
    assert.equal((JSON.parse(line!) as Line).response?.status_code, 200);
  });
});
