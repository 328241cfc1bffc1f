/**
 * Once a key has been created, keys stay required: revoking every key or
 * deleting every tenant must not reopen the gateway; only the operator's
 * explicit server.require_keys: false does.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { tenancyFromConfig } from "../../src/metering/config.js";
import { openStoreTenancy } from "../../src/metering/store-tenancy.js";
import { openStore } from "../../src/store/index.js";
import { admin, backends, gatewayPerSuite, post, streamOnce, tinyConfig } from "./harness.js";

const ask = (url: string, key?: string) => post(url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 2 }, key);

for (const backend of backends) {
  describe(`keys stay required (${backend.name})`, { skip: backend.skip }, () => {
    const suite = gatewayPerSuite(backend);

    test("revoking the last key, then deleting the last tenant, leaves keys required, in every process sharing the store", async () => {
      assert.equal((await ask(suite.gw.url)).status, 200, "open to loopback callers before any key");
      assert.equal((await admin(suite.gw.url, "POST", "/admin/tenants", { name: "only" })).status, 201);
      const created = await admin(suite.gw.url, "POST", "/admin/keys", { tenant: "only" });
      const key = created.json.key as string;
      assert.equal((await ask(suite.gw.url)).status, 401);
      assert.equal((await admin(suite.gw.url, "DELETE", `/admin/keys/${created.json.id as string}`)).status, 200);
      assert.equal((await ask(suite.gw.url)).status, 401, "revoking the last key does not reopen the gateway");
      assert.equal((await ask(suite.gw.url, key)).status, 401);
      assert.equal((await admin(suite.gw.url, "DELETE", "/admin/tenants/only")).status, 200);
      assert.equal((await ask(suite.gw.url)).status, 401, "nor does deleting the last tenant");
      assert.equal(await suite.gw.tenancy.authMode(), "keys required (a key has been created here; server.require_keys: false turns this off)");
      // A process that starts later, never having seen a key, reads it from the store.
      const later = await openStoreTenancy({ store: await openStore(suite.db.url), heartbeatMs: 0, log: () => {} });
      try {
        await assert.rejects(later.authenticate(undefined), /requires an API key/);
      } finally {
        await later.close();
      }
    });

    test("a tenant deleted and created again under its name: the old key never authenticates as the new one", async () => {
      assert.equal((await admin(suite.gw.url, "POST", "/admin/tenants", { name: "phoenix" })).status, 201);
      const oldKey = (await admin(suite.gw.url, "POST", "/admin/keys", { tenant: "phoenix" })).json.key as string;
      const principal = await suite.gw.tenancy.authenticate(`Bearer ${oldKey}`);
      assert.equal((await admin(suite.gw.url, "DELETE", "/admin/tenants/phoenix")).status, 200);
      assert.equal((await admin(suite.gw.url, "POST", "/admin/tenants", { name: "phoenix", max_concurrent: 1 })).status, 201);
      assert.equal((await streamOnce(suite.gw.url, oldKey, "x", 2)).status, 401);
      // Nor does a principal authenticated just before the deletion admit into the new tenant.
      await assert.rejects(suite.gw.tenancy.admit({ requestId: "late", principal, model: "tiny", endpoint: "completion", stream: false, maxTokens: 1 }), /no longer exists/);
      const newKey = (await admin(suite.gw.url, "POST", "/admin/keys", { tenant: "phoenix" })).json.key as string;
      assert.equal((await streamOnce(suite.gw.url, newKey, "x", 2)).status, 200);
    });
  });
}

describe("server.require_keys decides over the stored flag", () => {
  let db: { url: string; drop(): Promise<void> };

  before(async () => {
    db = await backends[0]!.fresh();
    const store = await openStore(db.url);
    const t = await openStoreTenancy({ store, heartbeatMs: 0, log: () => {} });
    await t.createTenant({ id: "t" });
    await t.createKey("t");
    await t.close();
  });

  after(async () => {
    await db?.drop();
  });

  const open = (server: Record<string, unknown>, host: string) =>
    tenancyFromConfig(parseFleetConfig({ server: { store: db.url, ...server }, ...(tinyConfig() as object) }), { baseDir: process.cwd(), env: {}, host, log: () => {} });

  for (const [server, host, mode, anonymous] of [
    [{ require_keys: false }, "127.0.0.1", "open to loopback callers, no key needed (server.require_keys: false)", true],
    [{ require_keys: false }, "0.0.0.0", "open to every caller, no key needed (server.require_keys: false)", true],
    [{ require_keys: true }, "127.0.0.1", "keys required (server.require_keys: true)", false],
    [{}, "127.0.0.1", "keys required (a key has been created here; server.require_keys: false turns this off)", false],
    [{}, "0.0.0.0", "keys required (the server binds a non-loopback address)", false],
  ] as const) {
    test(`${JSON.stringify(server)} on ${host}: ${mode}`, async () => {
      const t = (await open(server, host))!;
      try {
        assert.equal(await t.authMode(), mode);
        if (anonymous) assert.equal(await t.authenticate(undefined), undefined);
        else await assert.rejects(t.authenticate(undefined), /requires an API key/);
      } finally {
        await t.close();
      }
    });
  }
});
