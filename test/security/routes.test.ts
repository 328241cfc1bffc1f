/**
 * Every route says who may call it, and this table is the audit's copy: a
 * route added without a policy cannot be registered, and one added or
 * changed without updating this table fails here.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Fastify from "fastify";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { enforceAccess, type Access } from "../../src/gateway/access.js";
import { createGatewayWithShutdown } from "../../src/gateway/server.js";
import { openTenancy } from "../../src/metering/tenancy.js";
import { securedGateway } from "./harness.js";

const EXPECTED: Readonly<Record<string, Access>> = {
  "/healthz": "public",
  "/readyz": "public",
  "/health": "public",
  "/v1/models": "tenant",
  "/v1/models/*": "tenant",
  "/v1/chat/completions": "tenant",
  "/v1/completions": "tenant",
  "/v1/messages": "tenant",
  "/v1/responses": "tenant",
  "/v1/embeddings": "tenant",
  "/v1/usage": "tenant",
  "/v1/files": "tenant",
  "/v1/files/:id": "tenant",
  "/v1/files/:id/content": "tenant",
  "/v1/batches": "tenant",
  "/v1/batches/:id": "tenant",
  "/v1/batches/:id/cancel": "tenant",
  "/admin/replicas": "admin",
  "/admin/drain": "admin",
  "/admin/resume": "admin",
  "/admin/remove": "admin",
  "/admin/update": "admin",
  "/admin/reload": "admin",
  "/admin/tenants": "admin",
  "/admin/tenants/:id": "admin",
  "/admin/keys": "admin",
  "/admin/keys/:id": "admin",
  "/admin/usage": "admin",
  "/admin/batches": "admin",
  "/metrics": "observer",
  "/ui": "observer",
  "/ui/": "observer",
  "/ui/app.js": "observer",
  "/ui/style.css": "observer",
  "/ui/favicon.svg": "observer",
  "/ui/api/live": "observer",
  "/ui/api/events": "observer",
  "/ui/api/sim": "observer",
  "/ui/api/sim/:index": "observer",
};

function assertTable(routes: readonly { method: string; url: string; access: Access }[]): void {
  const seen = new Set<string>();
  for (const r of routes) {
    assert.equal(r.access, EXPECTED[r.url], `${r.method} ${r.url} has access "${r.access}"; the audited table says "${EXPECTED[r.url] ?? "(not listed)"}"`);
    seen.add(r.url);
  }
  assert.deepEqual([...seen].sort(), Object.keys(EXPECTED).sort(), "the gateway's routes and the audited table differ");
}

describe("route access policies", () => {
  it("every route of a gateway with a ledger has the audited policy", async () => {
    const g = await securedGateway("keys");
    try {
      assertTable(g.gateway.routes());
    } finally {
      await g.close();
    }
  });

  it("every route of a gateway without a ledger has the audited policy", async () => {
    const fleet = buildFleet(parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: "http://127.0.0.1:9", upstream_model: "m" }] }] }), { baseDir: ".", env: {} });
    const gateway = createGatewayWithShutdown({ fleet, tenancy: openTenancy, logLevel: "silent" });
    try {
      await gateway.app.ready();
      assertTable(gateway.routes());
    } finally {
      await gateway.app.close();
    }
  });

  it("a route that declares no policy cannot be registered: the server does not start", async () => {
    const app = Fastify();
    enforceAccess(app, { tenancy: openTenancy });
    app.get("/healthz", { config: { access: "public" } }, () => "ok");
    assert.throws(() => app.get("/v1/secret", () => "data"), /GET \/v1\/secret declares no access policy/);
    await app.close();
  });
});
