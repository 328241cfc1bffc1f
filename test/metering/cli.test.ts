import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gatewayPerSuite, streamOnce } from "./harness.js";
import { flotilla } from "./run-cli.js";

describe("flotilla tenants | keys | usage", () => {
  const suite = gatewayPerSuite();

  test("create a tenant and a key, use it, read usage as a table, revoke, delete", async () => {
    const created = await flotilla("tenants", "create", "team-a", "--rpm", "600", "--budget-usd", "5", "--priority", "batch", "--url", suite.gw.url);
    assert.match(created.out, /team-a\s+1\s+batch\s+600\s+-\s+-\s+5\.00\s+0\s+0/);
    const { out: key, err } = await flotilla("keys", "create", "team-a", "--name", "ci", "--url", suite.gw.url);
    assert.match(key.trim(), /^flt-[A-Za-z0-9_-]{43}$/);
    assert.match(err, /not shown again/);
    for (let i = 0; i < 2; i++) assert.equal((await streamOnce(suite.gw.url, key.trim(), `hello ${i}`, 4)).status, 200);

    const listed = await flotilla("keys", "list", "--url", suite.gw.url);
    assert.match(listed.out, /key_[0-9a-f]{16}\s+team-a\s+ci\s+flt-\S+…\s+\S+\s+active/);
    assert.ok(!listed.out.includes(key.trim()));

    const usage = await flotilla("usage", "--group-by", "tenant,model", "--url", suite.gw.url);
    assert.match(usage.out, /^usage from \S+ to \S+\ntenant\s+model\s+requests\s+input\s+cached\s+output\s+device-s\s+energy\s+cost \$\n/);
    assert.match(usage.out, /team-a\s+tiny\s+2\s+\d+\s+\d+\s+8\s+[\d.]+\s+[\d.]+ J\s+[\d.e-]+\n/);
    const own = await flotilla("usage", "--api-key", key.trim(), "--json", "--url", suite.gw.url);
    const report = JSON.parse(own.out) as { tenant: string; total: { requests: number; output_tokens: number } };
    assert.equal(report.tenant, "team-a");
    assert.deepEqual([report.total.requests, report.total.output_tokens], [2, 8]);

    const tenants = JSON.parse((await flotilla("tenants", "list", "--json", "--url", suite.gw.url)).out) as { id: string; state: { spent_usd: number } }[];
    assert.ok(tenants.find((t) => t.id === "team-a")!.state.spent_usd > 0);

    const keyId = (JSON.parse((await flotilla("keys", "list", "--json", "--tenant", "team-a", "--url", suite.gw.url)).out) as { id: string }[])[0]!.id;
    assert.equal((await flotilla("keys", "revoke", keyId, "--url", suite.gw.url)).out, `revoked ${keyId}\n`);
    assert.equal((await streamOnce(suite.gw.url, key.trim(), "x", 2)).status, 401);
    assert.equal((await flotilla("tenants", "delete", "team-a", "--url", suite.gw.url)).out, "deleted tenant team-a\n");
    await assert.rejects(flotilla("tenants", "delete", "team-a", "--url", suite.gw.url), /no tenant "team-a"/);
  });
});
