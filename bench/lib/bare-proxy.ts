/**
 * The ceiling for a Node gateway: Fastify in front of an undici Pool, with
 * nothing else (no validation, routing, metering or metrics). Two modes:
 *
 *   - pass-through (default): the request body passed on and the answer
 *     piped back, streamed or not;
 *   - `--reading`: the least a gateway that meters tokens and can resume an
 *     answer on another replica must do. It reads the body, always asks the
 *     upstream to stream (with usage), parses every SSE chunk for its text,
 *     finish reason and usage, and answers a non-streaming client with the
 *     assembled completion; a streaming client gets each chunk's line as it
 *     arrives. Still no validation, routing, admission, ledger or metrics.
 *
 *   node --import tsx bench/lib/bare-proxy.ts --port 9100 --upstream http://127.0.0.1:9000 [--reading]
 */
import Fastify from "fastify";
import { Pool } from "undici";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const port = Number(arg("--port")) || 0;
const reading = process.argv.includes("--reading");
const upstream = new Pool(arg("--upstream") ?? "http://127.0.0.1:9000", { connections: 128 });

type Chunk = { choices?: { delta?: { content?: string | null }; text?: string; finish_reason?: string | null }[]; usage?: unknown };

const app = Fastify({ logger: false });
if (!reading) {
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
}
for (const path of ["/v1/chat/completions", "/v1/completions"]) {
  app.post(path, async (request, reply) => {
    if (!reading) {
      const res = await upstream.request({ method: "POST", path, headers: { "content-type": "application/json" }, body: request.body as Buffer });
      void reply.code(res.statusCode).header("content-type", String(res.headers["content-type"] ?? "application/json"));
      return reply.send(res.body);
    }
    const asked = request.body as { model?: string; stream?: boolean };
    const body = JSON.stringify({ ...asked, stream: true, stream_options: { include_usage: true } });
    const res = await upstream.request({ method: "POST", path, headers: { "content-type": "application/json" }, body });
    if (asked.stream === true) {
      reply.raw.writeHead(res.statusCode, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      await eachData(res.body, (data) => reply.raw.write(`data: ${data}\n\n`));
      reply.raw.end();
      return reply;
    }
    let text = "";
    let finish: string | null | undefined;
    let usage: unknown;
    await eachData(res.body, (data) => {
      const chunk = JSON.parse(data) as Chunk;
      const choice = chunk.choices?.[0];
      text += choice?.delta?.content ?? choice?.text ?? "";
      finish = choice?.finish_reason ?? finish;
      if (chunk.usage != null) usage = chunk.usage;
    });
    const chat = path === "/v1/chat/completions";
    const message = chat ? { message: { role: "assistant", content: text } } : { text };
    return { id: request.id, object: chat ? "chat.completion" : "text_completion", created: Math.floor(Date.now() / 1000), model: asked.model, choices: [{ index: 0, ...message, finish_reason: finish }], usage };
  });
}

/** Calls `onData` with each SSE `data:` payload but [DONE]. */
async function eachData(body: AsyncIterable<Buffer>, onData: (data: string) => void): Promise<void> {
  let partial = "";
  for await (const bytes of body) {
    const events = (partial + bytes.toString("utf8")).split("\n\n");
    partial = events.pop()!;
    for (const e of events) if (e.startsWith("data: ") && e !== "data: [DONE]") onData(e.slice(6));
  }
}

const address = await app.listen({ host: "127.0.0.1", port });
process.stdout.write(`bare proxy listening on ${address}\n`);
