/**
 * Does the gateway slow a real engine down? Tokens/s of node-llama-cpp
 * called directly vs the same model streamed through Flotilla's HTTP API
 * (local engine, one sequence each, same threads), alternating rounds.
 *
 *   node --import tsx bench/engine-throughput.ts [--model PATH.gguf | --shape llama-3.2-1b] [--tokens 256] [--rounds 5]
 *
 * --shape writes a full-size random-weight model of that shape (q8_0) with
 * Flotilla's own GGUF writer into the cache dir first: random weights run
 * exactly as fast as trained ones.
 */
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { getLlama, LlamaCompletion, LlamaLogLevel } from "node-llama-cpp";
import { buildFleet } from "../src/fleet/build.js";
import { parseFleetConfig } from "../src/fleet/config.js";
import { createGateway } from "../src/gateway/server.js";
import { defaultCacheDir, ensureDefaultModel } from "../src/gguf/default-model.js";
import { FULL_SIZE_SHAPES, writeRandomLlama } from "../src/gguf/random-llama.js";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
async function shapedModel(name: string): Promise<string> {
  if (!(name in FULL_SIZE_SHAPES)) throw new Error(`unknown shape ${name}; known: ${Object.keys(FULL_SIZE_SHAPES).join(", ")}`);
  const path = join(defaultCacheDir(), `bench-${name}-q8_0.gguf`);
  if (!existsSync(path)) {
    process.stderr.write(`writing ${path} ...\n`);
    await writeRandomLlama(path, FULL_SIZE_SHAPES[name as keyof typeof FULL_SIZE_SHAPES], { type: "q8_0", seed: 1 });
  }
  return path;
}
const shape = arg("shape");
const modelPath = arg("model") ?? (shape === undefined ? (await ensureDefaultModel()).path : await shapedModel(shape));
const tokens = Number(arg("tokens") ?? 256);
const rounds = Number(arg("rounds") ?? 5);
const prompt = "The fleet of accelerators";
// What the local engine picks by default for this model's size (see engines/local.ts).
const threads = statSync(modelPath).size < 256 * 1024 * 1024 ? 1 : availableParallelism();

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ sequences: 1, contextSize: 2048, threads });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });

async function direct(): Promise<number> {
  let n = 0;
  const t = performance.now();
  // Text out, as a caller of the library needs it: the same detokenising path the engine uses.
  let text = "";
  await completion.generateCompletion(prompt, { maxTokens: tokens, temperature: 0, onToken: (ts) => (n += ts.length), onTextChunk: (c) => (text += c) });
  return n / ((performance.now() - t) / 1000);
}

const fleet = buildFleet(parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "local", path: modelPath, parallel: 1, context: 2048, threads }] }] }), { baseDir: process.cwd(), env: {} });
await fleet.start((_r, err) => {
  throw err;
});
const app = createGateway({ fleet, logLevel: "silent" });
await app.listen({ host: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/completions`;

const client = spawn(process.execPath, [
  "--import",
  "tsx",
  new URL("./lib/stream-client.ts", import.meta.url).pathname,
  url,
  JSON.stringify({ model: "m", prompt, max_tokens: tokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
]);
const replies = createInterface({ input: client.stdout })[Symbol.asyncIterator]();
async function viaGateway(): Promise<number> {
  client.stdin.write("go\n");
  const { value } = await replies.next();
  return Number(value);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
await direct();
await viaGateway(); // warm both paths
const d: number[] = [];
const g: number[] = [];
for (let i = 0; i < rounds; i++) {
  d.push(await direct());
  g.push(await viaGateway());
  process.stderr.write(`round ${i + 1}/${rounds}: direct ${d.at(-1)!.toFixed(0)} tok/s, gateway ${g.at(-1)!.toFixed(0)} tok/s\n`);
}
console.log(`model ${modelPath}, ${tokens} tokens per request, ${rounds} rounds, threads ${threads}`);
console.log("| path | median tokens/s |\n|---|---|");
console.log(`| node-llama-cpp directly | ${median(d).toFixed(0)} |`);
console.log(`| through Flotilla (HTTP, SSE) | ${median(g).toFixed(0)} |`);
console.log(`| ratio | ${(median(g) / median(d)).toFixed(3)} |`);
client.kill();
await app.close();
await context.dispose();
await model.dispose();
