import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { openStore, type Store } from "../../src/store/index.js";
import { eventually } from "../helpers.js";
import { backends, postgresBackend } from "../metering/harness.js";

const T0 = Date.UTC(2026, 10, 15, 12, 0, 0);

for (const backend of backends) {
  describe(`leases on ${backend.name}`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let store: Store;
    let other: Store;

    before(async () => {
      db = await backend.fresh();
      // The tests drive time (T0), so Postgres takes the caller's clock here.
      [store, other] = await Promise.all([openStore(db.url, { databaseClock: false }), openStore(db.url, { databaseClock: false })]);
    });

    after(async () => {
      await store?.close();
      await other?.close();
      await db?.drop();
    });

    test("acquire, renew and release are conditional: only the holder renews or releases, and a lease is free again once it expires", async () => {
      assert.equal(await store.tryAcquireLease("job", "a", 1000, T0), true);
      assert.equal(await other.tryAcquireLease("job", "b", 1000, T0 + 999), false, "held until it expires");
      assert.equal(await store.tryAcquireLease("job", "a", 1000, T0 + 500), true, "its holder may take it again, extending it to T0 + 1500");
      assert.equal(await other.tryAcquireLease("job", "b", 1000, T0 + 1499), false);
      assert.equal(await other.renewLease("job", "b", 1000, T0 + 1000), false, "only the holder renews");
      assert.equal(await store.renewLease("job", "a", 1000, T0 + 1000), true, "now until T0 + 2000");
      assert.equal(await other.releaseLease("job", "b"), false, "only the holder releases");
      assert.equal(await other.tryAcquireLease("job", "b", 1000, T0 + 2000), true, "expired at T0 + 2000");
      assert.equal(await store.renewLease("job", "a", 1000, T0 + 2001), false, "a lost it and learns so");
      assert.equal(await store.releaseLease("job", "a"), false);
      assert.equal(await other.releaseLease("job", "b"), true);
      assert.equal(await store.tryAcquireLease("job", "a", 1000, T0 + 2001), true, "released: free at once");
      assert.equal(await store.tryAcquireLease("other-job", "b", 1000, T0 + 2001), true, "leases are by name");
    });

    test("an expired lease cannot be renewed even by its holder, who must acquire again", async () => {
      assert.equal(await store.tryAcquireLease("lapse", "a", 100, T0), true);
      assert.equal(await store.renewLease("lapse", "a", 100, T0 + 100), false);
      assert.equal(await store.tryAcquireLease("lapse", "a", 100, T0 + 100), true);
    });

    test("of 40 contenders on two connections, exactly one gets a free lease", async () => {
      const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : other).tryAcquireLease("race", `holder-${i}`, 60_000, T0)));
      assert.equal(got.filter(Boolean).length, 1);
      // And of 40 contenders for it once it has expired, again exactly one.
      const again = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : other).tryAcquireLease("race", `late-${i}`, 60_000, T0 + 60_000)));
      assert.equal(again.filter(Boolean).length, 1);
    });
  });
}

describe("leases on postgres, on the database's clock", { skip: postgresBackend.skip }, () => {
  test("expiry is the database's time: a host whose clock is far off neither keeps nor steals a lease", async () => {
    const db = await postgresBackend.fresh();
    const store = await openStore(db.url);
    try {
      // A host whose clock reads 1970 still holds the lease for its ttl, by the database's time.
      assert.equal(await store.tryAcquireLease("job", "a", 60_000, 0), true);
      assert.equal(await store.tryAcquireLease("job", "b", 60_000, Date.now() + 365 * 86_400_000), false, "a host whose clock runs a year ahead cannot take it");
      assert.equal(await store.renewLease("job", "a", 100, 0), true, "now it expires 100 ms from the database's now");
      await eventually(() => store.tryAcquireLease("job", "b", 60_000, 0), "the lease to expire on the database's clock", 5_000);
      assert.equal(await store.renewLease("job", "a", 60_000), false);
    } finally {
      await store.close();
      await db.drop();
    }
  });
});
