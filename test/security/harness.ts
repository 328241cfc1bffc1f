/**
 * The attacker's bench: a gateway in each auth mode over an upstream that
 * counts every generation it is asked for, and a raw HTTP client that sends
 * exactly the bytes it is given (encoded paths, absolute-form request lines,
 * repeated headers), which fetch and the SDKs would normalise away.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import type { Fleet } from "../../src/fleet/fleet.js";
import { createGatewayWithShutdown, type Gateway, type GatewayOptions } from "../../src/gateway/server.js";
import { openStoreTenancy, type StoreTenancy } from "../../src/metering/store-tenancy.js";
import { openStore } from "../../src/store/index.js";

/** A one-token OpenAI-compatible upstream that counts the generations that reached it. */
export interface CountingUpstream {
  readonly url: string;
  readonly server: Server;
  generations: number;
  close(): void;
}

export async function countingUpstream(): Promise<CountingUpstream> {
  const upstream = { generations: 0 } as CountingUpstream & { generations: number };
  const server = createHttpServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    upstream.generations++;
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "hi" }, text: "hi", finish_reason: null }] })}\n\n`);
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, text: "", finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 1 } })}\n\n`);
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(upstream, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  });
}

/** How the gateway is set up, as an operator would: the four modes the audit tries. */
export type AuthMode = "open" | "keys" | "admin-token" | "require-keys";

export const ADMIN_TOKEN = "s3cret-admin-token-for-tests";

export interface SecuredGateway {
  readonly mode: AuthMode;
  readonly port: number;
  readonly url: string;
  readonly gateway: Gateway;
  readonly fleet: Fleet;
  readonly tenancy: StoreTenancy;
  readonly upstream: CountingUpstream;
  /** A valid key of tenant "alice" (created in every mode but "open" and "require-keys"). */
  readonly key: string | undefined;
  close(): Promise<void>;
}

/** `engineUrl`: serve model "m" from this upstream instead of the counting one. */
export async function securedGateway(mode: AuthMode, opts: Partial<GatewayOptions> = {}, engineUrl?: string): Promise<SecuredGateway> {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-sec-"));
  const upstream = await countingUpstream();
  const config = parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: engineUrl ?? upstream.url, upstream_model: "m", context: 4096 }] }] });
  const fleet = buildFleet(config, { baseDir: dir, env: {} });
  await fleet.start(() => {});
  const store = await openStore(`sqlite:${join(dir, "ledger.db")}`);
  const tenancy = await openStoreTenancy({ store, requireKeys: mode === "require-keys", log: () => {} });
  let key: string | undefined;
  if (mode === "keys" || mode === "admin-token") {
    await tenancy.createTenant({ id: "alice" });
    key = (await tenancy.createKey("alice", "laptop")).key;
  }
  const gateway = createGatewayWithShutdown({ fleet, tenancy, logLevel: "silent", ...(mode === "admin-token" ? { adminToken: ADMIN_TOKEN } : {}), ...opts });
  await gateway.app.listen({ host: "127.0.0.1", port: 0 });
  const port = (gateway.app.server.address() as AddressInfo).port;
  return {
    mode,
    port,
    url: `http://127.0.0.1:${port}`,
    gateway,
    fleet,
    tenancy,
    upstream,
    key,
    close: async () => {
      await gateway.app.close();
      await tenancy.close();
      upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Sends `head` (request line and headers, CRLF-separated, without the blank
 * line) and `body` on a fresh connection, byte for byte, and reads the answer
 * until the server closes it.
 */
export function raw(port: number, head: string, body = ""): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    // A route that wrongly let us in to a stream would never close: give up, and report what came.
    socket.setTimeout(5_000, () => socket.destroy());
    const chunks: Buffer[] = [];
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const end = text.indexOf("\r\n\r\n");
      const lines = text.slice(0, end < 0 ? text.length : end).split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers, body: end < 0 ? "" : text.slice(end + 4) });
    });
    const length = Buffer.byteLength(body);
    // write, not end: a half-closed socket is a client that left, and the gateway cancels its request.
    socket.write(`${head}\r\nhost: 127.0.0.1\r\nconnection: close\r\n${length > 0 ? `content-type: application/json\r\ncontent-length: ${length}\r\n` : ""}\r\n${body}`);
  });
}

/** A chat request body the counting upstream would answer. */
export const CHAT_BODY = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
export const COMPLETION_BODY = JSON.stringify({ model: "m", prompt: "hi", max_tokens: 4 });
