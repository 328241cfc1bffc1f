import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually, gateQueued, totalActive } from "../helpers.js";
import { admin, sqliteBackend, startTenantGateway, TINY_MODEL, type TenantGateway } from "../metering/harness.js";

/**
 * Admission at the gateway over one real llama.cpp replica with one slot:
 * a long request holds the slot, others wait at the gateway's queue, and the
 * order they are served in (one at a time, so the order they finish in)
 * shows the policy: interactive before batch, weighted fair share between
 * tenants, deadlines and disconnects honoured while waiting.
 */
describe("admission: fair share, priorities and deadlines at the gateway", () => {
  let db: { url: string; drop(): Promise<void> };
  let gw: TenantGateway;
  const keys: Record<string, string> = {};

  before(async () => {
    db = await sqliteBackend.fresh();
    // A context long enough for the blocker to run for seconds.
    const config = { models: [{ name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, parallel: 1, context: 4096, max_queue: 16 }] }] };
    gw = await startTenantGateway(db.url, { config, gateway: { maxQueuedPerTenant: 6 } });
    for (const [name, spec] of Object.entries({ light: { weight: 1 }, heavy: { weight: 3 }, nightly: { priority: "batch" } })) {
      assert.equal((await admin(gw.url, "POST", "/admin/tenants", { name, ...spec })).status, 201);
      const key = await admin(gw.url, "POST", "/admin/keys", { tenant: name });
      keys[name] = key.json.key as string;
    }
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  const send = (tenant: string, opts: { maxTokens?: number; headers?: Record<string, string>; body?: Record<string, unknown>; signal?: AbortSignal } = {}): Promise<Response> =>
    fetch(`${gw.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys[tenant]}`, ...opts.headers },
      body: JSON.stringify({ model: "tiny", prompt: "queued work", max_tokens: opts.maxTokens ?? 4, temperature: 0, ...opts.body }),
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });

  /**
   * Occupies the only slot with an answer far longer than any test step
   * takes; calling the result hangs up on it, which frees the slot.
   */
  const block = async (): Promise<() => Promise<void>> => {
    const hangUp = new AbortController();
    const blocker = send("light", { maxTokens: 4_000, body: { prompt: "a long answer" }, signal: hangUp.signal }).catch(() => undefined);
    await eventually(() => totalActive(gw.fleet) === 1, "the blocker to run", 3_000);
    return async () => {
      hangUp.abort();
      await blocker;
    };
  };

  /** Sends one request and waits until it is queued, so arrival order is exact; `answer` is its response. */
  const enqueue = async (label: string, tenant: string, finished: string[], priority: "interactive" | "batch" = "interactive", headers: Record<string, string> = {}): Promise<{ answer: Promise<Response> }> => {
    const before = await gateQueued(gw.url, "tiny", priority);
    const res = send(tenant, { headers }).then((r) => {
      finished.push(label);
      return r;
    });
    await eventually(async () => (await gateQueued(gw.url, "tiny", priority)) === before + 1, `${label} to queue`);
    return { answer: res };
  };

  it("serves interactive requests before batch ones that arrived earlier (tenant class, header, service_tier flex)", async () => {
    const unblock = await block();
    const finished: string[] = [];
    const pending = [
      (await enqueue("nightly", "nightly", finished, "batch")).answer,
      (await enqueue("header", "light", finished, "batch", { "x-flotilla-priority": "batch" })).answer,
    ];
    // OpenAI's flex tier is batch here too.
    const flexBefore = await gateQueued(gw.url, "tiny", "batch");
    pending.push(send("light", { body: { service_tier: "flex" } }).then((r) => (finished.push("flex"), r)));
    await eventually(async () => (await gateQueued(gw.url, "tiny", "batch")) === flexBefore + 1, "flex to queue as batch");
    pending.push((await enqueue("interactive", "light", finished)).answer);
    await unblock();
    for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
    assert.equal(finished[0], "interactive", `order served: ${finished.join(", ")}`);
    assert.deepEqual(finished.slice(1), ["nightly", "header", "flex"], "batch in arrival order");
  });

  it("shares a saturated replica between tenants by weight, not by arrival order", async () => {
    const unblock = await block();
    const finished: string[] = [];
    const pending: Promise<Response>[] = [];
    // The light tenant (weight 1) queues four first; the heavy tenant (weight 3) four after.
    for (let i = 1; i <= 4; i++) pending.push((await enqueue(`light${i}`, "light", finished)).answer);
    for (let i = 1; i <= 4; i++) pending.push((await enqueue(`heavy${i}`, "heavy", finished)).answer);
    await unblock();
    for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
    // First come first served would run light1..light4 first; weighted fair
    // queuing gives the heavy tenant three of every four turns.
    const firstFour = finished.slice(0, 4);
    assert.ok(firstFour.filter((l) => l.startsWith("heavy")).length >= 3, `order served: ${finished.join(", ")}`);
    assert.ok(firstFour.some((l) => l.startsWith("light")), `the light tenant is not starved: ${finished.join(", ")}`);
  });

  it("a tenant past its own queue limit gets 429 with Retry-After while others still queue", async () => {
    const unblock = await block();
    const finished: string[] = [];
    const pending: Promise<Response>[] = [];
    for (let i = 0; i < 6; i++) pending.push((await enqueue(`light${i}`, "light", finished)).answer);
    const refused = await send("light");
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    const error = ((await refused.json()) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "overloaded");
    assert.match(error.message, /tenant/);
    pending.push((await enqueue("heavy", "heavy", finished)).answer);
    await unblock();
    for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
    const rows = await gw.store.ledger({ tenantId: "light" });
    assert.ok(rows.some((r) => r.status === "failed"), "the refused request has its ledger row");
  });

  it("a request whose deadline passes while it waits gets 504 and leaves the queue; one whose client leaves is dropped", async () => {
    const unblock = await block();
    const late = await send("heavy", { headers: { "x-flotilla-timeout-ms": "150" } });
    assert.equal(late.status, 504);
    assert.equal(((await late.json()) as { error: { code: string } }).error.code, "deadline_exceeded");
    assert.equal(await gateQueued(gw.url, "tiny"), 0);

    const leaving = new AbortController();
    const gone = send("heavy", { signal: leaving.signal }).catch((err: unknown) => err);
    await eventually(async () => (await gateQueued(gw.url, "tiny")) === 1, "the leaving request to queue");
    leaving.abort();
    await gone;
    await eventually(async () => (await gateQueued(gw.url, "tiny")) === 0, "the queue to forget it");
    await unblock();
    assert.equal((await send("heavy")).status, 200, "the slot was not leaked");
    await eventually(() => totalActive(gw.fleet) === 0, "the replica to go idle", 2_000);
    const statuses = (await gw.store.ledger({ tenantId: "heavy" })).map((r) => r.status);
    assert.ok(statuses.includes("deadline_exceeded") && statuses.includes("cancelled"), `ledger: ${statuses.join(", ")}`);
  });

  it("rejects an unknown priority with 400 naming the header", async () => {
    const res = await send("light", { headers: { "x-flotilla-priority": "urgent" } });
    assert.equal(res.status, 400);
    const error = ((await res.json()) as { error: { param: string } }).error;
    assert.equal(error.param, "x-flotilla-priority");
  });
});
