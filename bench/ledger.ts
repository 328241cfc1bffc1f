/**
 * The ledger's own cost per request, without HTTP: `--inflight` requests at a
 * time each admit, then settle, against one store, as the gateway's request
 * path does (an anonymous request and a tenant's with limits). Prints
 * requests per second and microseconds of the process's CPU per request.
 *
 * Rows are keyed as the gateway keys them (time-ordered ids); `--ids random`
 * keys them by random UUIDs, as it did before ae8b722, for the difference.
 *
 *   node --import tsx bench/ledger.ts [--store sqlite|postgres://…] [--seconds 3] [--inflight 32] [--ids time|random]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { timeOrderedId } from "../src/store/time-ordered-id.js";
import { openStore, type AdmitInput, type SettleInput, type Store } from "../src/store/index.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1]!;
};
const SECONDS = Number(arg("--seconds", "3"));
const INFLIGHT = Number(arg("--inflight", "32"));
const URL = arg("--store", "sqlite");
const newId = arg("--ids", "time") === "random" ? () => randomUUID() : () => timeOrderedId(Date.now());

const admission = (tenantId: string): AdmitInput => {
  const id = newId();
  return { id, requestId: id, tenantId, keyId: null, model: "m", endpoint: "chat", stream: false, reservedNusd: 100, reservedTokens: 32, outputBounded: true, instanceId: "bench", now: Date.now() };
};
const settlement = (id: string): SettleInput => ({
  id, status: "ok", errorCode: null, estimated: false, replica: "m/0", hardware: "h100", inputTokens: 8, cachedTokens: 0, outputTokens: 16, deviceSeconds: 0.01, energyJ: 2, costNusd: 80, attempts: 1, continuations: 0, now: Date.now(),
});

async function drive(store: Store, tenantId: string): Promise<{ rps: number; cpuUs: number }> {
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      const a = admission(tenantId);
      const outcome = await store.admit(a);
      if (!outcome.ok) throw new Error(`refused: ${outcome.reason}`);
      await store.settle(settlement(a.id));
      done++;
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  const cpu = process.cpuUsage(cpu0);
  return { rps: done / ((performance.now() - t0) / 1000), cpuUs: (cpu.user + cpu.system) / done };
}

const dir = await mkdtemp(join(tmpdir(), "flotilla-ledger-bench-"));
try {
  const store = await openStore(URL === "sqlite" ? `sqlite:${join(dir, "ledger.db")}` : URL);
  await store.registerInstance({ id: "bench", host: "bench", pid: process.pid, startedAt: Date.now(), heartbeatAt: Date.now() });
  const tenant = `bench-${process.pid}`;
  await store.createTenant({ id: tenant, weight: 1, priority: "interactive", requestsPerMinute: 1e9, tokensPerMinute: 1e9, maxConcurrent: 1e6, monthlyBudgetNusd: 1e15, createdAt: Date.now() });
  console.log(`store ${store.kind}, ${INFLIGHT} in flight, ${SECONDS} s each`);
  for (const [name, id] of [["anonymous", "anonymous"], ["tenant with limits", tenant]] as const) {
    const r = await drive(store, id);
    console.log(`${name.padEnd(20)} ${Math.round(r.rps).toLocaleString("en-US").padStart(8)} admit+settle/s  ${r.cpuUs.toFixed(1).padStart(7)} µs CPU each`);
  }
  await store.deleteTenant(tenant);
  await store.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
