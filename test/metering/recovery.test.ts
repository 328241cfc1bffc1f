import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { openStoreTenancy, type StoreTenancy } from "../../src/metering/store-tenancy.js";
import { openStore, type Store } from "../../src/store/index.js";
import { sqliteBackend } from "./harness.js";

const ok = { status: "ok" as const, usage: { promptTokens: 3, completionTokens: 5, cachedTokens: 0 }, replica: "m/0", attempts: 1, continuations: 0, durationMs: 10 };

describe("recovery by a live peer", () => {
  let db: { url: string; drop(): Promise<void> };
  let store: Store;
  const open: StoreTenancy[] = [];
  const tenancy = async (opts: { host: string; pid?: number; staleAfterMs?: number }): Promise<StoreTenancy> => {
    const t = await openStoreTenancy({ store: await openStore(db.url), heartbeatMs: 0, log: () => {}, ...opts });
    open.push(t);
    return t;
  };

  before(async () => {
    db = await sqliteBackend.fresh();
    store = await openStore(db.url);
  });

  after(async () => {
    for (const t of open) await t.close();
    await store.close();
    await db.drop();
  });

  test("a process silent past staleAfterMs, or gone from this host, has its requests interrupted by another; a late settlement still records", async () => {
    const a = await tenancy({ host: "host-a" });
    await a.createTenant({ id: "t", maxConcurrent: 2, monthlyBudgetUsd: 1 });
    const principal = { tenantId: "t", keyId: "k" };
    const admit = (t: StoreTenancy, id: string) => t.admit({ requestId: id, principal, model: "m", endpoint: "chat", stream: true, maxTokens: 5 });
    const t1 = await admit(a, "r1");
    await admit(a, "r2");
    const b = await tenancy({ host: "host-b", staleAfterMs: 100 });
    await assert.rejects(admit(b, "r3"), /max_concurrent/);
    await b.sweep();
    assert.equal((await store.ledger({ status: "running" })).length, 2, "a's heartbeat is fresh");
    await new Promise((r) => setTimeout(r, 150));
    await b.sweep();
    const rows = await store.ledger({ tenantId: "t" });
    assert.deepEqual(rows.map((r) => r.status), ["interrupted", "interrupted"]);
    assert.equal((await store.getTenant("t"))!.state.inFlight, 0);
    const t3 = await admit(b, "r3");

    // a was only slow: its settlement lands on the interrupted row, without releasing twice.
    await t1.settle(ok);
    await t1.settle(ok);
    const [r1] = await store.ledger({ tenantId: "t" });
    assert.equal(r1!.status, "ok");
    assert.equal(r1!.outputTokens, 5);
    let { state } = (await store.getTenant("t"))!;
    assert.equal(state.inFlight, 1, "only b's request runs");
    await t3.settle(ok);
    ({ state } = (await store.getTenant("t"))!);
    assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);
    // And a, on its next heartbeat, finds itself unregistered and registers again.
    await a.sweep();
    assert.ok((await store.listInstances()).some((i) => i.id === a.instance.id));
  });

  test("on the same host, a pid that no longer exists is dead at once", async () => {
    const ghost = await tenancy({ host: "shared-host", pid: 2 ** 22 + 12345 });
    await ghost.createTenant({ id: "g", maxConcurrent: 1 });
    await ghost.admit({ requestId: "x", principal: { tenantId: "g", keyId: "k" }, model: "m", endpoint: "completion", stream: false, maxTokens: 1 });
    const live = await tenancy({ host: "shared-host" });
    assert.deepEqual((await store.ledger({ tenantId: "g" })).map((r) => r.status), ["interrupted"]);
    assert.ok(!(await store.listInstances()).some((i) => i.id === ghost.instance.id));
    assert.ok((await store.listInstances()).some((i) => i.id === live.instance.id));
  });
});
