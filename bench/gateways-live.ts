/**
 * Two live `flotilla serve` processes on one Postgres store in front of the
 * same three upstreams, with plain prefix-aware routing: conversations with
 * no session id and no `user` whose turns alternate between the gateways,
 * a think time between turns. Run with the gateways telling each other
 * their placements and load every 50 ms (`server.peer_sync_ms`, the
 * default) and with that off; prints the share of later turns that land on
 * their conversation's first replica and the requests per replica, then
 * what telling costs: the first gateway's rate with 32 requests in flight
 * for 8 s (ledger on, the second gateway listening).
 *
 * The upstreams are the chaos tests' fake (each answer token 5 ms apart),
 * so the affinity is measured on real processes, timers and NOTIFYs, not
 * on engines: what a replica holds is the gateway's own index.
 *
 *   node --import tsx bench/gateways-live.ts --pg postgresql://postgres@127.0.0.1:5432/postgres [--conversations 200] [--think-ms 200] [--sync 50,0,0,50]
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { opening } from "../test/chaos/harness.js";
import { runLoad } from "./lib/load.js";
import { fakeProc, freePort, UpstreamProc } from "./lib/upstream-procs.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const PG = arg("pg", process.env.FLOTILLA_TEST_PG_URL ?? "");
const CONVERSATIONS = Number(arg("conversations", "200"));
const TURNS = 4;
const AT_ONCE = 16;
const THINK_MS = Number(arg("think-ms", "200"));
const SYNCS = arg("sync", "50,0,0,50").split(",").map(Number);
const ROOT = resolve(import.meta.dirname, "..");
let runs = 0;

if (PG === "") {
  process.stderr.write("give --pg URL (a Postgres server this bench may create a database on)\n");
  process.exit(2);
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function ask(url: string, messages: readonly { role: string; content: string }[]): Promise<{ replica: string; text: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages, max_tokens: 8 }) });
  const body = (await res.json()) as { choices?: { message: { content: string } }[] };
  if (res.status !== 200 || body.choices === undefined) throw new Error(`${res.status}: ${JSON.stringify(body)}`);
  return { replica: res.headers.get("x-flotilla-replica") ?? "", text: body.choices[0]!.message.content, ms: performance.now() - t0 };
}

interface Outcome {
  readonly sync: number;
  readonly same: number;
  readonly perReplica: number[];
  readonly p50Ms: number;
  readonly rps: number;
}

async function run(sync: number, upstreams: readonly string[], dir: string): Promise<Outcome> {
  const db = `flotilla_bench_${process.pid}_${sync}_${runs++}`;
  await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${db}`);
  const url = new URL(PG);
  url.pathname = `/${db}`;
  const fleet = join(dir, `fleet-${sync}.yaml`);
  const replicas = upstreams.map((u) => `      - { engine: openai, url: "${u}", upstream_model: fake, parallel: 64, metrics_interval_ms: 0 }`).join("\n");
  await writeFile(fleet, `server:\n  store: "${url}"\n  policy: prefix-aware\n  peer_sync_ms: ${sync}\nmodels:\n  - name: m\n    replicas:\n${replicas}\n`);
  const gateways: UpstreamProc[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const gw = new UpstreamProc(port, ["--import", "tsx", join(ROOT, "src/cli/run.ts"), "serve", "--config", fleet, "--port", String(port), "--log-level", "error"], /flotilla listening on/, `gateway ${i}`, { ...process.env, FLOTILLA_HOME: dir });
      await gw.start();
      gateways.push(gw);
    }
    const talk = await converse(gateways.map((g) => g.url));
    const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: opening(-1) }], max_tokens: 8 });
    const load = await runLoad({ url: gateways[0]!.url, path: "/v1/chat/completions", body, concurrency: 32, durationMs: 8_000, warmupMs: 2_000, readBody: true });
    if (load.errors > 0) throw new Error(`${load.errors} requests failed under load`);
    return { sync, ...talk, rps: load.rps };
  } finally {
    for (const g of gateways) g.kill();
    await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
}

async function converse(fronts: readonly string[]): Promise<Omit<Outcome, "sync" | "rps">> {
  let same = 0;
  let later = 0;
  const perReplica = new Map<string, number>();
  const times: number[] = [];
  const conversation = async (c: number): Promise<void> => {
    const messages = [{ role: "user", content: opening(c) }];
    let first = "";
    for (let turn = 0; turn < TURNS; turn++) {
      const { replica, text, ms } = await ask(fronts[(c + turn) % 2]!, messages);
      times.push(ms);
      perReplica.set(replica, (perReplica.get(replica) ?? 0) + 1);
      if (turn === 0) first = replica;
      else {
        later++;
        if (replica === first) same++;
      }
      messages.push({ role: "assistant", content: text }, { role: "user", content: `Turn ${turn + 1}: and then?` });
      // The user reads and types: half to one and a half think times.
      await new Promise((r) => setTimeout(r, THINK_MS * (0.5 + Math.random())));
    }
  };
  let next = 0;
  await Promise.all(Array.from({ length: AT_ONCE }, async () => {
    while (next < CONVERSATIONS) await conversation(next++);
  }));
  times.sort((a, b) => a - b);
  return { same: same / later, perReplica: [...perReplica.values()], p50Ms: times[Math.floor(times.length / 2)]! };
}

const dir = await mkdtemp(join(tmpdir(), "flotilla-gateways-live-"));
const upstreams: UpstreamProc[] = [];
try {
  for (let i = 0; i < 3; i++) {
    const up = fakeProc(await freePort(), { tokenDelayMs: 5 });
    await up.start();
    upstreams.push(up);
  }
  console.log(`two gateways on one Postgres, 3 fake upstreams (5 ms a token), prefix-aware; ${CONVERSATIONS} conversations of ${TURNS} turns alternating between the gateways, ${AT_ONCE} at a time, think time ${THINK_MS} ms x U(0.5, 1.5); node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "?"})\n`);
  console.log("| peer_sync_ms | later turns on the first turn's replica | requests per replica | max / mean | p50 ms | req/s, 32 in flight |");
  console.log("|---:|---:|---|---:|---:|---:|");
  for (const sync of SYNCS) {
    const o = await run(sync, upstreams.map((u) => u.url), dir);
    const mean = o.perReplica.reduce((a, b) => a + b, 0) / 3;
    console.log(`| ${sync === 0 ? "0 (off)" : sync} | ${(o.same * 100).toFixed(1)}% | ${o.perReplica.join(" / ")} | ${(Math.max(...o.perReplica) / mean).toFixed(2)} | ${o.p50Ms.toFixed(1)} | ${o.rps.toFixed(0)} |`);
  }
} finally {
  for (const u of upstreams) u.kill();
  await rm(dir, { recursive: true, force: true });
}
