/**
 * Group commit: the ledger writes that arrive within one window (by default
 * one turn of the event loop) are committed together, in one transaction,
 * and every caller's promise settles only once that transaction has
 * committed. One commit then carries tens of admissions and settlements
 * instead of one.
 *
 * The guarantee is the one the ledger had: a write a caller has seen
 * succeed is committed (an admission before its engine runs, so limits
 * stay exact across processes). A write still waiting for its group when
 * the process dies was never acknowledged: an admission's request never
 * started, and a settlement's row stays `running` until crash recovery
 * marks it `interrupted` and releases what it reserved. What it costs is
 * the window: an admission waits for the end of the current event-loop
 * turn, or `windowMs` when one is set.
 *
 * How a group is committed is the backend's (`commit`); `commitTogether`
 * and `commitTogetherAsync` are the rule both use: the whole group in one
 * transaction, and only when one of its writes throws, each write in a
 * transaction of its own, so a bad write fails alone without every write
 * paying for a savepoint.
 */

export type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

export interface CommitGroupOptions<W> {
  /** Commits a group: one outcome per write, in order; throws (or rejects) when the commit itself failed, and then none of it holds. */
  readonly commit: (writes: readonly W[]) => readonly Outcome[] | Promise<readonly Outcome[]>;
  /** How long a group stays open, ms; 0 (the default) closes it at the end of the event-loop turn. */
  readonly windowMs?: number;
  /** A group closes early at this many writes (default 512). */
  readonly maxWrites?: number;
}

interface Pending<W> {
  readonly write: W;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

export class CommitGroup<W> {
  readonly #opts: CommitGroupOptions<W>;
  #pending: Pending<W>[] = [];
  /** Cancels the scheduled close of the open group; undefined when none is open. */
  #cancelClose: (() => void) | undefined;

  constructor(opts: CommitGroupOptions<W>) {
    this.#opts = opts;
  }

  /** Queues `write` for the next group; resolves with its result once the group has committed. */
  run<T>(write: W): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length >= (this.#opts.maxWrites ?? 512)) void this.flush();
      else if (this.#cancelClose === undefined) this.#cancelClose = this.#scheduleClose();
    });
  }

  /**
   * Commits what is waiting now (closing: nothing acknowledged is left
   * behind). A synchronous backend has committed when this returns; the
   * promise settles once every caller of the group has its answer.
   */
  flush(): Promise<void> {
    this.#cancelClose?.();
    this.#cancelClose = undefined;
    const group = this.#pending;
    if (group.length === 0) return Promise.resolve();
    this.#pending = [];
    const answer = (outcomes: readonly Outcome[]): void => group.forEach((p, i) => settle(p, outcomes[i]!));
    // The commit itself failed (the database busy past its timeout, a full disk, a lost connection): nothing of the group holds.
    const refuse = (err: unknown): void => group.forEach((p) => p.reject(err));
    try {
      const outcomes = this.#opts.commit(group.map((p) => p.write));
      if (!("then" in outcomes)) {
        answer(outcomes);
        return Promise.resolve();
      }
      return outcomes.then(answer, refuse);
    } catch (err) {
      refuse(err);
      return Promise.resolve();
    }
  }

  #scheduleClose(): () => void {
    const windowMs = this.#opts.windowMs ?? 0;
    if (windowMs > 0) {
      const timer = setTimeout(() => void this.flush(), windowMs);
      return () => clearTimeout(timer);
    }
    const immediate = setImmediate(() => void this.flush());
    return () => clearImmediate(immediate);
  }
}

function settle(p: Pending<unknown>, o: Outcome): void {
  if (o.ok) p.resolve(o.value);
  else p.reject(o.error);
}

/** A write's own error, told apart from the transaction's. */
class WriteFailed extends Error {
  constructor(readonly error: unknown) {
    super("a write of the group failed");
  }
}

const succeeded = (value: unknown): Outcome => ({ ok: true, value });
const failed = (err: unknown): Outcome => ({ ok: false, error: err instanceof WriteFailed ? err.error : err });

/** The group rule for a synchronous database: `transaction` runs its work in one transaction and commits it, or throws. */
export function commitTogether<W>(writes: readonly W[], transaction: (work: () => void) => void, apply: (write: W) => unknown): Outcome[] {
  const values: unknown[] = [];
  try {
    transaction(() => {
      for (const w of writes) values.push(guarded(apply, w));
    });
    return values.map(succeeded);
  } catch (err) {
    if (!(err instanceof WriteFailed)) throw err;
    if (writes.length === 1) return [failed(err)];
    return writes.map((w) => {
      try {
        let value: unknown;
        transaction(() => (value = apply(w)));
        return succeeded(value);
      } catch (e) {
        return failed(e);
      }
    });
  }
}

/** The same rule for a database reached over the network: `transaction` hands its work a connection inside one transaction. */
export async function commitTogetherAsync<W, C>(
  writes: readonly W[],
  transaction: (work: (c: C) => Promise<void>) => Promise<void>,
  apply: (write: W, c: C) => Promise<unknown>,
): Promise<Outcome[]> {
  const values: unknown[] = [];
  try {
    await transaction(async (c) => {
      for (const w of writes) values.push(await apply(w, c).catch((e: unknown) => Promise.reject(new WriteFailed(e))));
    });
    return values.map(succeeded);
  } catch (err) {
    if (!(err instanceof WriteFailed)) throw err;
    if (writes.length === 1) return [failed(err)];
    return Promise.all(
      writes.map(async (w) => {
        try {
          let value: unknown;
          await transaction(async (c) => void (value = await apply(w, c)));
          return succeeded(value);
        } catch (e) {
          return failed(e);
        }
      }),
    );
  }
}

function guarded<W>(apply: (write: W) => unknown, w: W): unknown {
  try {
    return apply(w);
  } catch (err) {
    throw new WriteFailed(err);
  }
}
