import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { parse as parseYaml } from "yaml";
import { buildCascades, buildFleet } from "../fleet/build.js";
import { parseFleetConfig, type FleetConfig } from "../fleet/config.js";
import { createGatewayWithShutdown } from "../gateway/server.js";
import { hardwareByReplica } from "../obs/index.js";
import { ensureDefaultModel } from "../gguf/default-model.js";
import { isLoopbackHost } from "../core/loopback.js";
import { rateBookFromConfig, tenancyFromConfig } from "../metering/config.js";
import { knownPolicies, policyFromConfig } from "../scheduler/policies.js";

interface ServeOptions {
  model?: string;
  config?: string;
  port?: number;
  host?: string;
  parallel?: number;
  context?: number;
  policy?: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  logPrompts?: boolean;
  simReport?: string[];
}

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "127.0.0.1";

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve models behind an OpenAI-compatible API (with no options: a built-in tiny model)")
    .option("-m, --model <path>", "serve one GGUF file with the local engine")
    .option("-c, --config <file>", "serve the fleet described in a YAML fleet file")
    .option("-p, --port <n>", `port to listen on (default ${DEFAULT_PORT})`, intArg("port", 0, 65535))
    .option("--host <addr>", `address to bind (default ${DEFAULT_HOST})`)
    .option("--parallel <n>", "sequences generated at once per local replica (with --model)", intArg("parallel", 1, 256))
    .option("--context <n>", "context window per sequence, in tokens (with --model)", intArg("context", 16, 1 << 20))
    .option("--policy <name>", `routing policy: ${knownPolicies.join(", ")}`)
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent", "warn")
    .option("--log-prompts", "log every prompt (with its request id); off by default, as prompts may be private")
    .option("--sim-report <dir>", "open this `flotilla sim --out` folder in the /ui dashboard (repeatable)", (dir: string, dirs: string[] = []) => [...dirs, dir])
    .action(async (opts: ServeOptions) => {
      await serve(opts);
    });
}

async function serve(opts: ServeOptions): Promise<void> {
  if (opts.model !== undefined && opts.config !== undefined) {
    throw new Error("give either --model or --config, not both");
  }
  const { config, baseDir } = await loadConfig(opts);
  // A name, or in the fleet file a weighted mix: { scorers: [{ name, weight }], picker }.
  const policy = policyFromConfig(opts.policy ?? config.server.policy ?? "least-loaded");

  const fleet = buildFleet(config, { baseDir, env: process.env });
  const adminToken = config.server.admin_token_env === undefined ? undefined : process.env[config.server.admin_token_env];
  if (config.server.admin_token_env !== undefined && adminToken === undefined) {
    throw new Error(`server.admin_token_env names ${config.server.admin_token_env}, which is not set`);
  }
  const host = opts.host ?? config.server.host ?? DEFAULT_HOST;
  if (adminToken === undefined && !isLoopbackHost(host)) {
    // Without a token the operator's routes answer loopback only, so they are safe but unreachable from elsewhere.
    process.stderr.write(`flotilla: warning: bound to ${host} with no admin token: /admin, /metrics and /ui answer direct loopback clients only; set server.admin_token_env to manage this server from other hosts\n`);
  }
  const port = opts.port ?? config.server.port ?? DEFAULT_PORT;
  // Each replica's hardware prices its requests and tells the router its speed, cost and energy.
  const rates = await rateBookFromConfig(config, baseDir);
  const tenancy = await tenancyFromConfig(config, { baseDir, env: process.env, host, fleet, rates });
  const { app, shutdown } = createGatewayWithShutdown({
    fleet,
    ...(tenancy === undefined ? {} : { tenancy }),
    policy,
    routeHints: (id) => rates.hints(id),
    cascades: buildCascades(config),
    ...(config.server.max_queued === undefined ? {} : { maxQueued: config.server.max_queued }),
    ...(config.server.max_queued_per_tenant === undefined ? {} : { maxQueuedPerTenant: config.server.max_queued_per_tenant }),
    ...(config.server.ttft_slo_ms === undefined ? {} : { ttftSloMs: config.server.ttft_slo_ms }),
    logLevel: opts.logLevel,
    observability: { logPrompts: opts.logPrompts === true, simReports: opts.simReport ?? [], hardware: hardwareByReplica(config) },
    requestTimeoutMs: config.server.request_timeout_ms,
    readyWaitMs: config.server.ready_wait_ms,
    ...(config.server.eject_slow_first_token_ms === undefined ? {} : { slowFirstTokenMs: config.server.eject_slow_first_token_ms }),
    hedge: config.server.hedge_first_token,
    ...(adminToken === undefined ? {} : { adminToken }),
    metricsPublic: config.server.metrics_public,
    ...(config.server.body_limit_bytes === undefined ? {} : { bodyLimit: config.server.body_limit_bytes }),
    bodyTimeoutMs: config.server.body_timeout_ms,
  });
  await fleet.start((replica, err) => {
    process.stderr.write(`flotilla: replica ${replica.id} did not start: ${(err as Error).message}\n`);
  });
  const address = await app.listen({ host, port });

  const lines = [...fleet.models()].map((m) => {
    const ready = m.replicas.filter((r) => r.engine.isReady()).length;
    return `  ${m.name}: ${ready}/${m.replicas.length} replicas ready`;
  });
  process.stdout.write(`flotilla listening on ${address}\n${lines.join("\n")}\n  dashboard: ${address}/ui   metrics: ${address}/metrics\n`);
  process.stdout.write(tenancy === undefined ? "  usage ledger: off (server.store: none)\n" : `  usage ledger: ${tenancy.store.kind} ${tenancy.store.where}\n  api keys: ${await tenancy.authMode()}\n`);

  // The first signal drains (in-flight requests finish, new ones get 503);
  // a second one stops at once.
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stdout.write(`flotilla: shutting down, letting ${fleet.inFlight()} in-flight requests finish\n`);
    void shutdown(config.server.shutdown_grace_ms).then(async () => {
      await tenancy?.close();
      process.stdout.write("flotilla: stopped\n");
      process.exit(0);
    });
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

async function loadConfig(opts: ServeOptions): Promise<{ config: FleetConfig; baseDir: string }> {
  if (opts.config !== undefined) {
    const path = resolve(opts.config);
    const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot read fleet file ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
    });
    return { config: parseFleetConfig(parseYaml(text), path), baseDir: dirname(path) };
  }
  let path = opts.model;
  if (path === undefined) {
    const { path: defaultPath, created } = await ensureDefaultModel();
    path = defaultPath;
    process.stdout.write(banner(path, created));
  }
  const name = basename(path).replace(/\.gguf$/i, "");
  const replica = {
    engine: "local" as const,
    path: resolve(path),
    ...(opts.parallel === undefined ? {} : { parallel: opts.parallel }),
    ...(opts.context === undefined ? {} : { context: opts.context }),
  };
  return { config: parseFleetConfig({ models: [{ name, replicas: [replica] }] }), baseDir: process.cwd() };
}

function banner(path: string, created: boolean): string {
  return [
    "",
    "  ┌────────────────────────────────────────────────────────────────────┐",
    "  │ Serving Flotilla's built-in tiny model: random weights, so its      │",
    "  │ output is gibberish by design. It proves the whole path works.      │",
    "  │ Serve a real model with:  flotilla serve --model PATH.gguf          │",
    "  └────────────────────────────────────────────────────────────────────┘",
    `  model file: ${path}${created ? " (written just now)" : ""}`,
    "",
    "",
  ].join("\n");
}

function intArg(name: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}
