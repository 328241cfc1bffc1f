/**
 * Real gateway processes (`flotilla serve`) sharing one Postgres ledger:
 * two under one budget, and two in separate PID namespaces that must not
 * take each other for dead.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { describe, test } from "node:test";
import { openStore } from "../../src/store/index.js";
import { NUSD_PER_USD } from "../../src/store/types.js";
import { eventually } from "../helpers.js";
import { fleetFile, serve, settledLedger, tenantWithKey, type Proc } from "./gateway-procs.js";
import { admin, post, postgresBackend, readStream, streamOnce } from "./harness.js";

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
