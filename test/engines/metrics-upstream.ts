/**
 * A stand-in for an engine that other clients also use: it answers
 * OpenAI chat completions at once (a short fixed stream) and serves
 * /metrics as the test says, so a test sets the load "another client" puts
 * on it by changing its metrics text.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What GET /metrics answers: text with 200, another status, or nothing at all. */
export type MetricsAnswer = { readonly status: number; readonly body: string } | "hang";

export interface MetricsUpstream {
  readonly url: string;
  /** Changes what /metrics answers from the next scrape on. */
  metrics: MetricsAnswer;
  /** GET /metrics requests received, and how many were open at once at most. */
  readonly scrapes: { count: number; open: number; maxOpen: number; authorization: string | undefined };
  /** Chat completions answered. */
  completions: number;
  close(): Promise<void>;
}

/** vLLM's V1 load gauges for `model`: `running` and `waiting` requests, KV usage `kv`. */
export function vllmText(model: string, running: number, waiting: number, kv = 0.1): string {
  const labels = `{engine="0",model_name="${model}"}`;
  return [
    "# HELP vllm:num_requests_running Number of requests in model execution batches.",
    "# TYPE vllm:num_requests_running gauge",
    `vllm:num_requests_running${labels} ${running.toFixed(1)}`,
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
    "# TYPE vllm:num_requests_waiting gauge",
    `vllm:num_requests_waiting${labels} ${waiting.toFixed(1)}`,
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
    "# TYPE vllm:kv_cache_usage_perc gauge",
    `vllm:kv_cache_usage_perc${labels} ${kv}`,
    "",
  ].join("\n");
}

export async function startMetricsUpstream(metrics: MetricsAnswer): Promise<MetricsUpstream> {
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/health") return void res.end("ok");
    if (req.method === "GET" && path === "/metrics") return scrape(res, req.headers.authorization);
    if (req.method === "POST" && path === "/v1/chat/completions") {
      req.resume();
      req.on("end", () => answer(res));
      return;
    }
    res.writeHead(404).end();
  });
  const up: MetricsUpstream = {
    url: "",
    metrics,
    scrapes: { count: 0, open: 0, maxOpen: 0, authorization: undefined },
    completions: 0,
    close: () =>
      new Promise<void>((done) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => done());
      }),
  };

  function scrape(res: ServerResponse, authorization: string | undefined): void {
    const s = up.scrapes;
    s.count++;
    s.authorization = authorization;
    s.open++;
    s.maxOpen = Math.max(s.maxOpen, s.open);
    res.once("close", () => s.open--);
    const m = up.metrics;
    if (m === "hang") return void hanging.add(res);
    res.writeHead(m.status, { "content-type": "text/plain; version=0.0.4" }).end(m.body);
  }

  function answer(res: ServerResponse): void {
    up.completions++;
    const chunk = (body: unknown): string => `data: ${JSON.stringify(body)}\n\n`;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk({ choices: [{ index: 0, delta: { content: "ok" }, finish_reason: null }] }));
    res.end(chunk({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 1 } }) + "data: [DONE]\n\n");
  }

  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return Object.assign(up, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}
