/** A database at schema version 1 (as earlier releases left it) opens with today's code and keeps working. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import pg from "pg";
import { MIGRATIONS, openStore } from "../../src/store/index.js";
import { backends, type Backend } from "../metering/harness.js";

const T0 = Date.UTC(2026, 10, 15, 12, 0, 0);

/** Version 1's schema with, as a v1 gateway would have left them: a tenant holding one running request, a revoked key, a settled row. */
const V1_ROWS = [
  `INSERT INTO tenants (id, max_concurrent, created_at, in_flight, reserved_nusd, period) VALUES ('acme', 2, ${T0}, 1, 100, '2026-11')`,
  `INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at, revoked_at) VALUES ('k1', 'acme', 'ci', 'h1', 'flt-abc', ${T0}, ${T0 + 1})`,
  `INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at, revoked_at) VALUES ('k2', 'acme', 'live', 'h2', 'flt-def', ${T0}, NULL)`,
  `INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ('old', 'h', 1, ${T0}, ${T0})`,
  `INSERT INTO requests (id, request_id, tenant_id, model, endpoint, stream, status, reserved_nusd, reserved_tokens, period, instance_id, started_at)
    VALUES ('r-running', 'x', 'acme', 'm', 'chat', 1, 'running', 100, 10, '2026-11', 'old', ${T0})`,
  `INSERT INTO requests (id, request_id, tenant_id, model, endpoint, stream, status, reserved_nusd, reserved_tokens, period, instance_id, started_at, finished_at)
    VALUES ('r-done', 'y', 'acme', 'm', 'chat', 1, 'ok', 100, 10, '2026-11', 'old', ${T0}, ${T0 + 5})`,
];

/** Only migration 1 applied, as a v1 gateway's store did, then `rows`. */
async function createV1(backend: Backend, url: string, rows: readonly string[]): Promise<void> {
  const v1 = MIGRATIONS.find((m) => m.version === 1)!;
  const statements = [
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    ...v1.statements,
    `INSERT INTO schema_migrations (version, applied_at) VALUES (1, ${T0})`,
    ...rows,
  ];
  if (backend.name === "sqlite") {
    const db = new Database(url.replace(/^sqlite:/, ""));
    try {
      for (const s of statements) db.exec(s);
    } finally {
      db.close();
    }
    return;
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of statements) await c.query(s);
  } finally {
    await c.end();
  }
}

for (const backend of backends) {
  describe(`migrating a version 1 database (${backend.name})`, { skip: backend.skip }, () => {
    test("tenants get a uid their keys and running requests carry, keys stay required, leases work", async () => {
      const db = await backend.fresh();
      try {
        await createV1(backend, db.url, V1_ROWS);
        const store = await openStore(db.url, { databaseClock: false });
        try {
          const acme = (await store.getTenant("acme"))!.tenant;
          assert.equal(acme.uid, "v1-acme");
          assert.equal(await store.keysRequired(), true, "keys existed, so they stay required");
          assert.equal((await store.findKey("h2"))?.tenant.uid, "v1-acme", "existing keys still authenticate");
          const rows = await store.ledger({ tenantId: "acme" });
          assert.deepEqual(rows.map((r) => [r.id, r.tenantUid]), [["r-done", null], ["r-running", "v1-acme"]]);
          // The running request left by the old gateway is reaped once its lease is past, and releases its tenant.
          assert.equal(await store.reapInstance("old", T0 + 30_001, T0 + 30_001), 1);
          const { state } = (await store.getTenant("acme"))!;
          assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);
          // New tenants get generated uids; the migration's cannot collide with them.
          assert.match((await store.createTenant({ id: "new", weight: 1, priority: "interactive", requestsPerMinute: null, tokensPerMinute: null, maxConcurrent: null, monthlyBudgetNusd: null, createdAt: T0 })).uid, /^[0-9a-f-]{36}$/);
          assert.equal(await store.tryAcquireLease("job", "a", 1000, T0), true);
        } finally {
          await store.close();
        }
        // And opening again applies nothing twice.
        const again = await openStore(db.url);
        assert.equal((await again.getTenant("acme"))!.tenant.uid, "v1-acme");
        await again.close();
      } finally {
        await db.drop();
      }
    });

    test("a version 1 database that never had a key stays open to loopback callers", async () => {
      const db = await backend.fresh();
      try {
        await createV1(backend, db.url, []);
        const store = await openStore(db.url);
        assert.equal(await store.keysRequired(), false);
        await store.close();
      } finally {
        await db.drop();
      }
    });
  });
}
