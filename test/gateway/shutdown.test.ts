/**
 * Draining loses nothing: a gateway told to stop serves everything it
 * admitted, queued requests included, and a draining replica still takes
 * the rest of an answer another replica broke off.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { createGatewayWithShutdown } from "../../src/gateway/server.js";
import { eventually, gateQueued } from "../helpers.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];
const gateways: { app: { close(): Promise<unknown>; server: Server } }[] = [];
// A test that fails midway must still let the process exit: everything it opened is closed here.
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const gw of gateways) {
    gw.app.server.closeAllConnections();
    await gw.app.close();
  }
});

async function upstream(onGenerate: Handler): Promise<string> {
  const server = createServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      onGenerate(req, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const chunk = (text: string, finish: string | null = null): string => `data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: finish }] })}\n\n`;

/** Three words, 40 ms apart, then the end: a short answer that takes a while. */
const slowAnswer: Handler = (_req, res) => {
  let n = 0;
  const tick = setInterval(() => {
    if (++n <= 3) return void res.write(chunk(`w${n} `));
    clearInterval(tick);
    res.end(chunk("", "stop") + "data: [DONE]\n\n");
  }, 40);
};

async function gatewayOver(urls: readonly string[], parallel: number) {
  const fleet = buildFleet(parseFleetConfig({ models: [{ name: "m", replicas: urls.map((url) => ({ engine: "openai", url, upstream_model: "m", parallel })) }] }), { baseDir: ".", env: {} });
  await fleet.start(() => undefined);
  const gw = createGatewayWithShutdown({ fleet, logLevel: "silent" });
  gateways.push(gw);
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  return { ...gw, fleet, url: `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}` };
}

const stream = (url: string, prompt: string): Promise<Response> =>
  fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt, max_tokens: 16, stream: true, stream_options: { include_usage: true } }) });

describe("graceful shutdown serves its queue", () => {
  it("32 streams on 4 slots: shutdown finishes the 4 running and the 28 queued, and refuses new ones", async () => {
    // The upstreams hold every answer until the queue is full and shutdown has begun, however slowly the requests arrive.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held: Handler = (req, res) => void released.then(() => slowAnswer(req, res));
    const gw = await gatewayOver([await upstream(held), await upstream(held)], 2);
    const pending = Array.from({ length: 32 }, (_, i) => stream(gw.url, `p${i}`).then(async (r) => ({ status: r.status, text: await r.text() })));
    await eventually(() => gw.fleet.inFlight() === 4, "four streams to run", 20_000);
    let queued = 0;
    await eventually(() => {
      void gateQueued(gw.url, "m").then((n) => (queued = n));
      return queued === 28;
    }, "28 requests to queue at the gateway", 20_000);
    const stopped = gw.shutdown(20_000);
    const refused = await stream(gw.url, "late").catch((e: unknown) => e as Error);
    // A refused connection is as good as a 503: either way no new work starts.
    if (!(refused instanceof Error)) assert.equal(refused.status, 503);
    release();
    const answers = await Promise.all(pending);
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.match(a.text, /w1 [\s\S]*w2 [\s\S]*w3 [\s\S]*"finish_reason":"stop"[\s\S]*data: \[DONE\]\n\n$/);
      assert.doesNotMatch(a.text, /"error"/);
    }
    await stopped;
  });
});

describe("a draining replica", () => {
  it("takes no new request, but takes the rest of an answer another replica broke off", async () => {
    const breaking = await upstream((_req, res) => {
      res.write(chunk("Once"));
      // Closed before it finished: to the gateway this replica broke mid-answer.
      res.end(chunk(" upon"));
    });
    const finishing = await upstream((_req, res) => res.end(chunk(" a time", "stop") + "data: [DONE]\n\n"));
    const gw = await gatewayOver([breaking, finishing], 4);
    try {
      gw.fleet.replicas()[1]!.health.draining = true;
      const res = await stream(gw.url, "tell me");
      const text = await res.text();
      assert.equal(res.status, 200);
      const pieces = [...text.matchAll(/"text":("(?:[^"\\]|\\.)*")/g)].map((m) => JSON.parse(m[1]!) as string).join("");
      assert.equal(pieces, "Once upon a time");
      assert.doesNotMatch(text, /"error"/);
      assert.match(text, /"continuations":1/);
      assert.match(text, /"replica":"m\/1"/, "the draining replica finished it");
    } finally {
      await gw.app.close();
    }
  });
});
