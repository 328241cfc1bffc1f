/**
 * What the twin needs of every request, on the ledger row: the answering
 * replica's setup and the generation's timing (batch at its start and while
 * it decoded, TTFT, TPOT), on both backends; null where there was no first
 * token.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { openStore, type AdmitInput, type LedgerFilter, type LedgerRow, type SettleInput, type Store } from "../../src/store/index.js";
import { eventually } from "../helpers.js";
import { backends, post, startTenantGateway, TINY_MODEL, type TenantGateway } from "./harness.js";
import { pacedUpstream, type PacedUpstream } from "./paced-upstream.js";

const T0 = Date.UTC(2025, 5, 1);

function admitted(id: string, at: number, instanceId: string): AdmitInput {
  return { id, requestId: id, tenantId: "anonymous", keyId: null, model: "m", endpoint: "chat", stream: true, reservedNusd: 0, reservedTokens: 100, outputBounded: true, instanceId, now: at };
}

function settled(id: string, at: number, extra: Partial<SettleInput> = {}): SettleInput {
  return {
    id, status: "ok", errorCode: null, estimated: false, replica: "m/0", hardware: "h100",
    inputTokens: 120, cachedTokens: 0, outputTokens: 30, deviceSeconds: 0.1, energyJ: 1, costNusd: 10, attempts: 1, continuations: 0, now: at,
    ...extra,
  };
}

/** The rows `filter` selects once `count` of them are settled (a response reaches its client just before its row is settled). */
async function settledRows(store: Store, filter: LedgerFilter, count: number): Promise<LedgerRow[]> {
  let rows: LedgerRow[] = [];
  await eventually(async () => (rows = (await store.ledger(filter)).filter((r) => r.status !== "running")).length >= count, `${count} settled rows`);
  return rows;
}

/** An upstream that fails every generation with a 500, before any token. */
async function failingUpstream(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    if (req.method === "GET") return void res.end("ok");
    res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom"}}');
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

for (const backend of backends) {
  describe(`ledger rows carry the twin's timing (${backend.name})`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let store: Store;

    before(async () => {
      db = await backend.fresh();
      store = await openStore(db.url);
      await store.registerInstance({ id: "i1", host: "h", pid: 1, startedAt: T0, heartbeatAt: T0 });
    });
    after(async () => {
      await store?.close();
      await db?.drop();
    });

    test("a settlement's setup and timing round-trip; one without them leaves nulls; the ledger filters by them", async () => {
      const timing = { batch: 3, batchMean: 2.5, ttftMs: 41.25, tpotMs: 12.5 };
      const setup = { spec: "llama-3.1-8b", precision: "fp8", tp: 2 };
      await store.admit(admitted("a", T0, "i1"));
      await store.admit(admitted("b", T0 + 1000, "i1"));
      await store.admit(admitted("c", T0 + 2000, "i1"));
      await store.settle(settled("a", T0 + 10, { setup, timing }));
      await store.settle(settled("b", T0 + 1010, { status: "failed", errorCode: "engine_error", outputTokens: 0 }));
      await store.settle(settled("c", T0 + 2010, { replica: "m/1", hardware: "a100", setup, timing: { ...timing, batchMean: null, tpotMs: null } }));
      const rows = new Map((await store.ledger()).map((r) => [r.id, r]));
      assert.deepEqual(rows.get("a")!.timing, timing);
      assert.deepEqual(rows.get("a")!.setup, setup);
      assert.equal(rows.get("b")!.timing, null);
      assert.equal(rows.get("b")!.setup, null);
      assert.deepEqual(rows.get("c")!.timing, { ...timing, batchMean: null, tpotMs: null });
      assert.deepEqual((await store.ledger({ timed: true })).map((r) => r.id), ["a", "c"]);
      assert.deepEqual((await store.ledger({ timed: true, since: T0 + 500 })).map((r) => r.id), ["c"]);
      assert.deepEqual((await store.ledger({ replica: "m/0" })).map((r) => r.id), ["a", "b"]);
      assert.deepEqual((await store.ledger({ hardware: "a100" })).map((r) => r.id), ["c"]);
    });
  });

  describe(`the gateway times what it serves into the ledger (${backend.name})`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let gw: TenantGateway;
    let upstream: { url: string; server: Server };
    let paced: PacedUpstream;

    before(async () => {
      db = await backend.fresh();
      upstream = await failingUpstream();
      paced = await pacedUpstream({ firstMs: 20, everyMs: 10, tokens: 20, promptTokens: 50 });
      const local = { engine: "local", path: TINY_MODEL, parallel: 2, context: 1024, hardware: "h100", precision: "bf16" };
      const models = [
        { name: "tiny", replicas: [local] },
        { name: "broken", replicas: [{ engine: "openai", url: upstream.url, context: 512 }] },
        { name: "paced", replicas: [{ engine: "openai", url: paced.url, context: 512, parallel: 4 }] },
      ];
      gw = await startTenantGateway(db.url, { config: { models }, gateway: { hedge: false, readyWaitMs: 100 } });
    });
    after(async () => {
      await gw?.close();
      upstream?.server.close();
      paced?.close();
      await db?.drop();
    });

    test("an answered request's row has its setup, batch, TTFT and TPOT", async () => {
      const res = await post(gw.url, "/v1/completions", { model: "tiny", prompt: "The fleet moves on", max_tokens: 12, temperature: 0 }, undefined);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { id: string; usage: { completion_tokens: number } };
      const row = (await settledRows(gw.store, { tenantId: "anonymous" }, 1)).find((r) => body.id.endsWith(r.requestId))!;
      assert.equal(row.status, "ok");
      assert.equal(row.setup?.precision, "bf16");
      assert.equal(row.setup?.tp, 1);
      assert.ok(row.setup!.spec.length > 0);
      const t = row.timing!;
      assert.equal(t.batch, 1, "alone on its replica");
      assert.ok(t.ttftMs > 0 && t.ttftMs < 10_000, `ttft ${t.ttftMs}`);
      if (body.usage.completion_tokens >= 2) {
        assert.ok(t.tpotMs !== null && t.tpotMs > 0, `tpot ${t.tpotMs}`);
        assert.ok(t.batchMean !== null && Math.abs(t.batchMean - 1) < 1e-9, `mean batch ${t.batchMean}`);
      }
    });

    test("overlapping requests record the batch they joined and the mean batch they decoded among", async () => {
      // 20 tokens 10 ms apart: the second is sent once the first has 5, so it joins mid-decode and outlasts it.
      const send = (): Promise<Response> => post(gw.url, "/v1/completions", { model: "paced", prompt: "Two at once", max_tokens: 20 }, undefined);
      const sentBefore = paced.tokensSent;
      const first = send();
      await eventually(() => paced.tokensSent >= sentBefore + 5, "the first request to be decoding", 10_000);
      const responses = await Promise.all([first, send()]);
      for (const r of responses) assert.equal(r.status, 200);
      const rows = await settledRows(gw.store, { tenantId: "anonymous", timed: true, replica: "paced/0" }, 2);
      assert.deepEqual(rows.map((r) => r.timing!.batch), [1, 2]);
      const [a, b] = rows.map((r) => r.timing!);
      // Each shared part of its decode with the other: its mean is between 1 and 2.
      for (const t of [a!, b!]) assert.ok(t.batchMean! > 1 && t.batchMean! < 2, `mean batch ${t.batchMean}`);
      assert.ok(a!.tpotMs! >= 9, `tpot ${a!.tpotMs}`);
    });

    test("a request that failed before its first token has no timing", async () => {
      const res = await post(gw.url, "/v1/completions", { model: "broken", prompt: "x", max_tokens: 4 }, undefined);
      assert.ok(res.status >= 500, String(res.status));
      const [row] = await settledRows(gw.store, { tenantId: "anonymous", status: "failed" }, 1);
      assert.equal(row!.timing, null);
      assert.equal(row!.setup, null, "no hardware in the fleet file");
    });
  });
}
