/** Tenant and key names reach operators' terminals: only printable names are taken, and listings escape the rest. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { admin, gatewayPerSuite } from "./harness.js";
import { flotilla } from "./run-cli.js";

describe("names", () => {
  const suite = gatewayPerSuite();

  test("control characters in names are refused, and `flotilla keys list` escapes any an older row holds", async () => {
    assert.equal((await admin(suite.gw.url, "POST", "/admin/tenants", { name: "team-b" })).status, 201);
    for (const [path, body] of [
      ["/admin/keys", { tenant: "team-b", name: "\x1b[2Jgone" }],
      ["/admin/keys", { tenant: "team-b", name: "tab\there" }],
      ["/admin/keys", { tenant: "team-b", name: "\u202egnp.exe" }],
      ["/admin/keys", { tenant: "team-b", name: "k".repeat(201) }],
      ["/admin/tenants", { name: "bad\x1bname" }],
    ] as const) {
      const r = await admin(suite.gw.url, "POST", path, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((r.json.error as { param: string }).param, "name");
    }
    assert.equal((await admin(suite.gw.url, "POST", "/admin/keys", { tenant: "team-b", name: "ci-bot@build-7:/deploy v1.2_3" })).status, 201);
    // A row written before names were checked: a title change, a bell, a clear screen, C1 CSI, a bidi override.
    const evil = "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202egnp.exe";
    await suite.gw.store.createKey({ id: "key_old", tenantId: "team-b", name: evil, prefix: "flt-old", hash: "legacy-hash", createdAt: Date.now(), revokedAt: null });

    const { out } = await flotilla("keys", "list", "--tenant", "team-b", "--url", suite.gw.url);
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/.test(out), JSON.stringify(out));
    assert.ok(out.includes("\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202egnp.exe"), out);
    assert.match(out, /ci-bot@build-7:\/deploy v1\.2_3/);
    const json = (await flotilla("keys", "list", "--json", "--tenant", "team-b", "--url", suite.gw.url)).out;
    assert.ok(!/[\u007f-\u009f\u202e]/.test(json), "JSON output escapes what JSON.stringify leaves raw");
    assert.ok((JSON.parse(json) as { name: string }[]).some((k) => k.name === evil), "and is still the same JSON");
  });
});
