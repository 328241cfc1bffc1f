/**
 * Soak: steady streaming and non-streaming load on a real local engine for
 * a long time; resident memory at the end must stay within 10% of its value
 * after warm-up (no leak per request, per stream or per cancelled client).
 *
 *   node --import tsx bench/soak.ts [--minutes 10] [--rate 40]
 */
import type { AddressInfo } from "node:net";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import { createGateway } from "../src/gateway/server.js";
import { ensureDefaultModel } from "../src/gguf/default-model.js";
import { loadInChild } from "./lib/load.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const minutes = arg("minutes", 10);
const rate = arg("rate", 40);
const warmupMs = Math.min(60_000, (minutes * 60_000) / 5);

const { path } = await ensureDefaultModel();
const fleet = buildFleet(parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "local", path, parallel: 8, context: 1024 }] }] }), { baseDir: ".", env: {} });
await fleet.start((_r, err) => {
  throw err;
});
const app = createGateway({ fleet, logLevel: "silent" });
await app.listen({ host: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);

const started = performance.now();
const samples: { s: number; rss: number; heap: number }[] = [];
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  samples.push({ s: (performance.now() - started) / 1000, rss: m.rss, heap: m.heapUsed });
  process.stderr.write(`  ${((performance.now() - started) / 1000).toFixed(0)} s: rss ${mib(m.rss)} MiB, heap ${mib(m.heapUsed)} MiB, in flight ${fleet.inFlight()}\n`);
}, 10_000);

// Half streaming, half not, at a steady open-loop rate for the whole run.
const durationMs = minutes * 60_000;
const [streamed, whole] = await Promise.all([
  loadInChild({ url, path: "/v1/chat/completions", body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Soak." }], max_tokens: 24, stream: true }), rate: rate / 2, concurrency: 32, durationMs, readBody: true }),
  loadInChild({ url, path: "/v1/completions", body: JSON.stringify({ model: "m", prompt: "Soak", max_tokens: 24 }), rate: rate / 2, concurrency: 32, durationMs, readBody: true }),
]);
clearInterval(sampler);

const afterWarmup = samples.find((x) => x.s * 1000 >= warmupMs) ?? samples[0]!;
const last = samples.at(-1)!;
const growth = (last.rss - afterWarmup.rss) / afterWarmup.rss;
console.log(`soak: ${minutes} min at ${rate} req/s (half streaming) on the local engine, built-in model, parallel 8\n`);
console.log("| requests | errors | RSS after warm-up | RSS at end | growth | heap after warm-up | heap at end |");
console.log("|---|---|---|---|---|---|---|");
console.log(
  `| ${streamed.requests + whole.requests} | ${streamed.errors + whole.errors} | ${mib(afterWarmup.rss)} MiB (${afterWarmup.s.toFixed(0)} s) | ${mib(last.rss)} MiB | ${(growth * 100).toFixed(1)}% | ${mib(afterWarmup.heap)} MiB | ${mib(last.heap)} MiB |`,
);
await app.close();
process.exit(Math.abs(growth) <= 0.1 && fleet.inFlight() === 0 ? 0 : 1);
