/**
 * POST /v1/embeddings through the official openai client and plain HTTP:
 * on the real local engine (string and list input, token ids, base64 and
 * float, dimensions), passed through a remote replica (a second gateway
 * used as an OpenAI-compatible upstream) with a failing replica beside it,
 * metered as one ledger row each and held to a tenant's budget; and the
 * sad paths, each a 400 naming the field.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { NUSD_PER_USD } from "../../src/store/types.js";
import { curl, CURL_MISSING, startGateway, tinyFleet, type RunningGateway } from "../helpers.js";
import { admin, post, sqliteBackend, startTenantGateway, type TenantGateway } from "../metering/harness.js";

type Embeddings = { data: { object: string; index: number; embedding: number[] | string }[]; usage: { prompt_tokens: number; total_tokens: number }; x_flotilla: Record<string, unknown> };

const norm = (v: readonly number[]): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const close = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < 1e-6);

describe("embeddings on the local engine, metered", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;
  let client: OpenAI;
  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  const embed = async (body: Record<string, unknown>, key?: string): Promise<{ status: number; json: Embeddings & { error?: { param: string | null; code: string; message: string } } }> => {
    const res = await post(gw.url, "/v1/embeddings", { model: "tiny", ...body }, key);
    return { status: res.status, json: (await res.json()) as never };
  };

  it("gives the openai client one unit vector per input, the same text the same vector, and one ledger row with its tokens", async () => {
    const texts = ["The quick brown fox.", "A slow green turtle.", "The quick brown fox."];
    const r = await client.embeddings.create({ model: "tiny", input: texts });
    assert.equal(r.object, "list");
    assert.deepEqual(r.data.map((d) => d.index), [0, 1, 2]);
    const [a, b, c] = r.data.map((d) => d.embedding);
    assert.ok(a!.length > 0 && b!.length === a!.length);
    for (const v of [a!, b!]) assert.ok(Math.abs(norm(v) - 1) < 1e-5, `unit length, got ${norm(v)}`);
    assert.ok(close(a!, c!), "the same text, the same vector");
    assert.ok(!close(a!, b!), "different texts, different vectors");
    assert.ok(r.usage.prompt_tokens > texts.length && r.usage.total_tokens === r.usage.prompt_tokens);
    const rows = (await gw.store.ledger({ tenantId: "anonymous" })).filter((row) => row.endpoint === "embeddings");
    assert.equal(rows.length, 1);
    assert.deepEqual([rows[0]!.status, rows[0]!.inputTokens, rows[0]!.outputTokens], ["ok", r.usage.prompt_tokens, 0]);
    assert.ok(rows[0]!.costNusd > 0, "priced at the replica's input rate");
  });

  it("sends floats or base64 float32 as asked, the same numbers either way; dimensions shortens and renormalises", async () => {
    const floats = await embed({ input: "Hello there", encoding_format: "float" });
    const b64 = await embed({ input: "Hello there", encoding_format: "base64" });
    assert.equal(floats.status, 200);
    const f = floats.json.data[0]!.embedding as number[];
    const bytes = Buffer.from(b64.json.data[0]!.embedding as string, "base64");
    const decoded = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
    assert.ok(close(f, decoded), "base64 is the float32 bytes, little-endian");
    const short = await embed({ input: "Hello there", encoding_format: "float", dimensions: 4 });
    const s = short.json.data[0]!.embedding as number[];
    assert.equal(s.length, 4);
    const head = f.slice(0, 4);
    assert.ok(close(s, head.map((x) => x / norm(head))), "the first four, at unit length");
    const tooMany = await embed({ input: "Hello there", dimensions: f.length + 1 });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.json.error?.param, "dimensions");
    assert.match(tooMany.json.error!.message, new RegExp(`have ${f.length} dimensions; ask for at most ${f.length}`));
  });

  it("answers curl: floats by default, and a 400 naming the field for a bad body", { skip: CURL_MISSING }, async () => {
    const out = JSON.parse(await curl(["-H", "content-type: application/json", "-d", '{"model":"tiny","input":["one","two"]}', `${gw.url}/v1/embeddings`])) as Embeddings;
    assert.equal(out.data.length, 2);
    assert.ok(Array.isArray(out.data[1]!.embedding) && Math.abs(norm(out.data[1]!.embedding) - 1) < 1e-5);
    const bad = await curl(["-w", "\n%{http_code}", "-H", "content-type: application/json", "-d", '{"model":"tiny","input":[]}', `${gw.url}/v1/embeddings`]);
    const [body, status] = bad.split("\n");
    assert.equal(status, "400");
    assert.equal((JSON.parse(body!) as { error: { param: string } }).error.param, "input");
  });

  it("reads token ids as given, and refuses one outside the vocabulary", async () => {
    const one = await embed({ input: [1, 2, 3, 4] });
    const many = await embed({ input: [[1, 2, 3, 4], [5, 6]] });
    assert.equal(one.status, 200);
    assert.ok(close(one.json.data[0]!.embedding as number[], (many.json.data[0]!.embedding as number[])), "the same ids, the same vector");
    const bad = await embed({ input: [1, 99_999_999] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error?.param, "input");
    assert.match(bad.json.error!.message, /outside this model's vocabulary/);
  });

  it("refuses bad bodies with a 400 naming the field, and writes no ledger row for them", async () => {
    const before = (await gw.store.ledger({ tenantId: "anonymous" })).length;
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ input: "" }, "input", /input/],
      [{ input: [] }, "input", /input/],
      [{ input: ["ok", 3] }, "input", /input/],
      [{ input: Array.from({ length: 2049 }, () => "x") }, "input", /input/],
      [{ input: "x", encoding_format: "int8" }, "encoding_format", /float, base64/],
      [{ input: "x", dimensions: 0 }, "dimensions", />= 1/],
      [{ input: "x", stream: true }, "stream", /stream/],
    ];
    for (const [body, param, message] of cases) {
      const r = await embed(body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.ok(r.json.error?.param?.startsWith(param), JSON.stringify(r.json.error));
      assert.match(r.json.error!.message, message);
    }
    const unknown = await embed({ input: "x", model: "nope" });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error?.code, "model_not_found");
    assert.equal((await gw.store.ledger({ tenantId: "anonymous" })).length, before, "none was admitted");
  });

  it("an input longer than the context window is a 400 naming input, and is not billed", async () => {
    const r = await embed({ input: ["short", "word ".repeat(1500)] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error?.code, "context_length_exceeded");
    assert.equal(r.json.error?.param, "input");
    const last = (await gw.store.ledger({ tenantId: "anonymous" })).at(-1)!;
    assert.equal(last.costNusd, 0);
  });

  it("holds a tenant to its budget: of 40 at once, those the budget covers are embedded, the rest get 429, and the ledger sums to the budget within one request", async () => {
    assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name: "probe" })).status, 201);
    const probeKey = (await admin(gw.url, "POST", "/admin/keys", { tenant: "probe" })).json.key as string;
    assert.equal((await embed({ input: "budget line 00" }, probeKey)).status, 200);
    const w = (await gw.store.ledger({ tenantId: "probe" }))[0]!.reservedNusd;
    const budgetNusd = 5 * w + Math.floor(w / 2);
    assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name: "budgeted", monthly_budget_usd: budgetNusd / NUSD_PER_USD })).status, 201);
    const key = (await admin(gw.url, "POST", "/admin/keys", { tenant: "budgeted" })).json.key as string;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => embed({ input: `budget line ${String(i).padStart(2, "0")}` }, key)));
    const ok = results.filter((r) => r.status === 200);
    assert.ok(ok.length >= 5, `${ok.length} embedded`);
    assert.ok(results.filter((r) => r.status !== 200).every((r) => r.status === 429 && r.json.error?.param === "monthly_budget"));
    const rows = await gw.store.ledger({ tenantId: "budgeted" });
    assert.equal(rows.length, ok.length, "one row per admitted request");
    const spent = rows.reduce((s, r) => s + r.costNusd, 0);
    assert.ok(spent <= budgetNusd && spent > budgetNusd - w, `spent ${spent} of ${budgetNusd}, one request reserving ${w}`);
    assert.equal(ok.reduce((s, r) => s + Math.round((r.json.x_flotilla.cost_usd as number) * NUSD_PER_USD), 0), spent, "what the answers said is what the ledger holds");
    const { state } = (await gw.store.getTenant("budgeted"))!;
    assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, spent], "nothing left reserved");
  });
});

describe("embeddings on remote replicas", () => {
  let upstream: RunningGateway;
  let broken: Server;
  let front: RunningGateway;
  let brokenCalls = 0;
  before(async () => {
    upstream = await startGateway(tinyFleet());
    // Ready by its /health, broken at embedding: every request it takes must go on to the good replica.
    broken = createServer((req, res) => {
      if (req.url === "/health") return res.end("ok");
      brokenCalls++;
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"out of memory"}}');
    });
    await new Promise<void>((resolve) => broken.listen(0, "127.0.0.1", resolve));
    const brokenUrl = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
    front = await startGateway({
      models: [
        {
          name: "remote",
          replicas: [
            { engine: "openai", url: brokenUrl, upstream_model: "tiny", metrics_interval_ms: 0 },
            { engine: "openai", url: upstream.url, upstream_model: "tiny", metrics_interval_ms: 0 },
          ],
        },
      ],
    });
  });
  after(async () => {
    await front?.close();
    await upstream?.close();
    broken?.close();
  });

  it("passes the request through, answers as the upstream did, and a replica that fails is replaced", async () => {
    const direct = await new OpenAI({ baseURL: `${upstream.url}/v1`, apiKey: "unused", maxRetries: 0 }).embeddings.create({ model: "tiny", input: ["alpha", "beta"] });
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "unused", maxRetries: 0 });
    for (let i = 0; i < 6; i++) {
      const r = await client.embeddings.create({ model: "remote", input: ["alpha", "beta"] });
      assert.equal(r.model, "remote");
      assert.ok(r.data.every((d, j) => close(d.embedding, direct.data[j]!.embedding)), "the upstream's vectors");
      assert.equal(r.usage.prompt_tokens, direct.usage.prompt_tokens);
      assert.equal((r as unknown as Embeddings).x_flotilla.replica, "remote/1");
    }
    assert.ok(brokenCalls >= 1, "the broken replica was tried, and its failures retried elsewhere");
  });
});
