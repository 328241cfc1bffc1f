/**
 * Real gateway processes (`flotilla serve`): killed with SIGKILL mid-stream
 * and restarted, two of them sharing one Postgres ledger under a budget, and
 * two in separate PID namespaces that must not take each other for dead.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { openStore, type Store } from "../../src/store/index.js";
import { NUSD_PER_USD } from "../../src/store/types.js";
import { eventually } from "../helpers.js";
import { TINY_MODEL, admin, backends, post, postgresBackend, readStream, streamOnce } from "./harness.js";
import { CLI } from "../paths.js";

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

/** A short lease, so a killed process's rows are recovered within the test. */
const LEASE_MS = 1_200;

/** A fleet of the tiny model, or (with `upstream`) of one OpenAI-compatible server. */
function fleetFile(storeUrl: string, opts: { upstream?: string; commitMs?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-proc-"));
  dirs.push(dir);
  const file = join(dir, "fleet.yaml");
  const replica =
    opts.upstream === undefined
      ? ["      - engine: local", `        path: ${TINY_MODEL}`, "        parallel: 4", "        context: 2048", "        max_queue: 256"]
      : ["      - engine: openai", `        url: ${opts.upstream}`, "        upstream_model: held", "        spec: llama-3.1-8b", "        parallel: 8"];
  writeFileSync(
    file,
    [
      "server:",
      `  store: "${storeUrl}"`,
      "  shutdown_grace_ms: 2000",
      `  instance_lease_ms: ${LEASE_MS}`,
      ...(opts.commitMs === undefined ? [] : [`  ledger_commit_ms: ${opts.commitMs}`]),
      "models:",
      "  - name: tiny",
      "    replicas:",
      ...replica,
      "        hardware: h100",
      "",
    ].join("\n"),
  );
  return file;
}

/** `flotilla serve` on the fleet file; `wrap` runs it under another command (unshare). */
function serve(config: string, logLevel = "warn", wrap: readonly string[] = []): Promise<Proc> {
  const argv = [process.execPath, ...CLI, "serve", "--config", config, "--port", "0", "--log-level", logLevel];
  const [command, ...args] = [...wrap, ...argv] as [string, ...string[]];
  const child = spawn(command, args, {
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
      // The startup line, not a log line that mentions the ledger.
      if (m !== null && /^ {2}usage ledger: /m.test(out)) {
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

      // Each stream's row settles just after its last chunk; under a loaded machine that can take a while.
      const rows = await settledLedger(store, "budget", 20_000);
      assert.equal(rows.length, n);
      assert.equal(new Set(rows.map((r) => r.id)).size, n);
      // Which process wins the reservations is a race (under load one can take all N before the other's first
      // request reaches the database); that each got 100 of the requests at once and N succeeded in all is the point.
      assert.ok(rows.every((r) => r.instanceId !== undefined && r.instanceId !== ""), "every row names the process that admitted it");
      assert.deepEqual(rows.filter((r) => r.status !== "ok").map((r) => [r.status, r.errorCode, r.outputTokens]), [], "every admitted request settled ok");
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

/** Why the PID-namespace test cannot run here, or false when it can. */
function unshareSkip(): string | false {
  const r = spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", "echo 29999 > /proc/sys/kernel/ns_last_pid"], { stdio: "ignore" });
  if (r.status === 0) return false;
  return `skipped: "unshare --pid --fork --mount-proc" (and setting a pid in the new namespace) failed here (${r.error?.message ?? `exit status ${r.status}`}); it needs root`;
}

/**
 * An OpenAI-compatible server that streams one token of each completion at
 * once and the rest only when told: requests that run exactly as long as a
 * test needs them to.
 */
async function holdingUpstream(): Promise<{ url: string; held(): number; finish(): void; close(): Promise<void> }> {
  const held: ServerResponse[] = [];
  const chunk = (body: unknown): string => `data: ${JSON.stringify(body)}\n\n`;
  const server = createServer((req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"object":"list","data":[]}');
      return;
    }
    req.resume();
    req.once("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ choices: [{ index: 0, text: "a", finish_reason: null }] }));
      held.push(res);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => held.filter((r) => !r.writableEnded && !r.destroyed).length,
    finish: () => {
      for (const res of held.splice(0)) res.end(chunk({ choices: [{ index: 0, text: "", finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 1 } }) + "data: [DONE]\n\n");
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

describe("two gateway processes in separate PID namespaces sharing Postgres", { skip: postgresBackend.skip || unshareSkip() }, () => {
  test("neither takes the other for dead across many heartbeats: a long request stays running, and max_concurrent 2 never lets a third run", async () => {
    const db = await postgresBackend.fresh();
    const upstream = await holdingUpstream();
    const config = fleetFile(db.url, { upstream: upstream.url });
    const store = await openStore(db.url);
    const procs: Proc[] = [];
    const unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    try {
      // Containers with host networking: one hostname, a PID namespace each. The sweeper is pid 1 in its
      // namespace; the holder is pid 30000 in its own, a pid the sweeper's namespace does not have
      // (low pids would be the sweeper's own threads, which signal 0 finds).
      const sweeper = await serve(config, "warn", unshare);
      procs.push(sweeper);
      const holder = await serve(config, "warn", [...unshare, "sh", "-c", 'echo 29999 > /proc/sys/kernel/ns_last_pid; "$@" & wait $!', "sh"]);
      procs.push(holder);
      const instances = await store.listInstances();
      assert.deepEqual(instances.map((i) => [i.host, i.pid]).sort(), [[hostname(), 1], [hostname(), 30000]], "the setup: one hostname, separate PID namespaces");
      const sweeperId = instances.find((i) => i.pid === 1)!.id;

      const key = await tenantWithKey(sweeper.url, "pair", { max_concurrent: 2 });
      const ask = (url: string) => post(url, "/v1/completions", { model: "tiny", prompt: "hold", max_tokens: 64, stream: true }, key);
      const long = [await ask(holder.url)];
      await eventually(async () => upstream.held() === 1, "the holder's request to reach the engine");
      long.push(await ask(sweeper.url));
      await eventually(async () => upstream.held() === 2, "the sweeper's request to reach the engine");
      assert.deepEqual(long.map((r) => r.status), [200, 200]);

      // Watch the sweeper heartbeat (and sweep) six times; the holder's request must stay running throughout.
      const beats = new Set<number>();
      await eventually(
        async () => {
          beats.add((await store.listInstances()).find((i) => i.id === sweeperId)!.heartbeatAt);
          const rows = await store.ledger({ tenantId: "pair" });
          assert.deepEqual(rows.map((r) => r.status), ["running", "running"], `after ${beats.size} heartbeats of the sweeper`);
          assert.ok(upstream.held() <= 2);
          return beats.size > 6;
        },
        "six heartbeats of the sweeper",
        15_000,
      );
      assert.equal((await store.getTenant("pair"))!.state.inFlight, 2);
      const third = await ask(sweeper.url);
      assert.equal(third.status, 429);
      assert.equal(((await third.json()) as { error: { param: string } }).error.param, "max_concurrent");
      assert.equal(upstream.held(), 2, "never more than max_concurrent running");

      upstream.finish();
      for (const res of long) assert.ok((await readStream(res)).done);
      await eventually(async () => (await store.ledger({ tenantId: "pair" })).every((r) => r.status === "ok"), "both requests to settle");
      assert.deepEqual([(await store.getTenant("pair"))!.state.inFlight], [0]);
    } finally {
      for (const p of procs) p.child.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
      await upstream.close();
      await store.close();
      await db.drop();
    }
  });
});

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
