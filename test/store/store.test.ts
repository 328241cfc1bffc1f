import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { openStore, periodOf, type AdmitInput, type SettleInput, type Store } from "../../src/store/index.js";
import { backends } from "../metering/harness.js";

const T0 = Date.UTC(2026, 10, 15, 12, 0, 0);
let seq = 0;

function admission(tenantId: string, over: Partial<AdmitInput> = {}): AdmitInput {
  const id = `req-${++seq}`;
  return { id, requestId: id, tenantId, keyId: null, model: "m", endpoint: "chat", stream: true, reservedNusd: 100, reservedTokens: 10, outputBounded: true, instanceId: "i-1", now: T0, ...over };
}

function settlement(id: string, over: Partial<SettleInput> = {}): SettleInput {
  return { id, status: "ok", errorCode: null, estimated: false, replica: "m/0", hardware: "h100", inputTokens: 4, cachedTokens: 0, outputTokens: 6, deviceSeconds: 0.5, energyJ: 2, costNusd: 80, attempts: 1, continuations: 0, now: T0 + 1000, ...over };
}

function tenant(id: string, limits: { rpm?: number; tpm?: number; concurrent?: number; budget?: number } = {}) {
  return {
    id,
    weight: 1,
    priority: "interactive" as const,
    requestsPerMinute: limits.rpm ?? null,
    tokensPerMinute: limits.tpm ?? null,
    maxConcurrent: limits.concurrent ?? null,
    monthlyBudgetNusd: limits.budget ?? null,
    createdAt: T0,
  };
}

for (const backend of backends) {
  describe(`store on ${backend.name}`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let store: Store;
    /** A second connection, as another gateway process would hold. */
    let other: Store;

    before(async () => {
      db = await backend.fresh();
      // Two processes starting at once both migrate; each migration applies once.
      // The tests drive time themselves (T0), so Postgres takes the caller's clock here.
      [store, other] = await Promise.all([openStore(db.url, { databaseClock: false }), openStore(db.url, { databaseClock: false })]);
      await store.registerInstance({ id: "i-1", host: "h", pid: 1, startedAt: T0, heartbeatAt: T0 });
    });

    after(async () => {
      await store?.close();
      await other?.close();
      await db?.drop();
    });

    test("migrations run once and again is a no-op", async () => {
      const again = await openStore(db.url);
      assert.deepEqual(await again.listTenants(), []);
      await again.close();
    });

    test("tenants and keys: create, find by hash, revoke, delete (keys go with the tenant); keys stay required", async () => {
      const acme = await store.createTenant(tenant("acme"));
      await assert.rejects(store.createTenant(tenant("acme")));
      assert.equal(await store.keysRequired(), false);
      assert.equal(await store.createKey({ id: "k0", tenantId: "nobody", name: "", prefix: "flt-000", hash: "h0", createdAt: T0, revokedAt: null }), undefined);
      assert.equal(await store.keysRequired(), false, "no key was created");
      await store.createKey({ id: "k1", tenantId: "acme", name: "ci", prefix: "flt-abc", hash: "h1", createdAt: T0, revokedAt: null });
      assert.equal(await other.keysRequired(), true);
      const found = await store.findKey("h1");
      assert.equal(found?.tenant.uid, acme.uid);
      assert.equal(found?.key.id, "k1");
      assert.equal(found?.tenant.id, "acme");
      assert.equal(await store.findKey("nope"), undefined);
      assert.equal(await other.revokeKey("k1", T0 + 5), true);
      assert.equal(await store.revokeKey("k1", T0 + 6), false, "already revoked");
      assert.equal((await store.findKey("h1"))?.key.revokedAt, T0 + 5);
      assert.equal(await store.keysRequired(), true, "revoking every key does not open the gateway");
      await store.createKey({ id: "k2", tenantId: "acme", name: "", prefix: "flt-def", hash: "h2", createdAt: T0, revokedAt: null });
      assert.deepEqual((await store.listKeys("acme")).map((k) => k.id), ["k1", "k2"]);
      assert.equal(await store.deleteTenant("acme"), true);
      assert.equal(await store.deleteTenant("acme"), false);
      assert.equal(await store.findKey("h2"), undefined);
      assert.deepEqual(await store.listKeys(), []);
      assert.equal(await store.keysRequired(), true, "nor does deleting every tenant");
      // A tenant created again under the name is another tenant: the old keys are gone and stay gone.
      const again = await store.createTenant(tenant("acme"));
      assert.notEqual(again.uid, acme.uid);
      assert.equal(await store.findKey("h1"), undefined);
      assert.equal(await store.deleteTenant("acme"), true);
    });

    test("budget: of 300 concurrent admissions from two connections, exactly those that fit are admitted", async () => {
      await store.createTenant(tenant("budget", { budget: 37 * 100 + 50 }));
      const outcomes = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? store : other).admit(admission("budget"))));
      assert.equal(outcomes.filter((o) => o.ok).length, 37);
      const refused = outcomes.find((o) => !o.ok);
      assert.ok(refused !== undefined && !refused.ok && refused.reason === "limit" && refused.limit === "monthly_budget");
      const { state } = (await store.getTenant("budget"))!;
      assert.equal(state.inFlight, 37);
      assert.equal(state.reservedNusd, 3700);
      const rows = await store.ledger({ tenantId: "budget" });
      assert.equal(rows.length, 37);
      assert.ok(rows.every((r) => r.status === "running"));
      // Settle each (twice, concurrently): each settles once.
      const settled = await Promise.all(rows.flatMap((r) => [store.settle(settlement(r.id)), other.settle(settlement(r.id))]));
      assert.equal(settled.filter(Boolean).length, 37);
      const after = (await store.getTenant("budget"))!.state;
      assert.deepEqual([after.inFlight, after.reservedNusd, after.spentNusd, after.period], [0, 0, 37 * 80, periodOf(T0)]);
      // 3750 - 2960 = 790: seven more 100s fit.
      const more = await Promise.all(Array.from({ length: 20 }, () => other.admit(admission("budget"))));
      assert.equal(more.filter((o) => o.ok).length, 7);
    });

    test("requests/minute and concurrency are exact across connections; a budget needs max_tokens", async () => {
      await store.createTenant(tenant("rpm", { rpm: 10 }));
      const r = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : other).admit(admission("rpm"))));
      assert.equal(r.filter((o) => o.ok).length, 10);
      const later = await store.admit(admission("rpm", { now: T0 + 6_000 }));
      assert.ok(later.ok, "one more after 6 s");
      const refused = await store.admit(admission("rpm", { now: T0 + 6_000 }));
      assert.ok(!refused.ok && refused.reason === "limit" && refused.resetAt === T0 + 12_000);

      await store.createTenant(tenant("conc", { concurrent: 5 }));
      const c = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? store : other).admit(admission("conc"))));
      assert.equal(c.filter((o) => o.ok).length, 5);

      const noMax = await store.admit(admission("budget", { outputBounded: false }));
      assert.ok(!noMax.ok && noMax.reason === "max_tokens_required");
      const ghost = await store.admit(admission("ghost"));
      assert.ok(!ghost.ok && ghost.reason === "unknown_tenant");
      assert.ok((await store.admit(admission("anonymous"))).ok, "the anonymous tenant is recorded, never limited");
    });

    test("crash recovery: an instance past its lease is reaped by one reaper, whose transaction interrupts its rows and releases them, once", async () => {
      await store.createTenant(tenant("crash", { concurrent: 3, budget: 1000 }));
      await store.registerInstance({ id: "dead", host: "h", pid: 2, startedAt: T0, heartbeatAt: T0 });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const a = admission("crash", { instanceId: "dead" });
        assert.ok((await store.admit(a)).ok);
        ids.push(a.id);
      }
      assert.equal((await store.admit(admission("crash"))).ok, false, "max_concurrent is full");
      assert.equal(await store.reapInstance("dead", T0, T0 + 10), undefined, "a heartbeat at the threshold is not stale");
      assert.equal((await store.ledger({ status: "running", tenantId: "crash" })).length, 3);
      const reaped = await Promise.all([store.reapInstance("dead", T0 + 1, T0 + 10), other.reapInstance("dead", T0 + 1, T0 + 10)]);
      assert.deepEqual(reaped.filter((n) => n !== undefined), [3], "one reaper acts, the other finds nothing to do");
      const { state } = (await store.getTenant("crash"))!;
      assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, 0]);
      const rows = await store.ledger({ tenantId: "crash" });
      assert.deepEqual(
        rows.map((r) => [r.status, r.errorCode]),
        ids.map(() => ["interrupted", "gateway_exited"]),
      );
      assert.ok(!(await store.listInstances()).some((i) => i.id === "dead"));
      // The process was not dead after all: its late settlement records what happened, without releasing twice.
      assert.equal(await store.settle(settlement(ids[0]!)), true);
      assert.equal(await store.settle(settlement(ids[0]!)), false);
      const s2 = (await store.getTenant("crash"))!.state;
      assert.deepEqual([s2.inFlight, s2.reservedNusd, s2.spentNusd], [0, 0, 80]);
      // While unregistered it cannot admit (so no row of it escapes a reaper); registered again, it can.
      assert.deepEqual(await store.admit(admission("crash", { instanceId: "dead" })), { ok: false, reason: "instance_gone" });
      assert.deepEqual(await store.admit(admission("anonymous", { instanceId: "dead" })), { ok: false, reason: "instance_gone" });
      assert.equal((await store.getTenant("crash"))!.state.inFlight, 0, "a refused admission takes nothing");
      await store.registerInstance({ id: "dead", host: "h", pid: 2, startedAt: T0, heartbeatAt: T0 + 20 });
      assert.ok((await store.admit(admission("crash", { instanceId: "dead" }))).ok);
      // A clean stop interrupts what is left, and unregisters.
      assert.equal(await store.deregisterInstance("dead", T0 + 30), 1);
      assert.equal((await store.getTenant("crash"))!.state.inFlight, 0);
      // Rows of live instances are left alone.
      const live = admission("crash");
      assert.ok((await store.admit(live)).ok);
      assert.equal(await store.reapInstance("i-1", T0, T0 + 20), undefined);
      assert.equal((await store.ledger({ status: "running", tenantId: "crash" })).length, 1);
    });

    test("a tenant deleted and created again under its name is another tenant: the old one's running requests never settle into it", async () => {
      const old = await store.createTenant(tenant("phoenix", { concurrent: 1 }));
      await store.registerInstance({ id: "gone", host: "h", pid: 3, startedAt: T0, heartbeatAt: T0 });
      const a = admission("phoenix");
      const b = admission("phoenix", { instanceId: "gone" });
      assert.ok((await store.admit(a)).ok);
      assert.equal((await store.ledger({ tenantId: "phoenix" }))[0]!.tenantUid, old.uid);
      assert.equal(await store.deleteTenant("phoenix"), true);
      const reborn = await store.createTenant(tenant("phoenix", { concurrent: 2 }));
      assert.ok((await store.admit(b)).ok);
      const c = admission("phoenix");
      assert.ok((await store.admit(c)).ok);
      assert.deepEqual(await store.admit(admission("phoenix", { tenantUid: old.uid })), { ok: false, reason: "unknown_tenant" }, "a key of the old tenant admits nothing");
      // The old tenant's request settles (and is charged) into nothing; the new tenant's state is untouched.
      assert.equal(await store.settle(settlement(a.id)), true);
      let { state } = (await store.getTenant("phoenix"))!;
      assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [2, 200, 0]);
      assert.equal((await store.ledger({ tenantId: "phoenix" })).find((r) => r.id === a.id)!.status, "ok", "its row still records what happened");
      // Reaping releases by uid too: b was the new tenant's, so it is released.
      assert.equal(await store.reapInstance("gone", T0 + 1, T0 + 10), 1);
      ({ state } = (await store.getTenant("phoenix"))!);
      assert.deepEqual([state.inFlight, state.reservedNusd], [1, 100]);
      assert.ok(reborn.uid !== old.uid);
      assert.equal(await store.settle(settlement(c.id)), true);
    });

    test("heartbeat reports a reaped instance, and usage sums and groups the ledger", async () => {
      assert.equal(await store.heartbeat("i-1", T0 + 1), true);
      assert.equal(await store.heartbeat("dead", T0 + 1), false);
      await store.createTenant(tenant("usage"));
      const day2 = T0 + 86_400_000;
      for (const [now, model, status] of [[T0, "a", "ok"], [T0, "b", "ok"], [day2, "a", "cancelled"]] as const) {
        const a = admission("usage", { now, model });
        await store.admit(a);
        await store.settle(settlement(a.id, { status, now: now + 5 }));
      }
      const total = await store.usage({ tenantId: "usage", from: T0, to: day2 + 1, groupBy: [] });
      assert.equal(total.length, 1);
      assert.deepEqual({ ...total[0]!, group: undefined }, { group: undefined, requests: 3, inputTokens: 12, cachedTokens: 0, outputTokens: 18, deviceSeconds: 1.5, energyJ: 6, costNusd: 240 });
      const byDay = await store.usage({ tenantId: "usage", from: T0, to: day2 + 1, groupBy: ["day", "model"] });
      assert.deepEqual(
        byDay.map((r) => [r.group.day, r.group.model, r.requests]),
        [["2026-11-15", "a", 1], ["2026-11-15", "b", 1], ["2026-11-16", "a", 1]],
      );
      const byStatus = await store.usage({ tenantId: "usage", from: T0, to: day2, groupBy: ["status", "hour"] });
      assert.deepEqual(byStatus.map((r) => [r.group.status, r.group.hour, r.requests]), [["ok", "2026-11-15T12:00Z", 2]]);
      const all = await store.usage({ from: 0, to: day2 + 1, groupBy: ["tenant"] });
      assert.ok(all.some((r) => r.group.tenant === "usage" && r.requests === 3));
    });
  });
}

describe("store on postgres, on the database's clock", { skip: backends[1]!.skip }, () => {
  test("buckets and heartbeats keep the database's time, whatever the hosts' clocks say", async () => {
    const db = await backends[1]!.fresh();
    const store = await openStore(db.url);
    try {
      await store.registerInstance({ id: "i-1", host: "h", pid: 1, startedAt: T0, heartbeatAt: T0 });
      await store.createTenant(tenant("clock", { rpm: 2 }));
      // A host whose clock reads 1970: its admissions are still timed by the database.
      const outcomes = [];
      for (let i = 0; i < 3; i++) outcomes.push(await store.admit(admission("clock", { now: 0 })));
      assert.deepEqual(outcomes.map((o) => o.ok), [true, true, false]);
      const refused = outcomes[2]!;
      const now = (await store.databaseNow())!;
      assert.ok(Math.abs(now - Date.now()) < 60_000);
      assert.ok(!refused.ok && refused.reason === "limit" && refused.resetAt !== null && Math.abs(refused.resetAt - (now + 30_000)) < 5_000);
    } finally {
      await store.close();
      await db.drop();
    }
  });
});
