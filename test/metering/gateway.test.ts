import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ensureDefaultModel } from "../../src/gguf/default-model.js";
import { NUSD_PER_USD } from "../../src/store/types.js";
import { afterStreamed, eventually, startGateway, totalActive, type RunningGateway } from "../helpers.js";
import { admin, post, readStream, sqliteBackend, startTenantGateway, streamOnce, type TenantGateway } from "./harness.js";

const ADMIN = "test-admin-token-123";

describe("tenancy at the gateway (SQLite)", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;

  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url);
  });

  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  const createTenant = async (name: string, limits: Record<string, unknown> = {}): Promise<void> => {
    const r = await admin(gw.url, "POST", "/admin/tenants", { name, ...limits });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  };
  const createKey = async (tenant: string): Promise<string> => {
    const r = await admin(gw.url, "POST", "/admin/keys", { tenant });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json.key as string;
  };

  test("with no key in existence, loopback callers need none; they are recorded and priced", async () => {
    const res = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "Hello", max_tokens: 5, temperature: 0 }, "unused");
    assert.equal(res.status, 200);
    const body = (await res.json()) as { usage: { completion_tokens: number }; x_flotilla: Record<string, unknown> };
    assert.equal(body.x_flotilla.hardware, "h100");
    assert.ok((body.x_flotilla.energy_j as number) > 0);
    assert.ok((body.x_flotilla.cost_usd as number) > 0);
    assert.equal(body.x_flotilla.replica, "tiny/0");
    const rows = await gw.store.ledger({ tenantId: "anonymous" });
    assert.equal(rows.length, 1);
    const [row] = rows;
    assert.equal(row!.status, "ok");
    assert.equal(row!.outputTokens, body.usage.completion_tokens);
    assert.equal(row!.costNusd / NUSD_PER_USD, body.x_flotilla.cost_usd);
    assert.equal(row!.hardware, "h100");
    assert.ok(row!.deviceSeconds > 0);
  });

  test("auth sad paths: missing key, malformed header, unknown and revoked keys get 401 in OpenAI's shape", async () => {
    await createTenant("acme");
    const key = await createKey("acme");
    assert.match(key, /^flt-[A-Za-z0-9_-]{43}$/);
    const call = (headers: Record<string, string>) =>
      fetch(`${gw.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }) });
    for (const [what, headers] of [
      ["missing", {}],
      ["malformed", { authorization: "Basic dXNlcjpwYXNz" }],
      ["empty bearer", { authorization: "Bearer" }],
      ["unknown key", { authorization: `Bearer flt-${"A".repeat(43)}` }],
      ["not a key", { authorization: "Bearer unused" }],
    ] as const) {
      const res = await call(headers);
      assert.equal(res.status, 401, what);
      const { error } = (await res.json()) as { error: Record<string, unknown> };
      assert.equal(error.type, "authentication_error", what);
      assert.equal(error.code, "unauthorized", what);
      assert.equal(typeof error.message, "string");
    }
    // GET /v1/models is a /v1 route too.
    assert.equal((await fetch(`${gw.url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
    assert.equal((await call({ authorization: `Bearer ${key}` })).status, 200);
    assert.equal((await call({ authorization: `bearer   ${key}` })).status, 200, "the scheme is case-insensitive");

    const { json: keys } = await admin(gw.url, "GET", "/admin/keys?tenant=acme");
    const id = (keys.data as { id: string }[])[0]!.id;
    assert.ok(!JSON.stringify(keys).includes(key), "listings never show the key");
    assert.equal((await admin(gw.url, "DELETE", `/admin/keys/${id}`)).status, 200);
    const revoked = await call({ authorization: `Bearer ${key}` });
    assert.equal(revoked.status, 401, "revocation takes effect at once");
    assert.match(((await revoked.json()) as { error: { message: string } }).error.message, /revoked/);
    assert.equal((await admin(gw.url, "DELETE", `/admin/keys/${id}`)).status, 404);
  });

  test("a tenant's key is refused on admin routes; deleting a tenant invalidates its keys", async () => {
    await createTenant("beta");
    const key = await createKey("beta");
    // Fleet routes too (drain, list): loopback alone does not make a tenant an operator.
    for (const [method, path] of [["GET", "/admin/tenants"], ["POST", "/admin/keys"], ["GET", "/admin/usage"], ["DELETE", "/admin/tenants/beta"], ["GET", "/admin/replicas"], ["POST", "/admin/drain"]] as const) {
      const r = await admin(gw.url, method, path, method === "POST" ? { tenant: "beta" } : undefined, key);
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.equal((r.json.error as { code: string }).code, "admin_forbidden");
    }
    assert.equal((await streamOnce(gw.url, key, "x", 2)).status, 200);
    assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name: "beta" })).status, 400, "names are unique");
    assert.equal((await admin(gw.url, "POST", "/admin/keys", { tenant: "nobody" })).status, 400);
    assert.equal((await admin(gw.url, "DELETE", "/admin/tenants/beta")).status, 200);
    assert.equal((await streamOnce(gw.url, key, "x", 2)).status, 401);
  });

  test("429 names the limit and when it resets: requests/minute, concurrency, tokens/minute", async () => {
    await createTenant("rpm", { requests_per_minute: 2 });
    const rk = await createKey("rpm");
    assert.equal((await streamOnce(gw.url, rk, "a", 2)).status, 200);
    assert.equal((await streamOnce(gw.url, rk, "b", 2)).status, 200);
    const res = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "c", max_tokens: 2 }, rk);
    assert.equal(res.status, 429);
    const retryAfter = Number(res.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 30, `retry-after ${retryAfter}`);
    const { error } = (await res.json()) as { error: { code: string; type: string; param: string; message: string } };
    assert.equal(error.code, "quota_exceeded");
    assert.equal(error.type, "rate_limit_error");
    assert.equal(error.param, "requests_per_minute");
    assert.match(error.message, /requests_per_minute limit \(2\); it resets in \d+ s \(at \d{4}-/);

    await createTenant("conc", { max_concurrent: 1 });
    const ck = await createKey("conc");
    const principal = await gw.tenancy.authenticate(`Bearer ${ck}`);
    // Hold the one slot, as a long request would.
    const held = await gw.tenancy.admit({ requestId: "held", principal, model: "tiny", endpoint: "chat", stream: true, maxTokens: 10 });
    const busy = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "x", max_tokens: 2 }, ck);
    assert.equal(busy.status, 429);
    assert.equal(((await busy.json()) as { error: { param: string } }).error.param, "max_concurrent");
    await held.settle({ status: "cancelled", usage: undefined, replica: undefined, attempts: 0, continuations: 0, durationMs: 1 });
    assert.equal((await streamOnce(gw.url, ck, "x", 2)).status, 200);

    await createTenant("tpm", { tokens_per_minute: 50 });
    const tk = await createKey("tpm");
    assert.equal((await streamOnce(gw.url, tk, "x", 30)).status, 200);
    const over = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "x", max_tokens: 30 }, tk);
    assert.equal(over.status, 429);
    assert.equal(((await over.json()) as { error: { param: string } }).error.param, "tokens_per_minute");
  });

  test("a budgeted tenant must bound its output: chat without max_tokens is a 400", async () => {
    await createTenant("bounded", { monthly_budget_usd: 1 });
    const key = await createKey("bounded");
    const res = await post(gw.url, "/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: "hi" }] }, key);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { param: string } }).error.param, "max_completion_tokens");
  });

  test("a stream the client cancels mid-way is recorded once, as cancelled, with the tokens it streamed", async () => {
    await createTenant("cancel", { monthly_budget_usd: 1 });
    const key = await createKey("cancel");
    const abort = new AbortController();
    const res = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "tell me a long story", max_tokens: 900, stream: true }, key, abort.signal);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let seen = "";
    while ((seen.match(/"text"/g)?.length ?? 0) < 5) seen += new TextDecoder().decode((await reader.read()).value);
    abort.abort();
    await reader.cancel().catch(() => {});
    let rows = await gw.store.ledger({ tenantId: "cancel" });
    await eventually(async () => {
      rows = await gw.store.ledger({ tenantId: "cancel" });
      return rows[0]?.status !== "running";
    }, "the cancelled row to settle", 5_000);
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.status, "cancelled");
    assert.ok(row.outputTokens >= 5 && row.outputTokens < 900, `output ${row.outputTokens}`);
    assert.ok(row.costNusd > 0 && row.costNusd <= row.reservedNusd);
    const { state } = (await gw.store.getTenant("cancel"))!;
    assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, row.costNusd]);
  });

  test("GET /v1/usage shows a tenant its own usage; /admin/usage shows all; flotilla's grouping is validated", async () => {
    await createTenant("u1");
    await createTenant("u2");
    const k1 = await createKey("u1");
    const k2 = await createKey("u2");
    for (let i = 0; i < 3; i++) assert.equal((await streamOnce(gw.url, k1, `q${i}`, 3)).status, 200);
    assert.equal((await streamOnce(gw.url, k2, "q", 3)).status, 200);
    const mine = (await (await fetch(`${gw.url}/v1/usage?group_by=model,status`, { headers: { authorization: `Bearer ${k1}` } })).json()) as {
      tenant: string;
      data: Record<string, unknown>[];
      total: Record<string, number>;
    };
    assert.equal(mine.tenant, "u1");
    assert.deepEqual(mine.data.map((r) => [r.model, r.status, r.requests, r.output_tokens]), [["tiny", "ok", 3, 9]]);
    assert.ok(mine.total.cost_usd! > 0 && mine.total.energy_j! > 0 && mine.total.device_seconds! > 0);
    const bad = await fetch(`${gw.url}/v1/usage?group_by=colour`, { headers: { authorization: `Bearer ${k1}` } });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { param: string } }).error.param, "group_by");
    const noKey = await fetch(`${gw.url}/v1/usage`);
    assert.equal(noKey.status, 401);
    const all = await admin(gw.url, "GET", "/admin/usage?group_by=tenant");
    const tenants = (all.json.data as { tenant: string }[]).map((r) => r.tenant);
    assert.ok(tenants.includes("u1") && tenants.includes("u2") && tenants.includes("anonymous"));
    const one = await admin(gw.url, "GET", `/admin/usage?tenant=u2&from=${new Date(Date.now() - 60_000).toISOString()}`);
    assert.equal((one.json.total as { requests: number }).requests, 1);
  });

  test("200 parallel streams against a budget for N: exactly N succeed, the rest get 429, the ledger sums to the budget within one request", async () => {
    const n = 25;
    const maxTokens = 8;
    // One request's worst case, as admission reserves it (same prompt length, same max_tokens).
    await createTenant("calibration");
    const ck = await createKey("calibration");
    assert.equal((await streamOnce(gw.url, ck, "request 000", maxTokens)).status, 200);
    const w = (await gw.store.ledger({ tenantId: "calibration" }))[0]!.reservedNusd;
    assert.ok(w > 0);
    const budgetNusd = n * w + Math.floor(w / 2);
    await createTenant("budget", { monthly_budget_usd: budgetNusd / NUSD_PER_USD });
    const key = await createKey("budget");
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => streamOnce(gw.url, key, `request ${String(i).padStart(3, "0")}`, maxTokens)));
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    assert.equal(ok.length, n);
    assert.equal(refused.length, 200 - n);
    assert.ok(refused.every((r) => r.error?.param === "monthly_budget"));
    const rows = await gw.store.ledger({ tenantId: "budget" });
    assert.equal(rows.length, n, "one row per admitted request");
    assert.equal(new Set(rows.map((r) => r.id)).size, n);
    assert.ok(rows.every((r) => r.status === "ok" && r.outputTokens === maxTokens));
    const spent = rows.reduce((s, r) => s + r.costNusd, 0);
    if (process.env.FLOTILLA_TEST_DEBUG) console.log({ w, budgetNusd, spent, costs: rows.map((r) => r.costNusd), cached: rows.map((r) => r.cachedTokens) });
    assert.ok(spent <= budgetNusd, `spent ${spent} > budget ${budgetNusd}`);
    assert.ok(spent > budgetNusd - w, `spent ${spent} is more than one request (${w}) under the budget ${budgetNusd}`);
    const priced = ok.reduce((s, r) => s + Math.round((r.x!.cost_usd as number) * NUSD_PER_USD), 0);
    assert.equal(priced, spent, "what the responses said is what the ledger holds");
    const { state } = (await gw.store.getTenant("budget"))!;
    assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, spent]);
  });
});

describe("a gateway on a non-loopback address, with an admin token", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;

  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { adminToken: ADMIN, tenancy: { requireKeys: true } });
  });

  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  test("requires a key before any exists, and admin routes need the admin token, never a tenant's key", async () => {
    const res = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 2 });
    assert.equal(res.status, 401);
    assert.equal((await admin(gw.url, "GET", "/admin/tenants")).status, 401);
    assert.equal((await admin(gw.url, "GET", "/admin/tenants", undefined, "wrong")).status, 401);
    assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name: "t" }, ADMIN)).status, 201);
    const created = await admin(gw.url, "POST", "/admin/keys", { tenant: "t", name: "ci" }, ADMIN);
    const key = created.json.key as string;
    assert.equal((await admin(gw.url, "GET", "/admin/tenants", undefined, key)).status, 403);
    assert.equal((await admin(gw.url, "GET", "/admin/replicas", undefined, key)).status, 403, "the fleet's admin routes refuse it too");
    const ok = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 2, stream: false }, key);
    assert.equal(ok.status, 200);
    const { events } = await readStream(await post(gw.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 2, stream: true, stream_options: { include_usage: true } }, key));
    const x = events.at(-1)!.x_flotilla as Record<string, unknown>;
    assert.ok((x.cost_usd as number) > 0 && (x.energy_j as number) > 0 && x.hardware === "h100");
  });
});

describe("a mid-stream failover is one ledger row", () => {
  let home: string;
  let db: { url: string; drop(): Promise<void> };
  let upstreams: RunningGateway[];
  let front: TenantGateway;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), "flotilla-ledger-failover-"));
    const modelPath = (await ensureDefaultModel(home)).path;
    const fleet = { models: [{ name: "tiny", replicas: [{ engine: "local", path: modelPath, parallel: 2, context: 2048 }] }] };
    upstreams = await Promise.all([startGateway(fleet), startGateway(fleet)]);
    db = await sqliteBackend.fresh();
    front = await startTenantGateway(db.url, {
      config: { models: [{ name: "m", replicas: upstreams.map((u) => ({ engine: "openai", url: u.url, upstream_model: "tiny", hardware: "h100", spec: "llama-3.1-8b" })) }] },
    });
  });

  after(async () => {
    await front?.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await db?.drop();
    await rm(home, { recursive: true, force: true });
  });

  test("the replica that finished is recorded, output is counted once, the bill stays within the reservation", async () => {
    const key = (await admin(front.url, "POST", "/admin/keys", { tenant: (await admin(front.url, "POST", "/admin/tenants", { name: "f", monthly_budget_usd: 1 })).json.id })).json.key as string;
    const pending = (async () => {
      const res = await post(front.url, "/v1/completions", { model: "m", prompt: "Once upon a time", max_tokens: 400, temperature: 0, stream: true, stream_options: { include_usage: true } }, key);
      return readStream(res);
    })();
    await eventually(() => upstreams.some((u) => totalActive(u.fleet) > 0), "an upstream to be generating", 5_000);
    const busy = upstreams.find((u) => totalActive(u.fleet) > 0)!;
    await afterStreamed(busy.url, 20); // mid-answer: the other upstream resumes it
    busy.app.server.closeAllConnections();
    const { events, done } = await pending;
    assert.ok(done);
    const last = events.at(-1)! as { usage: { completion_tokens: number; prompt_tokens: number }; x_flotilla: Record<string, number | string> };
    assert.equal(last.x_flotilla.continuations, 1);
    const rows = await front.store.ledger({ tenantId: "f" });
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.deepEqual([row.status, row.attempts, row.continuations, row.replica], ["ok", 2, 1, last.x_flotilla.replica]);
    assert.equal(row.outputTokens, last.usage.completion_tokens);
    assert.equal(row.inputTokens, last.usage.prompt_tokens, "the replayed text was the finishing replica's input");
    assert.ok(row.costNusd > 0 && row.costNusd <= row.reservedNusd);
    assert.equal(row.costNusd / NUSD_PER_USD, last.x_flotilla.cost_usd);
    const { state } = (await front.store.getTenant("f"))!;
    assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, row.costNusd]);
  });
});
