/**
 * Batches on the dashboard: each recent batch of the Batch API, every
 * tenant's, with how far its lines have got. The gateway says where they are
 * kept (recentBatches over its store); the dashboard only reads them.
 */
import type { Clock } from "../core/clock.js";
import { listBatches } from "../store/batches.js";
import type { BatchRecord } from "../store/types.js";
import type { Store } from "../store/store.js";

/** One batch as the page draws it (times in epoch ms). */
export interface BatchSummary {
  readonly id: string;
  readonly tenant: string;
  readonly status: string;
  readonly endpoint: string;
  readonly createdAt: number;
  /** Lines in all, and those finished one way or another: completed, failed, cancelled or expired. */
  readonly total: number;
  readonly done: number;
  readonly pending: number;
  readonly running: number;
  readonly completed: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly expired: number;
}

/** Where the page's batches come from: the newest first. */
export type BatchSource = () => Promise<readonly BatchSummary[]>;

/** How many batches the page shows. */
export const BATCHES_SHOWN = 20;

export function batchSummary(b: BatchRecord): BatchSummary {
  const c = b.counts;
  const done = c.completed + c.failed + c.cancelled + c.expired;
  return { id: b.id, tenant: b.tenantId, status: b.status, endpoint: b.endpoint, createdAt: b.createdAt, total: done + c.pending + c.running, done, ...c };
}

/** The newest `limit` batches of every tenant, read from the store the Batch API keeps them in. */
export function recentBatches(store: Store, limit = BATCHES_SHOWN): BatchSource {
  return async () => (await store.transact(listBatches(undefined, limit))).map(batchSummary);
}

/**
 * The batches as the page last saw them. A page's first snapshot reads them
 * afresh; its events, one per tick, carry what was last read and start a new
 * read when that is older than `everyMs`: counting a large batch's lines is
 * work for the store, done only while a page is open and never twice at once.
 * A read that fails keeps what was read before, and is reported.
 */
export class BatchFeed {
  private latest: readonly BatchSummary[] = [];
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly source: BatchSource,
    private readonly clock: Clock,
    private readonly everyMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Read now (a page's first snapshot). */
  async fresh(): Promise<readonly BatchSummary[]> {
    await this.read();
    return this.latest;
  }

  /** What was last read, starting a new read when that is stale (each tick's event). */
  current(): readonly BatchSummary[] {
    if (this.clock.now() - this.readAt >= this.everyMs) void this.read();
    return this.latest;
  }

  private read(): Promise<void> {
    this.reading ??= (async () => {
      const started = this.clock.now();
      try {
        this.latest = await this.source();
      } catch (err) {
        this.onError(err as Error);
      } finally {
        // A failed read too waits its turn to be tried again: one report per `everyMs`, not per tick.
        this.readAt = started;
        this.reading = undefined;
      }
    })();
    return this.reading;
  }
}
