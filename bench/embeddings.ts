/**
 * Embeddings throughput on the built-in model: inputs per second from
 * node-llama-cpp's embedding context called directly, against the same
 * model through Flotilla's POST /v1/embeddings with the default SQLite
 * ledger on (the path `flotilla serve` runs), driven by a load generator in
 * its own process, closed-loop. One input per request and 32 per request.
 *
 *   node --import tsx bench/embeddings.ts [--model PATH.gguf] [--seconds 5] [--concurrency 8]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import { createGateway } from "../src/gateway/server.js";
import { ensureDefaultModel } from "../src/gguf/default-model.js";
import { promptCounter, rateBookFromConfig } from "../src/metering/config.js";
import { openStoreTenancy } from "../src/metering/store-tenancy.js";
import { openStore } from "../src/store/index.js";
import { loadInChild, type LoadResult } from "./lib/load.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const modelPath = arg("model", "") || (await ensureDefaultModel()).path;
const seconds = Number(arg("seconds", "5"));
const concurrency = Number(arg("concurrency", "8"));
const text = (i: number): string => `Sentence number ${i} about a fleet of accelerators serving open models.`;

/** Inputs per second embedded by node-llama-cpp itself, one at a time (its context takes one at a time). */
async function direct(): Promise<number> {
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createEmbeddingContext({ contextSize: 4096, threads: 1 });
  let n = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  while (performance.now() < end) await context.getEmbeddingFor(text(n++));
  const rate = n / ((performance.now() - t0) / 1000);
  await context.dispose();
  await model.dispose();
  return rate;
}

async function viaGateway(url: string, perRequest: number): Promise<LoadResult> {
  const input = perRequest === 1 ? text(0) : Array.from({ length: perRequest }, (_, i) => text(i));
  const spec = { url, path: "/v1/embeddings", body: JSON.stringify({ model: "m", input }), concurrency, durationMs: seconds * 1000, warmupMs: 1000, readBody: true };
  return loadInChild(spec);
}

const directRate = await direct();
const dir = await mkdtemp(join(tmpdir(), "flotilla-embeddings-bench-"));
const config = parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "local", path: modelPath, parallel: 1 }] }] });
const fleet = buildFleet(config, { baseDir: process.cwd(), env: {} });
await fleet.start((_r, err) => {
  throw err;
});
const tenancy = await openStoreTenancy({ store: await openStore(`sqlite:${join(dir, "ledger.db")}`), rates: await rateBookFromConfig(config, process.cwd()), countPromptTokens: promptCounter(fleet), log: () => {} });
const app = createGateway({ fleet, tenancy, logLevel: "silent" });
await app.listen({ host: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
const rows: string[] = [];
for (const perRequest of [1, 32]) {
  const r = await viaGateway(url, perRequest);
  if (r.errors > 0) process.stderr.write(`${r.errors} requests failed\n`);
  rows.push(`| Flotilla, ${perRequest} input${perRequest === 1 ? "" : "s"} per request | ${(r.rps * perRequest).toFixed(0)} | ${r.rps.toFixed(0)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} |`);
}
console.log(`model ${modelPath}, ${seconds} s per row, ${concurrency} requests in flight, SQLite ledger on`);
console.log("| path | inputs/s | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|");
console.log(`| node-llama-cpp directly, one at a time | ${directRate.toFixed(0)} | — | — | — |`);
for (const row of rows) console.log(row);
await app.close();
await tenancy.close();
await rm(dir, { recursive: true, force: true });
