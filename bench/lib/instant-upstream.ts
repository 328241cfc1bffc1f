/**
 * An OpenAI-compatible upstream that answers at once: the engine stand-in
 * for measuring what a gateway adds. Honours `stream` (SSE chunks, then a
 * usage chunk when stream_options.include_usage, then [DONE]) and reports
 * usage as vLLM does; answers `max_tokens` (default 16) one-word tokens.
 * Bodies are built per request from the request: no cache a gateway could
 * not have.
 *
 *   node --import tsx bench/lib/instant-upstream.ts --port 9000
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

const port = Number(process.argv[process.argv.indexOf("--port") + 1]) || 0;

interface Body {
  readonly model?: string;
  readonly stream?: boolean;
  readonly max_tokens?: number;
  readonly messages?: unknown[];
  readonly prompt?: unknown;
  readonly stream_options?: { include_usage?: boolean };
}

function read(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

function answer(res: ServerResponse, path: string, body: Body): void {
  const chat = path === "/v1/chat/completions";
  const n = Math.max(1, body.max_tokens ?? 16);
  const usage = { prompt_tokens: 12, completion_tokens: n, total_tokens: 12 + n };
  const model = body.model ?? "m";
  const created = Math.floor(Date.now() / 1000);
  const object = chat ? "chat.completion" : "text_completion";
  if (body.stream !== true) {
    const text = " hi".repeat(n);
    const choice = chat ? { index: 0, message: { role: "assistant", content: text }, finish_reason: "length" } : { index: 0, text, finish_reason: "length" };
    const out = JSON.stringify({ id: "x", object, created, model, choices: [choice], usage });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
    res.end(out);
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const chunkObject = chat ? "chat.completion.chunk" : "text_completion";
  let out = "";
  for (let i = 0; i < n; i++) {
    const choice = chat ? { index: 0, delta: i === 0 ? { role: "assistant", content: " hi" } : { content: " hi" }, finish_reason: i === n - 1 ? "length" : null } : { index: 0, text: " hi", finish_reason: i === n - 1 ? "length" : null };
    out += `data: ${JSON.stringify({ id: "x", object: chunkObject, created, model, choices: [choice] })}\n\n`;
  }
  if (body.stream_options?.include_usage === true) out += `data: ${JSON.stringify({ id: "x", object: chunkObject, created, model, choices: [], usage })}\n\n`;
  res.end(`${out}data: [DONE]\n\n`);
}

const server = createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0]!;
  if (req.method === "GET" && (path === "/health" || path === "/v1/models")) {
    const out = path === "/health" ? "{}" : JSON.stringify({ object: "list", data: [{ id: "m", object: "model", max_model_len: 8192 }] });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(out);
    return;
  }
  if (req.method !== "POST" || (path !== "/v1/chat/completions" && path !== "/v1/completions")) {
    res.writeHead(404).end();
    return;
  }
  read(req).then(
    (text) => answer(res, path, JSON.parse(text) as Body),
    () => res.writeHead(400).end(),
  );
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`instant upstream listening on ${typeof address === "object" && address !== null ? address.port : port}\n`);
});
