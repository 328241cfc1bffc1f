/**
 * Real gateway processes (`flotilla serve`): killed with SIGKILL mid-stream
 * and restarted, and two of them sharing one Postgres ledger under a budget.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { openStore, type Store } from "../../src/store/index.js";
import { NUSD_PER_USD } from "../../src/store/types.js";
import { ENTRY, TINY_MODEL, admin, backends, post, postgresBackend, streamOnce } from "./harness.js";

interface Proc {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fleetFile(storeUrl: string): string {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-proc-"));
  dirs.push(dir);
  const file = join(dir, "fleet.yaml");
  writeFileSync(
    file,
    [
      "server:",
      `  store: "${storeUrl}"`,
      "  shutdown_grace_ms: 2000",
      "models:",
      "  - name: tiny",
      "    replicas:",
      "      - engine: local",
      `        path: ${TINY_MODEL}`,
      "        parallel: 4",
      "        context: 2048",
      "        max_queue: 256",
      "        hardware: h100",
      "",
    ].join("\n"),
  );
  return file;
}

function serve(config: string, logLevel = "warn"): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", ENTRY, "serve", "--config", config, "--port", "0", "--log-level", logLevel], {
    env: { ...process.env, FLOTILLA_HOME: join(config, "..") },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /flotilla listening on (http:\/\/\S+)/.exec(out);
      if (m !== null && out.includes("usage ledger:")) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child, output: () => out, exited });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before listening:\n${out}`));
    });
  });
}

async function tenantWithKey(url: string, name: string, limits: Record<string, unknown> = {}): Promise<string> {
  const t = await admin(url, "POST", "/admin/tenants", { name, ...limits });
  assert.equal(t.status, 201, JSON.stringify(t.json));
  const k = await admin(url, "POST", "/admin/keys", { tenant: name });
  assert.equal(k.status, 201, JSON.stringify(k.json));
  return k.json.key as string;
}

async function settledLedger(store: Store, tenantId: string, timeoutMs = 5000): Promise<Awaited<ReturnType<Store["ledger"]>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await store.ledger({ tenantId });
    if (rows.every((r) => r.status !== "running") || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 25));
  }
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
        const key = await tenantWithKey(a.url, "k9", { max_concurrent: 2, monthly_budget_usd: 1 });
        assert.equal((await streamOnce(a.url, key, "first", 4)).status, 200);
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
        const rows = await store.ledger({ tenantId: "k9" });
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

describe("two gateway processes sharing Postgres", { skip: postgresBackend.skip }, () => {
  test("200 parallel streams over both against a budget for N: exactly N succeed, the rest 429, the ledger sums to the budget within one request", async () => {
    const db = await postgresBackend.fresh();
    const config = fleetFile(db.url);
    const store = await openStore(db.url);
    const procs: Proc[] = [];
    try {
      procs.push(...(await Promise.all([serve(config), serve(config)])));
      const [a, b] = procs as [Proc, Proc];
      const n = 25;
      const maxTokens = 8;
      const ck = await tenantWithKey(a.url, "calibration");
      assert.equal((await streamOnce(b.url, ck, "request 000", maxTokens)).status, 200);
      const w = (await settledLedger(store, "calibration"))[0]!.reservedNusd;
      const budgetNusd = n * w + Math.floor(w / 2);
      const key = await tenantWithKey(b.url, "budget", { monthly_budget_usd: budgetNusd / NUSD_PER_USD });

      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => streamOnce(i % 2 === 0 ? a.url : b.url, key, `request ${String(i).padStart(3, "0")}`, maxTokens)));
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 429);
      assert.equal(ok.length, n);
      assert.equal(refused.length, 200 - n);
      assert.ok(refused.every((r) => r.error?.param === "monthly_budget"));

      const rows = await settledLedger(store, "budget");
      assert.equal(rows.length, n);
      assert.equal(new Set(rows.map((r) => r.id)).size, n);
      assert.equal(new Set(rows.map((r) => r.instanceId)).size, 2, "both processes admitted some");
      assert.ok(rows.every((r) => r.status === "ok"));
      const spent = rows.reduce((s, r) => s + r.costNusd, 0);
      assert.ok(spent <= budgetNusd, `spent ${spent} > budget ${budgetNusd}`);
      assert.ok(spent > budgetNusd - w, `spent ${spent} is more than one request (${w}) under the budget ${budgetNusd}`);
      assert.equal(ok.reduce((s, r) => s + Math.round((r.x!.cost_usd as number) * NUSD_PER_USD), 0), spent);
      const { state } = (await store.getTenant("budget"))!;
      assert.deepEqual([state.inFlight, state.reservedNusd, state.spentNusd], [0, 0, spent]);

      // Both processes see revocation at once.
      const { json } = await admin(a.url, "GET", "/admin/keys?tenant=budget");
      await admin(a.url, "DELETE", `/admin/keys/${(json.data as { id: string }[])[0]!.id}`);
      assert.equal((await streamOnce(b.url, key, "x", 2)).status, 401);
    } finally {
      for (const p of procs) p.child.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
      await store.close();
      await db.drop();
    }
  });
});
