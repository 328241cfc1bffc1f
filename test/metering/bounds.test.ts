/**
 * Numbers at the edge: every backend accepts or refuses exactly the same
 * values, refusals are 400s naming the field and its range, and nothing a
 * client can send overflows a ledger column (a 500 or a false "ledger
 * unavailable" on Postgres while SQLite stored it).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MAX_OUTPUT_TOKENS } from "../../src/gateway/schemas.js";
import { MAX_LEDGER_TOKENS } from "../../src/store/types.js";
import { admin, backends, gatewayPerSuite, post, startTenantGateway } from "./harness.js";

type Field = "weight" | "requests_per_minute" | "tokens_per_minute" | "max_concurrent" | "monthly_budget_usd";
const spec = { weight: "weight", requests_per_minute: "requestsPerMinute", tokens_per_minute: "tokensPerMinute", max_concurrent: "maxConcurrent", monthly_budget_usd: "monthlyBudgetUsd" } as const;

/** Each value: accepted (true) or refused with a 400 naming the field (false). */
const CASES: readonly (readonly [Field, number | null, boolean])[] = [
  ...(["requests_per_minute", "tokens_per_minute"] as const).flatMap((f) =>
    [[0, false], [1, true], [1e9, true], [1e9 + 1, false], [2 ** 31, false], [3e9, false], [1e11, false], [1e300, false], [1.5, false], [-1, false], [null, true]].map(([v, ok]) => [f, v, ok] as const),
  ),
  ...[[0, false], [1, true], [1e6, true], [1e6 + 1, false], [3e9, false], [1e11, false], [1e300, false], [2.5, false]].map(([v, ok]) => ["max_concurrent", v, ok] as const),
  ...[[-0.01, false], [0, true], [1e-9, true], [9e6, true], [9e6 + 0.01, false], [1e11, false], [1e300, false], [null, true]].map(([v, ok]) => ["monthly_budget_usd", v, ok] as const),
  ...[[0, false], [0.0009, false], [0.001, true], [2.5, true], [1000, true], [1000.5, false], [1e300, false]].map(([v, ok]) => ["weight", v, ok] as const),
] as [Field, number | null, boolean][];

const stored = (t: Record<string, unknown>, f: Field): unknown => (f === "weight" ? t.weight : (t.limits as Record<string, unknown>)[f]);

for (const backend of backends) {
  describe(`numbers at the edge (${backend.name})`, { skip: backend.skip }, () => {
    const suite = gatewayPerSuite(backend);

    test("tenant limits: each boundary value is accepted and stored exactly, or refused with a 400 naming the field and its range, over HTTP and directly", async () => {
      let n = 0;
      const outcomes: string[] = [];
      for (const [field, value, accepted] of CASES) {
        const name = `b${n++}`;
        const res = await admin(suite.gw.url, "POST", "/admin/tenants", { name, [field]: value });
        const err = res.json.error as { param: string; message: string; code: string } | undefined;
        outcomes.push(`${field}=${value}: ${res.status}${err === undefined ? "" : ` ${err.param}`}`);
        if (accepted) {
          assert.equal(res.status, 201, `${field}=${value}: ${JSON.stringify(res.json)}`);
          assert.equal(stored((await admin(suite.gw.url, "GET", `/admin/tenants/${name}`)).json, field), value, `${field}=${value} reads back exactly`);
        } else {
          assert.equal(res.status, 400, `${field}=${value}: ${JSON.stringify(res.json)}`);
          assert.equal(err!.param, field);
          assert.match(err!.message, /must be (>=|<=|integer|number)/, `${field}=${value}: ${err!.message}`);
        }
        // The operator's API behind it (and the CLI's) draws the same line, with the whole range in its message.
        const direct = suite.gw.tenancy.createTenant({ id: `d${n}`, [spec[field]]: value });
        if (accepted) await direct;
        else await assert.rejects(direct, (e: { param?: string; message: string }) => e.param === field && /must be (an integer|a number) from [\d.,]+ to [\d,]+$/.test(e.message));
      }
      assert.equal(outcomes.length, CASES.length);
    });

    test("max_tokens and max_completion_tokens are bounded so a request's worst case always fits the ledger", async () => {
      for (const [path, field, body] of [
        ["/v1/completions", "max_tokens", { model: "tiny", prompt: "hi" }],
        ["/v1/chat/completions", "max_completion_tokens", { model: "tiny", messages: [{ role: "user", content: "hi" }] }],
        ["/v1/chat/completions", "max_tokens", { model: "tiny", messages: [{ role: "user", content: "hi" }] }],
      ] as const) {
        for (const v of [9e15, MAX_OUTPUT_TOKENS + 1]) {
          const res = await post(suite.gw.url, path, { ...body, [field]: v });
          assert.equal(res.status, 400, `${field}=${v}`);
          const { error } = (await res.json()) as { error: { param: string; message: string } };
          assert.deepEqual([error.param, error.message], [field, `${field} must be <= ${MAX_OUTPUT_TOKENS}`]);
        }
        // At the bound the schema lets it through; this model's context window is what refuses it.
        const res = await post(suite.gw.url, path, { ...body, [field]: MAX_OUTPUT_TOKENS });
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, "context_length_exceeded");
      }
      // The ledger takes the largest reservation a request can make: two legs of the longest output.
      await suite.gw.tenancy.createTenant({ id: "big", tokensPerMinute: 1e9 });
      const principal = { tenantId: "big", keyId: "k" };
      const ticket = await suite.gw.tenancy.admit({ requestId: "max", principal, model: "tiny", endpoint: "chat", stream: false, maxTokens: MAX_OUTPUT_TOKENS, legs: 2 });
      await ticket.settle({ status: "ok", usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 }, replica: "tiny/0", attempts: 1, continuations: 0, durationMs: 1 });
      const [row] = await suite.gw.store.ledger({ tenantId: "big" });
      assert.deepEqual([row!.reservedTokens, row!.status], [2 * MAX_OUTPUT_TOKENS, "ok"]);
    });

    test("a worst case past the ledger's token columns is a 400, never a ledger error", async () => {
      const huge = await startTenantGateway(suite.db.url, { tenancy: { countPromptTokens: () => MAX_LEDGER_TOKENS } });
      try {
        const res = await post(huge.url, "/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 1 });
        assert.equal(res.status, 400);
        assert.equal(((await res.json()) as { error: { param: string } }).error.param, "prompt");
      } finally {
        await huge.close();
      }
    });

    test("usage times outside 1970-9999 are a 400 naming the parameter and the range", async () => {
      for (const path of ["/admin/usage", "/v1/usage"]) {
        for (const [param, value] of [["to", "99999999999999999999"], ["from", "253402300800"], ["to", "+010000-01-01T00:00:00Z"], ["from", "1969-12-31"]] as const) {
          const res = await fetch(`${suite.gw.url}${path}?${param}=${encodeURIComponent(value)}`);
          assert.equal(res.status, 400, `${path} ${param}=${value}`);
          const { error } = (await res.json()) as { error: { param: string; message: string } };
          assert.equal(error.param, param);
          assert.match(error.message, /from 1970-01-01 to 9999-12-31 \(Unix seconds 0 to 253402300799\)/);
        }
        assert.equal((await fetch(`${suite.gw.url}${path}?from=0&to=253402300799`)).status, 200);
      }
    });
  });
}
