/**
 * store/: tenants, keys, limits' state and the usage ledger, behind one
 * interface with two backends. Knows nothing of HTTP or scheduling.
 */
import { isAbsolute, resolve } from "node:path";
import type { Store } from "./store.js";
import { SqliteStore } from "./sqlite.js";

export type { Store } from "./store.js";
export { MIGRATIONS, redactUrl } from "./store.js";
export * from "./types.js";
export { decide, release, refill, periodOf, periodStart, nextPeriodStart, describeRefusal, EMPTY_STATE } from "./limits.js";
export type { Ask, Decision, Release } from "./limits.js";
export * as batchPlans from "./batches.js";
export type { Plan, InputLine } from "./batches.js";

export interface OpenStoreOptions {
  /** Where relative SQLite paths resolve (default: the working directory). */
  readonly baseDir?: string;
  /** Postgres connections per process (default 10). */
  readonly poolSize?: number;
  /** Postgres: run buckets and heartbeats on the database's clock (default true). */
  readonly databaseClock?: boolean;
  readonly onError?: (err: Error) => void;
  /** How long a group of ledger writes stays open before its one commit, ms (default 0: the event-loop turn). */
  readonly commitWindowMs?: number;
}

/**
 * Opens a store by URL: `postgres://…` or `postgresql://…` for Postgres;
 * `sqlite:PATH`, `sqlite::memory:` or a plain file path for SQLite. The
 * schema is migrated before this returns.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(url)) {
    const { PostgresStore } = await import("./postgres.js");
    return PostgresStore.open(url, {
      ...(opts.poolSize === undefined ? {} : { poolSize: opts.poolSize }),
      ...(opts.databaseClock === undefined ? {} : { databaseClock: opts.databaseClock }),
      ...(opts.onError === undefined ? {} : { onError: opts.onError }),
      ...(opts.commitWindowMs === undefined ? {} : { commitWindowMs: opts.commitWindowMs }),
    });
  }
  let path = url.replace(/^sqlite:(\/\/)?/i, "");
  if (path === "") throw new Error(`store "${url}" names no file; use sqlite:PATH or postgres://…`);
  if (path !== ":memory:" && !isAbsolute(path)) path = resolve(opts.baseDir ?? process.cwd(), path);
  try {
    return new SqliteStore(path, opts.commitWindowMs === undefined ? {} : { commitWindowMs: opts.commitWindowMs });
  } catch (err) {
    throw new Error(`cannot open the SQLite store at ${path}: ${(err as Error).message}`, { cause: err });
  }
}
