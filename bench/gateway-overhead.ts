/**
 * What the gateway itself costs per request: the full Flotilla path (HTTP,
 * validation, routing, SSE encoding) in front of an engine that answers
 * instantly, against (a) calling that engine directly in-process and (b) a
 * bare node:http server calling it (the floor any HTTP gateway pays).
 *
 *   node --import tsx bench/gateway-overhead.ts [--seconds 5]
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { cpus } from "node:os";
import type { GenerationRequest, GenerationResult } from "../src/core/request.js";
import type { Engine, EngineLoad, TextSink } from "../src/engines/engine.js";
import { wallClock } from "../src/core/clock.js";
import { Fleet } from "../src/fleet/fleet.js";
import { ReplicaHealth } from "../src/scheduler/health.js";
import { ChunkEncoder, completeResponse } from "../src/gateway/responses.js";
import { createGateway } from "../src/gateway/server.js";
import { loadInChild, type LoadResult, type LoadSpec } from "./lib/load.js";

const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1]) || 5;

/** The stand-in engine: emits `n` tokens synchronously. Only for measuring the gateway itself. */
class InstantEngine implements Engine {
  readonly kind = "sim";
  readonly contextSize = 8192;
  async start(): Promise<void> {}
  isReady(): boolean {
    return true;
  }
  load(): EngineLoad {
    return { active: 0, queued: 0, slots: 1024, maxQueue: 0 };
  }
  countPromptTokens(): undefined {
    return undefined;
  }
  async generate(request: GenerationRequest, onText: TextSink): Promise<GenerationResult> {
    const n = request.sampling.maxTokens ?? 16;
    for (let i = 0; i < n; i++) onText(" tok", 1);
    return { finishReason: "length", usage: { promptTokens: 8, completionTokens: n, cachedTokens: 0 } };
  }
  async close(): Promise<void> {}
}

const engine = new InstantEngine();
const fleet = new Fleet([{ name: "instant", replicas: [{ id: "instant/0", model: "instant", engine, health: new ReplicaHealth(wallClock) }] }]);
const gateway = createGateway({ fleet, logLevel: "silent" });
await gateway.listen({ host: "127.0.0.1", port: 0 });
const gatewayUrl = `http://127.0.0.1:${(gateway.server.address() as AddressInfo).port}`;

/**
 * The floor: the same OpenAI response bytes from a bare node:http handler that
 * parses JSON and calls the engine: no validation, routing, error model or
 * framework. What Flotilla adds on top of this is its own cost.
 */
const bare = createServer((req: IncomingMessage, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { prompt: string; max_tokens: number; stream?: boolean };
    const request: GenerationRequest = { id: "x", prompt: { kind: "text", text: body.prompt }, sampling: { maxTokens: body.max_tokens } };
    const meta = { endpoint: "completion" as const, id: "cmpl-x", created: Math.floor(Date.now() / 1000), model: "instant" };
    if (body.stream) {
      const encoder = new ChunkEncoder(meta);
      res.writeHead(200, { "content-type": "text/event-stream" });
      void engine.generate(request, (t) => res.write(encoder.text(t))).then((r) => res.end(encoder.finish(r.finishReason) + ChunkEncoder.done));
    } else {
      const parts: string[] = [];
      void engine.generate(request, (t) => parts.push(t)).then((r) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(completeResponse(meta, parts.join(""), r.finishReason, r.usage, { replica: "instant/0", attempts: 1, continuations: 0 })));
      });
    }
  });
});
await new Promise<void>((r) => bare.listen(0, "127.0.0.1", r));
const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;

// The servers' CPU time per request is counted here; the load generator's is its own process's.
async function load(spec: LoadSpec): Promise<LoadResult & { cpuUsPerRequest: number }> {
  const before = process.cpuUsage();
  const result = await loadInChild(spec);
  const cpu = process.cpuUsage(before);
  const total = result.requests + result.errors + result.warmupRequests;
  return { ...result, cpuUsPerRequest: (cpu.user + cpu.system) / total };
}

function directCallUs(tokens: number): { p50: number; p99: number } {
  const samples: number[] = [];
  const request: GenerationRequest = { id: "x", prompt: { kind: "text", text: "hello" }, sampling: { maxTokens: tokens } };
  const parts: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const t = performance.now();
    void engine.generate(request, (s) => parts.push(s));
    samples.push((performance.now() - t) * 1000);
    parts.length = 0;
  }
  samples.sort((a, b) => a - b);
  return { p50: samples[10_000]!, p99: samples[19_800]! };
}

const body = (tokens: number, stream: boolean): string => JSON.stringify({ model: "instant", prompt: "hello", max_tokens: tokens, stream });
const scenarios = [
  { name: "non-streaming, 16 tokens", tokens: 16, stream: false },
  { name: "streaming, 64 tokens", tokens: 64, stream: true },
];

console.log(`gateway overhead: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), node ${process.version}, ${seconds} s per run, load generator in a separate process\n`);
// Warm both servers (JIT, connection pools) before measuring.
for (const url of [gatewayUrl, bareUrl]) await load({ url, path: "/v1/completions", body: body(16, false), concurrency: 8, durationMs: 1500, readBody: true });

const rows: string[] = [];
for (const s of scenarios) {
  const direct = directCallUs(s.tokens);
  const fixed = { path: "/v1/completions", body: body(s.tokens, s.stream), rate: 1000, concurrency: 64, durationMs: seconds * 1000, warmupMs: 1000, readBody: true };
  const gw = await load({ url: gatewayUrl, ...fixed });
  const floor = await load({ url: bareUrl, ...fixed });
  const maxSpec = { path: "/v1/completions", body: body(s.tokens, s.stream), concurrency: 32, durationMs: seconds * 1000, warmupMs: 1000, readBody: true };
  const gwMax = await load({ url: gatewayUrl, ...maxSpec });
  const floorMax = await load({ url: bareUrl, ...maxSpec });
  rows.push(
    `| ${s.name} | ${direct.p50.toFixed(1)} / ${direct.p99.toFixed(1)} µs | ${floor.p50Ms.toFixed(3)} / ${floor.p99Ms.toFixed(3)} | ${gw.p50Ms.toFixed(3)} / ${gw.p99Ms.toFixed(3)} | ` +
      `${(gw.p50Ms - direct.p50 / 1000).toFixed(3)} / ${(gw.p99Ms - direct.p99 / 1000).toFixed(3)} | ${(gw.p50Ms - floor.p50Ms).toFixed(3)} / ${(gw.p99Ms - floor.p99Ms).toFixed(3)} | ` +
      `${floorMax.rps.toFixed(0)} | ${gwMax.rps.toFixed(0)} (${((gwMax.rps / floorMax.rps) * 100).toFixed(0)}%) | ` +
      `${floorMax.cpuUsPerRequest.toFixed(0)} | ${gwMax.cpuUsPerRequest.toFixed(0)} (+${(gwMax.cpuUsPerRequest - floorMax.cpuUsPerRequest).toFixed(0)}) | ${gw.errors + gwMax.errors} |`,
  );
}
console.log("| scenario | engine called directly p50/p99 | bare node:http at 1,000 req/s p50/p99 ms | Flotilla at 1,000 req/s p50/p99 ms | added vs direct call p50/p99 ms | added vs bare HTTP p50/p99 ms | bare max req/s (32 conns) | Flotilla max req/s | bare CPU µs/req | Flotilla CPU µs/req | errors |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);

await gateway.close();
bare.close();
