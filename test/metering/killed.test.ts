/**
 * Real gateway processes (`flotilla serve`) killed with SIGKILL and
 * restarted: between a settlement's enqueue and its group's commit,
 * mid-stream, and mid-batch. Each test's rows must come out once, as
 * 'interrupted' where the work was cut, with every reservation released.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore } from "../../src/store/index.js";
import { eventually } from "../helpers.js";
import { fleetFile, serve, settledLedger, tenantWithKey, type Proc } from "./gateway-procs.js";
import { backends, post, streamOnce } from "./harness.js";

for (const backend of backends) {
  describe(`group commit: a settlement still waiting for its group when the gateway dies (${backend.name})`, { skip: backend.skip }, () => {
    test("kill -9 between enqueue and commit: the row was never acknowledged as settled, so recovery marks it 'interrupted' and counts it once", async () => {
      const db = await backend.fresh();
      const slow = fleetFile(db.url, { commitMs: 3_000 });
      const store = await openStore(db.url);
      let b: Proc | undefined;
      try {
        const a = await serve(slow);
        const key = await tenantWithKey(a.url, "gc", { max_concurrent: 2, monthly_budget_usd: 1 });
        // Its admission waits for its group (3 s) and commits before the engine runs; the answer comes whole.
        assert.equal((await streamOnce(a.url, key, "first", 4)).status, 200);
        // The settlement is now waiting for its own group: kill before it commits.
        a.child.kill("SIGKILL");
        await a.exited;
        const rows = await store.ledger({ tenantId: "gc" });
        assert.deepEqual(rows.map((r) => r.status), ["running"], "admitted (committed), never settled");
        assert.equal((await store.getTenant("gc"))!.state.inFlight, 1);

        b = await serve(fleetFile(db.url));
        let after = rows;
        await eventually(async () => (after = await store.ledger({ tenantId: "gc" })).some((r) => r.status === "interrupted"), "the unsettled request to be interrupted", 10_000);
        assert.equal(after.length, 1, "one row for one admitted request");
        assert.equal(after[0]!.errorCode, "gateway_exited");
        const state = (await store.getTenant("gc"))!.state;
        assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, 0], "the reservation is released, nothing is charged twice or at all");
      } finally {
        if (b !== undefined && b.child.exitCode === null) b.child.kill("SIGKILL");
        await store.close();
        await db.drop();
      }
    });
  });
}

for (const backend of backends) {
  describe(`a gateway killed mid-stream (${backend.name})`, { skip: backend.skip }, () => {
    test("kill -9 mid-stream, restart: the row says 'interrupted', reservations are released, nothing is counted twice, no key is logged", async () => {
      const db = await backend.fresh();
      const config = fleetFile(db.url);
      const store = await openStore(db.url);
      let b: Proc | undefined;
      try {
        const a = await serve(config, "trace");
        assert.match(a.output(), /\n {2}api keys: open to loopback callers until the first key is created\n/, "serve says which mode is in force");
        const key = await tenantWithKey(a.url, "k9", { max_concurrent: 2, monthly_budget_usd: 1 });
        assert.equal((await streamOnce(a.url, key, "first", 4)).status, 200);
        assert.deepEqual((await settledLedger(store, "k9")).map((r) => r.status), ["ok"], "settled before the kill");
        assert.equal((await post(a.url, "/v1/completions", { model: "tiny", prompt: "x", max_tokens: 2 }, `flt-${"B".repeat(43)}`)).status, 401);

        const res = await post(a.url, "/v1/completions", { model: "tiny", prompt: "a long one", max_tokens: 1800, stream: true }, key);
        assert.equal(res.status, 200);
        const reader = res.body!.getReader();
        let seen = "";
        while ((seen.match(/"text"/g)?.length ?? 0) < 3) seen += new TextDecoder().decode((await reader.read()).value);
        a.child.kill("SIGKILL");
        await a.exited;
        await reader.cancel().catch(() => {});

        const before = await store.ledger({ tenantId: "k9" });
        assert.deepEqual(before.map((r) => r.status).sort(), ["ok", "running"]);
        assert.equal((await store.getTenant("k9"))!.state.inFlight, 1);

        b = await serve(config, "trace");
        assert.match(b.output(), /\n {2}api keys: keys required \(a key has been created here; server\.require_keys: false turns this off\)\n/);
        // Once the killed process's lease has expired, the restarted one reaps it.
        let rows = before;
        await eventually(async () => (rows = await store.ledger({ tenantId: "k9" })).some((r) => r.status === "interrupted"), "the killed request to be interrupted", 10_000);
        assert.deepEqual(rows.map((r) => r.status).sort(), ["interrupted", "ok"]);
        const interrupted = rows.find((r) => r.status === "interrupted")!;
        assert.equal(interrupted.errorCode, "gateway_exited");
        assert.ok(interrupted.finishedAt !== null && interrupted.reservedNusd > 0);
        let state = (await store.getTenant("k9"))!.state;
        assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);

        // The restarted gateway serves the tenant, within its limits again.
        assert.equal((await streamOnce(b.url, key, "after", 4)).status, 200);
        const final = await settledLedger(store, "k9");
        assert.equal(final.length, 3);
        assert.equal(new Set(final.map((r) => r.id)).size, 3);
        state = (await store.getTenant("k9"))!.state;
        assert.equal(state.spentNusd, final.reduce((s, r) => s + r.costNusd, 0));
        assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);

        // SIGTERM: a clean stop unregisters the process.
        b.child.kill("SIGTERM");
        assert.equal(await b.exited, 0);
        assert.deepEqual(await store.listInstances(), []);
        const logs = a.output() + b.output();
        assert.ok(logs.includes('"level":10') || logs.includes('"level":30'), "trace logging was on");
        assert.ok(!logs.includes(key) && !logs.includes(key.slice(4)), "a key never appears in logs");
        assert.ok(!logs.includes("B".repeat(43)), "not even a wrong one");
      } finally {
        if (b !== undefined && b.child.exitCode === null) b.child.kill("SIGKILL");
        await store.close();
        await db.drop();
      }
    });
  });
}

/** Uploads `n` chat lines and starts a batch over them; returns the batch id. */
async function startBatch(url: string, key: string, n: number, maxTokens: number): Promise<string> {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `l${i}`, method: "POST", url: "/v1/chat/completions", body: { model: "tiny", messages: [{ role: "user", content: `line ${i}` }], max_tokens: maxTokens, temperature: 0 } }));
  const form = new FormData();
  form.append("purpose", "batch");
  form.append("file", new Blob([lines.join("\n")]), "in.jsonl");
  const auth = { authorization: `Bearer ${key}` };
  const file = (await (await fetch(`${url}/v1/files`, { method: "POST", body: form, headers: auth })).json()) as { id: string };
  const res = await post(url, "/v1/batches", { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }, key);
  assert.equal(res.status, 200);
  return ((await res.json()) as { id: string }).id;
}

async function batchOf(url: string, key: string, id: string): Promise<{ status: string; output_file_id: string | null; request_counts: { completed: number; failed: number; total: number } }> {
  return (await (await fetch(`${url}/v1/batches/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as never;
}

for (const backend of backends) {
  describe(`a gateway killed mid-batch (${backend.name})`, { skip: backend.skip }, () => {
    test("kill -9 mid-batch, restart: every line has one result and one charge; the lines in flight ran again, their first attempts charged nothing", async () => {
      const db = await backend.fresh();
      const config = fleetFile(db.url);
      const store = await openStore(db.url);
      let b: Proc | undefined;
      try {
        const a = await serve(config);
        const key = await tenantWithKey(a.url, "bk", { monthly_budget_usd: 1 });
        const id = await startBatch(a.url, key, 30, 24);
        await eventually(async () => (await batchOf(a.url, key, id)).request_counts.completed >= 3, "some lines to complete", 30_000);
        a.child.kill("SIGKILL");
        await a.exited;
        const killedAt = (await store.ledger({ tenantId: "bk" })).filter((r) => r.status === "running").length;

        b = await serve(config);
        let batch = await batchOf(b.url, key, id);
        await eventually(async () => (batch = await batchOf(b!.url, key, id)).status === "completed", "the batch to finish after the restart", 60_000);
        assert.deepEqual(batch.request_counts, { total: 30, completed: 30, failed: 0 });
        const out = (await (await fetch(`${b.url}/v1/files/${batch.output_file_id}/content`, { headers: { authorization: `Bearer ${key}` } })).text()).split("\n").filter((l) => l !== "");
        const ids = out.map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
        assert.equal(ids.length, 30);
        assert.equal(new Set(ids).size, 30, "no line has two results");

        const rows = await settledLedger(store, "bk", 10_000);
        const ok = rows.filter((r) => r.status === "ok");
        assert.equal(ok.length, 30, "one charged row per line");
        assert.equal(new Set(ok.map((r) => r.requestId)).size, 30);
        const others = rows.filter((r) => r.status !== "ok");
        assert.ok(others.length >= killedAt, `the ${killedAt} line(s) in flight at the kill left rows`);
        assert.ok(others.every((r) => r.costNusd === 0 && ["interrupted", "cancelled"].includes(r.status)), JSON.stringify(others.map((r) => [r.status, r.errorCode, r.costNusd])));
        const state = (await store.getTenant("bk"))!.state;
        assert.equal(state.spentNusd, ok.reduce((s, r) => s + r.costNusd, 0), "the tenant is charged what the ok rows say, once");
        assert.deepEqual([state.inFlight, state.reservedNusd], [0, 0]);
      } finally {
        if (b !== undefined && b.child.exitCode === null) b.child.kill("SIGKILL");
        await store.close();
        await db.drop();
      }
    });
  });
}
