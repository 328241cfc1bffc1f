/**
 * docs/api.md lists every route the gateway serves, by method and path: a
 * route added without its documented statuses fails here, as one added
 * without an audited access policy fails routes.test.ts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { securedGateway } from "./harness.js";
import { repoPath } from "../paths.js";

const DOC = readFileSync(repoPath("docs/api.md"), "utf8");

describe("the route reference", () => {
  it("names every route the gateway serves, and none it does not", async () => {
    const g = await securedGateway("keys");
    try {
      const served = new Set(g.gateway.routes().filter((r) => r.method !== "HEAD").map((r) => `${r.method} ${r.url}`));
      const missing = [...served].filter((r) => !DOC.includes(`\`${r}\``));
      assert.deepEqual(missing, [], "routes without a line in docs/api.md");
      const documented = [...DOC.matchAll(/`((?:GET|POST|DELETE|PUT|PATCH) \/[^`]*)`/g)].map((m) => m[1]!);
      assert.deepEqual(documented.filter((r) => !served.has(r)), [], "docs/api.md names routes the gateway does not serve");
    } finally {
      await g.close();
    }
  });
});
