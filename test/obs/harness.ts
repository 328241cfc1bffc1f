import { spawn, type ChildProcess } from "node:child_process";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { createGatewayWithShutdown, type GatewayOptions } from "../../src/gateway/server.js";
import type { RunningGateway } from "../helpers.js";
import { TINY_MODEL } from "../helpers.js";
import { CLI } from "../paths.js";

export interface ObservedGateway extends RunningGateway {
  /** Every log line the gateway wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The raw text of every log line. */
  readonly rawLogs: string[];
}

/** A gateway over `config` whose log lines are captured, with whatever options a test needs. */
export async function startObserved(config: unknown, opts: Omit<Partial<GatewayOptions>, "fleet"> = {}): Promise<ObservedGateway> {
  const fleet = buildFleet(parseFleetConfig(config), { baseDir: process.cwd(), env: process.env });
  await fleet.start(() => undefined);
  const rawLogs: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const { app } = createGatewayWithShutdown({
    fleet,
    logLevel: "silent",
    ...opts,
    observability: {
      ...opts.observability,
      logDestination: {
        write: (line: string) => {
          rawLogs.push(line);
          logs.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    },
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, app, fleet, logs, rawLogs, close: () => app.close() };
}

export async function post(url: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** Usage of a response, streamed (the usage chunk) or not. */
type Usage = { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };

export function usageOf(text: string): Usage {
  if (text.startsWith("{")) return (JSON.parse(text) as { usage: Usage }).usage;
  for (const event of text.split("\n\n")) {
    if (!event.startsWith("data: {")) continue;
    const chunk = JSON.parse(event.slice(6)) as { usage?: Usage | null };
    if (chunk.usage) return chunk.usage;
  }
  throw new Error(`no usage in ${text.slice(0, 200)}`);
}

export { freePort } from "../../bench/lib/upstream-procs.js";

/** A real engine: `flotilla serve` over the tiny model, as its own process. */
export async function startEngineProcess(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...CLI, "serve", "--model", TINY_MODEL, "--port", String(port), "--parallel", "2", "--context", "512"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`engine on ${port} did not start in 30 s: ${out} ${err}`)), 30_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening on")) {
        clearTimeout(timer);
        ok();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`engine on ${port} exited (${code}) during start: ${err}`));
    });
  });
  return child;
}

/** An upstream that says it is healthy on GET, and handles generation as told. */
export async function fakeUpstream(onGenerate: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server; close(): void }> {
  const server = createHttpServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    req.resume();
    onGenerate(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
