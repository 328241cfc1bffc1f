/**
 * The ceiling for a Node gateway: Fastify in front of an undici Pool, the
 * request body passed through and the answer piped back, streamed or not,
 * with nothing else (no validation, routing, metering or metrics).
 *
 *   node --import tsx bench/lib/bare-proxy.ts --port 9100 --upstream http://127.0.0.1:9000
 */
import Fastify from "fastify";
import { Pool } from "undici";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const port = Number(arg("--port")) || 0;
const upstream = new Pool(arg("--upstream") ?? "http://127.0.0.1:9000", { connections: 128 });

const app = Fastify({ logger: false });
app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
for (const path of ["/v1/chat/completions", "/v1/completions"]) {
  app.post(path, async (request, reply) => {
    const res = await upstream.request({ method: "POST", path, headers: { "content-type": "application/json" }, body: request.body as Buffer });
    void reply.code(res.statusCode).header("content-type", String(res.headers["content-type"] ?? "application/json"));
    return reply.send(res.body);
  });
}
const address = await app.listen({ host: "127.0.0.1", port });
process.stdout.write(`bare proxy listening on ${address}\n`);
