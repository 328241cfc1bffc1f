/** Shared by the metering and store tests: backends to run against, and a gateway with a tenancy. */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import type { Fleet } from "../../src/fleet/fleet.js";
import { createGateway, type GatewayOptions } from "../../src/gateway/server.js";
import { promptCounter, rateBookFromConfig } from "../../src/metering/config.js";
import { openStoreTenancy, type StoreTenancy, type StoreTenancyOptions } from "../../src/metering/store-tenancy.js";
import { openStore, type Store } from "../../src/store/index.js";
import type { FastifyInstance } from "fastify";
import { after, before } from "node:test";

import { TINY_MODEL } from "../helpers.js";

export { TINY_MODEL };

export const PG_URL = process.env.FLOTILLA_TEST_PG_URL;
const CI = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";

/**
 * Postgres tests skip, saying why, only outside CI: under CI they run, and
 * fail plainly if no server was provided.
 */
export const pgSkip: string | false =
  PG_URL !== undefined && PG_URL !== "" ? false : CI ? false : "FLOTILLA_TEST_PG_URL is not set, so the Postgres tests are skipped (.ci/run starts a throwaway cluster and sets it)";

export interface Backend {
  readonly name: "sqlite" | "postgres";
  readonly skip: string | false;
  /** A fresh, empty database, and how to remove it. */
  fresh(): Promise<{ url: string; drop(): Promise<void> }>;
}

export const sqliteBackend: Backend = {
  name: "sqlite",
  skip: false,
  fresh: async () => {
    const dir = mkdtempSync(join(tmpdir(), "flotilla-store-"));
    return { url: `sqlite:${join(dir, "ledger.db")}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  },
};

export const postgresBackend: Backend = {
  name: "postgres",
  skip: pgSkip,
  fresh: async () => {
    if (PG_URL === undefined || PG_URL === "") throw new Error("FLOTILLA_TEST_PG_URL is not set, and under CI the Postgres tests must run: start Postgres (see .ci/run) and export its URL");
    const name = `flotilla_test_${process.pid}_${randomBytes(4).toString("hex")}`;
    await withAdmin((c) => c.query(`CREATE DATABASE ${name}`));
    const u = new URL(PG_URL);
    u.pathname = `/${name}`;
    return { url: u.toString(), drop: () => withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}) };
  },
};

export const backends: readonly Backend[] = [sqliteBackend, postgresBackend];

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function tinyConfig(opts: { parallel?: number; maxQueue?: number; hardware?: string; count?: number } = {}): unknown {
  return {
    models: [
      {
        name: "tiny",
        replicas: [
          {
            engine: "local",
            path: TINY_MODEL,
            count: opts.count ?? 1,
            parallel: opts.parallel ?? 4,
            context: 1024,
            max_queue: opts.maxQueue ?? 256,
            ...(opts.hardware === undefined ? {} : { hardware: opts.hardware }),
          },
        ],
      },
    ],
  };
}

export interface TenantGateway {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly fleet: Fleet;
  readonly tenancy: StoreTenancy;
  readonly store: Store;
  close(): Promise<void>;
}

/** An in-process gateway over the tiny model, with a tenancy on `storeUrl`. */
export async function startTenantGateway(
  storeUrl: string,
  opts: { config?: unknown; adminToken?: string; tenancy?: Partial<StoreTenancyOptions>; gateway?: Partial<GatewayOptions>; batches?: { headroomSlots?: number } } = {},
): Promise<TenantGateway> {
  const config = parseFleetConfig(opts.config ?? tinyConfig({ hardware: "h100" }));
  const fleet = buildFleet(config, { baseDir: process.cwd(), env: process.env });
  await fleet.start(() => {});
  const store = await openStore(storeUrl);
  const tenancy = await openStoreTenancy({
    store,
    rates: await rateBookFromConfig(config, process.cwd()),
    countPromptTokens: promptCounter(fleet),
    log: () => {},
    ...opts.tenancy,
  });
  const batches = opts.batches === undefined ? {} : { batches: { store, holder: tenancy.instance.id, pollMs: 20, ...opts.batches } };
  const app = createGateway({ fleet, tenancy, logLevel: "silent", ...batches, ...(opts.adminToken === undefined ? {} : { adminToken: opts.adminToken }), ...opts.gateway });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    fleet,
    tenancy,
    store,
    close: async () => {
      await app.close();
      await tenancy.close();
    },
  };
}

/** The enclosing suite's gateway and its database: started fresh before its tests, removed after them. */
export interface SuiteGateway {
  readonly db: { readonly url: string; drop(): Promise<void> };
  readonly gw: TenantGateway;
}

export function gatewayPerSuite(backend: Backend = sqliteBackend): SuiteGateway {
  const suite = {} as { db: SuiteGateway["db"]; gw: TenantGateway };
  before(async () => {
    suite.db = await backend.fresh();
    suite.gw = await startTenantGateway(suite.db.url);
  });
  after(async () => {
    await suite.gw?.close();
    await suite.db?.drop();
  });
  return suite;
}

export async function post(url: string, path: string, body: unknown, key?: string, signal?: AbortSignal): Promise<Response> {
  return fetch(url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
}

export async function admin(url: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url + path, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Reads a whole SSE response; returns the data payloads (without [DONE]) and whether [DONE] came. */
export async function readStream(res: Response): Promise<{ events: Record<string, unknown>[]; done: boolean }> {
  const text = await res.text();
  const events: Record<string, unknown>[] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    const line = block.trim();
    if (!line.startsWith("data: ")) continue;
    const data = line.slice(6);
    if (data === "[DONE]") done = true;
    else events.push(JSON.parse(data) as Record<string, unknown>);
  }
  return { events, done };
}

/** One streamed completion with usage; the status and, when 200, the final usage chunk. */
export async function streamOnce(url: string, key: string | undefined, prompt: string, maxTokens: number): Promise<{ status: number; usage?: Record<string, unknown>; x?: Record<string, unknown>; error?: Record<string, unknown> }> {
  const res = await post(url, "/v1/completions", { model: "tiny", prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }, key);
  if (res.status !== 200) return { status: res.status, error: ((await res.json()) as { error: Record<string, unknown> }).error };
  const { events } = await readStream(res);
  const last = events.at(-1) ?? {};
  return { status: 200, usage: last.usage as Record<string, unknown>, x: last.x_flotilla as Record<string, unknown> };
}
