/**
 * Soak on the path users run: the compiled `flotilla serve` with its default
 * SQLite usage ledger, in front of an instant OpenAI-compatible upstream
 * (bench/lib/instant-upstream.ts), at a steady open-loop rate, half the
 * requests streaming. The gateway's memory is read from its own /metrics
 * every 30 s. It passes when, after a clean stop (SIGTERM), resident memory
 * at the end is within 10% of its value after warm-up and the ledger holds
 * exactly one 'ok' row for every request answered: none lost, none twice,
 * none left running.
 *
 *   npm run build && node --import tsx bench/soak-ledger.ts [--minutes 10] [--rate 800]
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openStore } from "../src/store/index.js";
import { loadInChild, type LoadSpec } from "./lib/load.js";
import { freePort, UpstreamProc } from "./lib/upstream-procs.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const minutes = arg("minutes", 10);
const rate = arg("rate", 800);
const warmupS = Math.min(60, (minutes * 60) / 5);
const ROOT = resolve(import.meta.dirname, "..");

if (!existsSync(join(ROOT, "dist/cli/run.js"))) {
  process.stderr.write("dist/ is missing: run `npm run build` first (the gateway is measured as users run it, compiled)\n");
  process.exit(2);
}

interface Sample {
  readonly s: number;
  readonly rss: number;
  readonly heap: number;
}

/** The gateway's resident set and used heap, from the process metrics it exports. */
async function memoryOf(url: string): Promise<{ rss: number; heap: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const metric = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, "m").exec(text)?.[1] ?? NaN);
  return { rss: metric("process_resident_memory_bytes"), heap: metric("nodejs_heap_size_used_bytes") };
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const dir = await mkdtemp(join(tmpdir(), "flotilla-soak-ledger-"));
const upPort = await freePort();
const upstream = new UpstreamProc(upPort, ["--import", "tsx", join(ROOT, "bench/lib/instant-upstream.ts"), "--port", String(upPort)], /instant upstream listening/, "instant upstream");
const port = await freePort();
const ledger = join(dir, "ledger.db");
await writeFile(join(dir, "fleet.yaml"), `models:\n  - name: m\n    replicas:\n      - { engine: openai, url: "${upstream.url}/v1", parallel: 512, max_queue: 4096 }\nserver:\n  store: "sqlite:${ledger}"\n`);
const gateway = new UpstreamProc(port, [join(ROOT, "bin/flotilla.js"), "serve", "--config", join(dir, "fleet.yaml"), "--port", String(port), "--log-level", "error"], /flotilla listening on/, "flotilla", { ...process.env, FLOTILLA_HOME: dir });
try {
  await upstream.start();
  await gateway.start();
  const started = performance.now();
  const samples: Sample[] = [];
  const sample = async (): Promise<void> => {
    const s = (performance.now() - started) / 1000;
    const m = await memoryOf(gateway.url);
    samples.push({ s, ...m });
    process.stderr.write(`  ${s.toFixed(0)} s: rss ${mib(m.rss)} MiB, heap ${mib(m.heap)} MiB\n`);
  };
  const sampler = setInterval(() => void sample(), 30_000);
  await sample();
  const spec = (stream: boolean): LoadSpec => ({
    url: gateway.url,
    path: "/v1/chat/completions",
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Soak." }], max_tokens: 16, stream }),
    rate: rate / 2,
    concurrency: 256,
    durationMs: minutes * 60_000,
    readBody: true,
  });
  const loads = await Promise.all([loadInChild(spec(true)), loadInChild(spec(false))]);
  clearInterval(sampler);
  await sample();
  const exitCode = await gateway.terminate();

  const store = await openStore(`sqlite:${ledger}`);
  const byStatus = await store.usage({ from: 0, to: Date.now() + 1, groupBy: ["status"] });
  await store.close();
  const rows = Object.fromEntries(byStatus.map((r) => [r.group.status ?? "?", r.requests]));
  const answered = loads.reduce((n, l) => n + l.requests, 0);
  const errors = loads.reduce((n, l) => n + l.errors, 0);
  const afterWarmup = samples.find((x) => x.s >= warmupS) ?? samples[0]!;
  const last = samples.at(-1)!;
  const growth = (last.rss - afterWarmup.rss) / afterWarmup.rss;
  const rss = samples.filter((x) => x.s >= afterWarmup.s).map((x) => x.rss);

  console.log(`soak on the remote path: ${minutes} min at ${rate} req/s (half streaming), flotilla serve with its SQLite ledger, an instant upstream\n`);
  console.log("| requests answered | errors | ledger rows | RSS after warm-up | RSS range after | RSS at end | growth | heap at end | p50 / p99 ms (streaming, not) | exit code |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${answered} | ${errors} | ${JSON.stringify(rows)} | ${mib(afterWarmup.rss)} MiB (${afterWarmup.s.toFixed(0)} s) | ${mib(Math.min(...rss))}-${mib(Math.max(...rss))} MiB | ${mib(last.rss)} MiB | ${(growth * 100).toFixed(1)}% | ${mib(last.heap)} MiB | ${loads.map((l) => `${l.p50Ms.toFixed(2)} / ${l.p99Ms.toFixed(2)}`).join(", ")} | ${exitCode} |`,
  );
  const exact = rows.ok === answered && Object.keys(rows).length === 1;
  process.exitCode = Math.abs(growth) <= 0.1 && exact && errors === 0 && exitCode === 0 ? 0 : 1;
} finally {
  gateway.kill();
  upstream.kill();
  await rm(dir, { recursive: true, force: true });
}
