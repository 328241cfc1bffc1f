// Flotilla as a library: the hardware model, the twin, and a gateway in
// process. Run it from an installed package (`import ... from "flotilla"`),
// or in this repository after `npm run build`: node examples/library.mjs
import { buildFleet, buildReport, builtInModel, catalog, createGateway, estimate, parseFleetConfig, resolveSimFleet, simulate, syntheticTrace } from "flotilla";

// 1. The hardware model: what one H100 does for Llama-3.1-8B in FP8.
const { hardware, models } = catalog();
const e = estimate({ model: "llama-3.1-8b", hardware: "h100", precision: "fp8", tp: 1 });
console.log(`catalog: ${hardware.length} accelerators, ${models.length} models`);
console.log(`estimate: llama-3.1-8b on h100 fp8: ${Math.round(e.tokensPerS)} output tokens/s at batch ${e.batch}, TTFT ${e.ttftMs.toFixed(1)} ms`);

// 2. The twin: 200 synthetic requests over two simulated H100s.
const fleet = resolveSimFleet({ islands: [{ name: "h100", hardware: "h100", count: 2, model: "llama-3.1-8b", precision: "fp8", tp: 1 }] });
const report = buildReport(simulate({ fleet, trace: syntheticTrace({ requests: 200, ratePerS: 20, seed: 1 }) }));
console.log(`twin: ${report.requests.completed} of ${report.requests.total} requests done, p99 TTFT ${Math.round(report.latency.ttftMs.p99)} ms`);

// 3. A gateway over the built-in tiny model, in this process, asked once over HTTP.
const { path } = await builtInModel();
const live = buildFleet(parseFleetConfig({ models: [{ name: "tiny", replicas: [{ engine: "local", path, parallel: 1, context: 512 }] }] }), { baseDir: ".", env: process.env });
await live.start((replica, err) => console.error(`${replica.id} did not start: ${err.message}`));
const app = createGateway({ fleet: live, logLevel: "silent" });
await app.listen({ host: "127.0.0.1", port: 0 });
const res = await fetch(`http://127.0.0.1:${app.server.address().port}/v1/chat/completions`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hello" }], max_tokens: 8 }),
});
const answer = await res.json();
console.log(`gateway: ${res.status}, ${answer.usage.completion_tokens} tokens from ${res.headers.get("x-flotilla-replica")}`);
await app.close();
