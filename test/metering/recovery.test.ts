/**
 * Recovery by a live peer, on the lease alone: the injected clock moves
 * time, so "not before the lease expires" is exact, on both backends.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { openStoreTenancy, type StoreTenancy } from "../../src/metering/store-tenancy.js";
import { openStore, type Store } from "../../src/store/index.js";
import { backends } from "./harness.js";

const T0 = Date.UTC(2026, 10, 15, 12, 0, 0);
const STALE = 30_000;
const ok = { status: "ok" as const, usage: { promptTokens: 3, completionTokens: 5, cachedTokens: 0 }, replica: "m/0", attempts: 1, continuations: 0, durationMs: 10 };

for (const backend of backends) {
  describe(`recovery by a live peer (${backend.name})`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let store: Store;
    const clock = new ManualClock(0, T0);
    const logs: string[] = [];
    const open: StoreTenancy[] = [];
    /** A gateway process's tenancy; heartbeats only when a test calls sweep(). */
    const tenancy = async (): Promise<StoreTenancy> => {
      // The tests drive time, so Postgres takes the caller's clock here.
      const t = await openStoreTenancy({ store: await openStore(db.url, { databaseClock: false }), heartbeatMs: 0, staleAfterMs: STALE, clock, log: (m) => logs.push(m) });
      open.push(t);
      return t;
    };
    const at = (ms: number): void => clock.advanceTo(Math.max(clock.now(), ms));
    const statuses = async (tenantId: string): Promise<string[]> => (await store.ledger({ tenantId })).map((r) => r.status);

    before(async () => {
      db = await backend.fresh();
      store = await openStore(db.url, { databaseClock: false });
    });

    after(async () => {
      for (const t of open) await t.close();
      await store.close();
      await db.drop();
    });

    test("a live process is never reaped, whatever its host and pid say: a pid this host does not have is another PID namespace's", async () => {
      const live = await tenancy();
      await live.createTenant({ id: "ns", maxConcurrent: 2 });
      // Another container sharing this hostname: its pid means nothing here.
      const other = { id: "other-namespace", host: hostname(), pid: 2 ** 22 + 12345, startedAt: clock.epochMs(), heartbeatAt: clock.epochMs() };
      await store.registerInstance(other);
      const admission = { requestId: "r", tenantId: "ns", keyId: null, model: "m", endpoint: "chat", stream: true, reservedNusd: 0, reservedTokens: 1, outputBounded: true, instanceId: other.id };
      assert.ok((await store.admit({ ...admission, id: "held", now: clock.epochMs() })).ok);
      for (let beat = 1; beat <= 5; beat++) {
        // The other process heartbeats every 5 s; this one sweeps after it each time.
        at(beat * 5_000);
        assert.ok(await store.heartbeat(other.id, clock.epochMs()));
        await live.sweep();
        assert.deepEqual(await statuses("ns"), ["running"], `after heartbeat ${beat}`);
      }
      assert.equal((await store.getTenant("ns"))!.state.inFlight, 1);
      // It stops heartbeating: dead exactly when its lease is past, not a millisecond before.
      const last = clock.now();
      at(last + STALE);
      await live.sweep();
      assert.deepEqual(await statuses("ns"), ["running"], "a heartbeat exactly staleAfterMs old is still alive");
      at(last + STALE + 1);
      await live.sweep();
      assert.deepEqual(await statuses("ns"), ["interrupted"]);
      assert.equal((await store.getTenant("ns"))!.state.inFlight, 0);
      assert.ok(logs.some((m) => m.includes(`pid ${other.pid} (${other.id}) sent no heartbeat for 30 s; 1 request(s)`)), logs.join("\n"));
    });

    test("kill -9 and restart: the dead process's rows are interrupted once its lease expires (not before), by one of the live processes; a late settlement still records", async () => {
      const killed = await tenancy();
      await killed.createTenant({ id: "t", maxConcurrent: 2, monthlyBudgetUsd: 1 });
      const principal = { tenantId: "t", keyId: "k" };
      const admit = (t: StoreTenancy, id: string) => t.admit({ requestId: id, principal, model: "m", endpoint: "chat", stream: true, maxTokens: 5 });
      const t1 = await admit(killed, "r1");
      await admit(killed, "r2");
      const diedAt = clock.now();
      // Restarted at once, on the same host: the dead process's lease has not expired, so its rows stay running.
      at(diedAt + 1_000);
      const [b, c] = [await tenancy(), await tenancy()];
      assert.deepEqual(await statuses("t"), ["running", "running"]);
      await assert.rejects(admit(b, "r3"), /max_concurrent/);
      at(diedAt + STALE);
      await Promise.all([b.sweep(), c.sweep()]);
      assert.deepEqual(await statuses("t"), ["running", "running"], "not before the lease expires");
      at(diedAt + STALE + 1);
      logs.length = 0;
      // Two live processes sweep at once: one reaps, the other finds nothing to do.
      await Promise.all([b.sweep(), c.sweep()]);
      assert.deepEqual(await statuses("t"), ["interrupted", "interrupted"]);
      assert.equal(logs.filter((m) => m.includes(killed.instance.id)).length, 1, logs.join("\n"));
      assert.equal((await store.getTenant("t"))!.state.inFlight, 0);
      const t3 = await admit(b, "r3");

      // It was only slow: its settlement lands on the interrupted row, without releasing twice.
      await t1.settle(ok);
      await t1.settle(ok);
      assert.equal((await store.ledger({ tenantId: "t" })).find((r) => r.requestId === "r1")!.status, "ok");
      assert.equal((await store.getTenant("t"))!.state.inFlight, 1, "only b's request runs");
      await t3.settle(ok);
      const { state } = (await store.getTenant("t"))!;
      assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);
      // On its next heartbeat it finds itself unregistered and registers again.
      await killed.sweep();
      assert.ok((await store.listInstances()).some((i) => i.id === killed.instance.id));
    });

    test("a process reaped while alive registers again at its next admission, so its new rows are never orphaned", async () => {
      const slow = await tenancy();
      const peer = await tenancy();
      await slow.createTenant({ id: "slow", maxConcurrent: 5 });
      const principal = { tenantId: "slow", keyId: "k" };
      await slow.admit({ requestId: "before", principal, model: "m", endpoint: "chat", stream: false, maxTokens: 1 });
      at(clock.now() + STALE + 1);
      await peer.sweep();
      assert.ok(!(await store.listInstances()).some((i) => i.id === slow.instance.id));
      const ticket = await slow.admit({ requestId: "after", principal, model: "m", endpoint: "chat", stream: false, maxTokens: 1 });
      assert.ok((await store.listInstances()).some((i) => i.id === slow.instance.id), "registered again");
      assert.deepEqual(await statuses("slow"), ["interrupted", "running"]);
      await ticket.settle(ok);
      assert.equal((await store.getTenant("slow"))!.state.inFlight, 0);
    });
  });
}
