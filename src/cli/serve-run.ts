/**
 * What `flotilla serve` does: the fleet, the tenancy and the gateway from the
 * options or fleet file, listening until a signal drains it. Loaded on
 * demand by serve.ts.
 */
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { isLoopbackHost } from "../core/loopback.js";
import { breakerOf, buildCascades, buildFleet } from "../fleet/build.js";
import type { Fleet } from "../fleet/fleet.js";
import { parseFleetConfig, type FleetConfig } from "../fleet/config.js";
import { readFleetFile } from "../fleet/load.js";
import { Discovery } from "../gateway/discovery/index.js";
import { PeerSync } from "../gateway/peer-sync.js";
import { createGatewayWithShutdown } from "../gateway/server.js";
import type { Store } from "../store/store.js";
import { ensureDefaultModel } from "../gguf/default-model.js";
import { llamaRuntimeUnderway } from "../engines/local.js";
import { rateBookFromConfig, tenancyFromConfig } from "../metering/config.js";
import { hardwareByReplica } from "../obs/index.js";
import type { Policy } from "../scheduler/pipeline.js";
import { policyFromConfig } from "../scheduler/policies.js";
import { watchFleetFile } from "./fleet-file-watch.js";
import { DEFAULT_HOST, DEFAULT_PORT, type ServeOptions } from "./serve.js";

export async function serve(opts: ServeOptions): Promise<void> {
  if (opts.model !== undefined && opts.config !== undefined) {
    throw new Error("give either --model or --config, not both");
  }
  const loaded = await loadConfig(opts);
  const { config, baseDir } = loaded;
  // A name, or in the fleet file a weighted mix: { scorers: [{ name, weight }], picker }.
  const policy = policyFromConfig(opts.policy ?? config.server.policy ?? "least-loaded");

  const fleet = buildFleet(config, { baseDir, env: process.env });
  if (fleet.replicas().some((r) => r.engine.kind === "local")) await llamaRuntimeUnderway();
  // Engines start while the rest is built: loading a model is mostly waiting
  // on native code, which overlaps the stores opening and the gateway's setup.
  const failed: string[] = [];
  const started = fleet.start((replica, err) => {
    process.stderr.write(`flotilla: replica ${replica.id} did not start: ${(err as Error).message}\n`);
    failed.push((err as Error).message);
  }).then(() => {
    // One model from the command line that did not load is nothing to serve; a fleet file may start degraded, and says so.
    if (opts.config === undefined && failed.length > 0) throw new Error(`the model did not load (${failed[0]}); give --model the path of a GGUF file llama.cpp can read`);
  });
  try {
    await listen(opts, loaded, fleet, policy, started);
  } catch (err) {
    await started.catch(() => undefined);
    await fleet.close();
    throw err;
  }
}

/** The rest of `serve` once the engines are starting: tenancy, gateway, listening, and the signals that stop it. */
async function listen(opts: ServeOptions, loaded: Loaded, fleet: Fleet, policy: Policy, started: Promise<void>): Promise<void> {
  const { config, baseDir } = loaded;
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
  const peers = tenancy === undefined ? undefined : await peerSync(tenancy.store, config);
  const fleetPath = opts.config === undefined ? undefined : resolve(opts.config);
  const { app, shutdown, membership } = createGatewayWithShutdown({
    fleet,
    membership: {
      build: { baseDir, env: process.env },
      breaker: breakerOf(config.server),
      rates,
      config,
      ...(fleetPath === undefined ? {} : { load: async () => (await readFleetFile(fleetPath)).config }),
    },
    ...(tenancy === undefined ? {} : { tenancy, batches: { store: tenancy.store, holder: tenancy.instance.id, ...(config.server.instance_lease_ms === undefined ? {} : { leaseMs: config.server.instance_lease_ms }), ...(config.server.batch_headroom_slots === undefined ? {} : { headroomSlots: config.server.batch_headroom_slots }) } }),
    policy,
    ...(peers === undefined ? {} : { peers }),
    routeHints: (id) => rates.hints(id),
    cascades: buildCascades(config),
    ...(config.server.max_queued === undefined ? {} : { maxQueued: config.server.max_queued }),
    ...(config.server.max_queued_per_tenant === undefined ? {} : { maxQueuedPerTenant: config.server.max_queued_per_tenant }),
    ...(config.server.ttft_slo_ms === undefined ? {} : { ttftSloMs: config.server.ttft_slo_ms }),
    logLevel: opts.logLevel,
    observability: { logPrompts: opts.logPrompts === true, simReports: opts.simReport ?? [], hardware: hardwareByReplica(config), perfProfile: (id) => rates.replica(id)?.perf, rooflineProfile: (id) => rates.replica(id)?.roofline },
    requestTimeoutMs: config.server.request_timeout_ms,
    readyWaitMs: config.server.ready_wait_ms,
    ...(config.server.eject_slow_first_token_ms === undefined ? {} : { slowFirstTokenMs: config.server.eject_slow_first_token_ms }),
    hedge: config.server.hedge_first_token,
    ...(adminToken === undefined ? {} : { adminToken }),
    metricsPublic: config.server.metrics_public,
    ...(config.server.body_limit_bytes === undefined ? {} : { bodyLimit: config.server.body_limit_bytes }),
    bodyTimeoutMs: config.server.body_timeout_ms,
  });
  // Health signals (a name that does not resolve, an API server down) on stderr, as a replica that did not start is.
  const discovery = await Discovery.create(config, {
    membership,
    fleet,
    baseDir,
    env: process.env,
    log: (level, message) => (level === "warn" ? process.stderr.write(`flotilla: ${message}\n`) : app.log.info(message)),
  });
  // Fastify compiles every route's schemas when it gets ready: while the engines are still loading, not after.
  await Promise.all([started, app.ready()]);
  const address = await app.listen({ host, port });
  // Discovered replicas join once the gateway serves; a reload restarts the providers whose section changed.
  discovery.start();
  membership.onReload(discovery);

  const lines = [...fleet.models()].map((m) => {
    const ready = m.replicas.filter((r) => r.engine.isReady()).length;
    const follows = discovery.labels.get(m.name);
    return `  ${m.name}: ${ready}/${m.replicas.length} replicas ready${follows === undefined ? "" : `, more from ${follows}`}`;
  });
  process.stdout.write(`flotilla listening on ${address}\n${lines.join("\n")}\n  dashboard: ${address}/ui   metrics: ${address}/metrics\n`);
  process.stdout.write(tenancy === undefined ? "  usage ledger: off (server.store: none)\n" : `  usage ledger: ${tenancy.store.kind} ${tenancy.store.where}\n  api keys: ${await tenancy.authMode()}\n`);
  if (peers !== undefined) process.stdout.write(`  peers: placements and load shared every ${config.server.peer_sync_ms ?? 50} ms on the store\n`);

  // The first signal drains (in-flight requests finish, new ones get 503);
  // a second one stops at once.
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stdout.write(`flotilla: shutting down, letting ${fleet.inFlight()} in-flight requests finish\n`);
    // Discovery first, so no replica joins while the gateway drains.
    void discovery.stop().then(async () => {
      await shutdown(config.server.shutdown_grace_ms);
      await peers?.close();
      await tenancy?.close();
      process.stdout.write("flotilla: stopped\n");
      process.exit(0);
    });
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // From the version loaded at start: a change made while the gateway was starting is a change too.
  if (fleetPath !== undefined) watchFleetFile(fleetPath, async () => membership.reload((await readFleetFile(fleetPath)).config), { initial: loaded.text });
}

/** With a store other gateways share (Postgres), the channel this one tells them what it routes on. */
async function peerSync(store: Store, config: FleetConfig): Promise<PeerSync | undefined> {
  const syncMs = config.server.peer_sync_ms ?? 50;
  if (syncMs === 0) return undefined;
  return PeerSync.start(store, { syncMs, log: (message) => process.stderr.write(`flotilla: ${message}\n`) });
}

/** The fleet's config, where relative paths in it resolve, and the fleet file's text when there is one. */
type Loaded = { config: FleetConfig; baseDir: string; text?: string };

async function loadConfig(opts: ServeOptions): Promise<Loaded> {
  if (opts.config !== undefined) return readFleetFile(resolve(opts.config));
  let path = opts.model;
  if (path === undefined) {
    const { path: defaultPath, created } = await ensureDefaultModel();
    path = defaultPath;
    process.stdout.write(banner(path, created));
  }
  if (!existsSync(path)) throw new Error(`--model ${path}: no such file; give the path of a GGUF model file, or leave --model out to serve the built-in one`);
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

