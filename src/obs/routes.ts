/**
 * HTTP routes of observation: /metrics for Prometheus, /ui for people (a
 * static page, its script and style, shipped in the package; no CDN, no
 * build step), and the JSON and server-sent events the page reads.
 */
import { readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Registry } from "prom-client";
import { BatchFeed, type BatchSource } from "./batches.js";
import { scrape } from "./metrics.js";
import { TTFT_BUCKETS_S, type FleetPoint, type Observatory } from "./observatory.js";
import type { SimReports } from "./sim-reports.js";

/** The page's files, by the name it is served under. */
const ASSETS: Readonly<Record<string, { file: string; type: string }>> = {
  "/ui": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/ui/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
  "/ui/favicon.svg": { file: "favicon.svg", type: "image/svg+xml" },
};

/** Everything the page loads comes from this server; nothing else may be fetched. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Where the page's files are: beside this module, in src/ (tsx) and in dist/ (the build copies them). */
const UI_DIR = new URL("./ui/", import.meta.url);

function loadAssets(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const { file } of Object.values(ASSETS)) {
    if (files.has(file)) continue;
    try {
      files.set(file, readFileSync(new URL(file, UI_DIR)));
    } catch {
      // Reported when asked for; /metrics works without the page.
    }
  }
  return files;
}

export function replicaView(obs: Observatory): Record<string, unknown>[] {
  return obs.replicas.map((s) => ({
    id: s.id,
    model: s.model,
    engine: s.engine,
    hardware: s.hardware,
    state: s.state,
    available: s.available,
    active: s.active,
    queued: s.queued,
    slots: s.slots,
    kv: s.kv ?? null,
    tokensPerS: s.tokensPerS,
    efficiency: s.efficiency()?.value ?? null,
    outputTokens: s.outputTokens,
    completed: s.completed,
    failovers: s.failovers,
    continuations: s.continuations,
  }));
}

/** What the live page draws at one tick. */
export function liveSnapshot(obs: Observatory, point: FleetPoint | undefined): Record<string, unknown> {
  return {
    at: point?.t ?? obs.clock.epochMs(),
    tickMs: obs.tickMs,
    kpis: obs.kpis(),
    point: point ?? null,
    replicas: replicaView(obs),
    ttft: { boundsS: TTFT_BUCKETS_S, counts: [...obs.ttftCounts] },
  };
}

/** The batches in a page's events are read again at most this often, ms (or each tick, when ticks are slower). */
const BATCHES_REFRESH_MS = 2000;

/** `batches`: where the Batch API's batches are, when this server has one; the page shows no Batches panel otherwise (null). */
export function registerObsRoutes(app: FastifyInstance, obs: Observatory, registry: Registry, sims: SimReports, batches?: BatchSource): void {
  const assets = loadAssets();
  const feed = batches === undefined ? undefined : new BatchFeed(batches, obs.clock, Math.max(BATCHES_REFRESH_MS, obs.tickMs), (err) => app.log.warn({ err }, "cannot read the batches for /ui"));

  // Metrics and the dashboard name tenants and their spend: "observer" access (gateway/access.ts).
  const OBSERVER = { config: { access: "observer" } } as const;
  app.get("/metrics", OBSERVER, async (_request, reply) => {
    const text = await scrape(obs, registry);
    return reply.header("content-type", registry.contentType).send(text);
  });

  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    app.get(path, OBSERVER, (_request, reply) => {
      const body = assets.get(file);
      if (body === undefined) return reply.code(500).send(problem(`the dashboard's ${file} is missing from ${UI_DIR.pathname}; reinstall the package`, "ui_missing"));
      return reply.header("content-type", type).header("cache-control", "no-cache").header("content-security-policy", CSP).header("x-content-type-options", "nosniff").send(body);
    });
  }

  app.get("/ui/api/live", OBSERVER, async () => ({ ...liveSnapshot(obs, obs.history().at(-1)), batches: (await feed?.fresh()) ?? null, history: obs.history(), sims: sims.list() }));

  // Server-sent events: one snapshot per tick to every open page.
  const clients = new Set<ServerResponse>();
  app.get("/ui/api/events", OBSERVER, (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-request-id": String(request.id),
    });
    raw.write(`retry: ${Math.max(500, obs.tickMs)}\n\n`);
    clients.add(raw);
    raw.once("close", () => clients.delete(raw));
  });
  const unsubscribe = obs.subscribe((point) => {
    if (clients.size === 0) return;
    const event = `data: ${JSON.stringify({ ...liveSnapshot(obs, point), batches: feed?.current() ?? null })}\n\n`;
    for (const raw of clients) if (!raw.writableEnded) raw.write(event);
  });
  app.addHook("preClose", (done) => {
    unsubscribe();
    for (const raw of clients) raw.end();
    clients.clear();
    done();
  });

  app.get("/ui/api/sim", OBSERVER, () => ({ object: "list", data: sims.list() }));
  app.get<{ Params: { index: string } }>("/ui/api/sim/:index", OBSERVER, async (request, reply) => {
    const index = /^\d{1,4}$/.test(request.params.index) ? Number(request.params.index) : -1;
    try {
      const loaded = await sims.load(index);
      if (loaded === undefined) return sendProblem(reply, 404, `no sim report ${request.params.index}; this server opens ${sims.list().length} (flotilla serve --sim-report DIR)`, "sim_report_not_found");
      return loaded;
    } catch (err) {
      return sendProblem(reply, 500, `cannot read sim report ${index}: ${(err as Error).message}`, "sim_report_unreadable");
    }
  });
}

function problem(message: string, code: string): { error: { message: string; type: string; param: null; code: string } } {
  return { error: { message, type: "server_error", param: null, code } };
}

function sendProblem(reply: FastifyReply, status: number, message: string, code: string): FastifyReply {
  return reply.code(status).send({ error: { ...problem(message, code).error, type: status < 500 ? "invalid_request_error" : "server_error" } });
}
