/**
 * Group commit for a synchronous database (SQLite): the ledger writes that
 * arrive within one window (by default one turn of the event loop) run in
 * one transaction, each in a savepoint of its own, and every caller's
 * promise settles only once that transaction has committed. One commit
 * then carries tens of admissions and settlements instead of one.
 *
 * The guarantee is the one the ledger had: a write a caller has seen
 * succeed is committed (an admission before its engine runs, so limits
 * stay exact across processes). A write still waiting for its group when
 * the process dies was never acknowledged: an admission's request never
 * started, and a settlement's row stays `running` until crash recovery
 * marks it `interrupted` and releases what it reserved. What it costs is
 * the window: an admission waits for the end of the current event-loop
 * turn, or `windowMs` when one is set.
 */
export interface CommitGroupOptions {
  /** Runs the group's work in one transaction (committing it before returning), or throws. */
  readonly transaction: (work: () => void) => void;
  /** Runs one write in a savepoint of the transaction: a write that throws is undone alone. */
  readonly savepoint: <T>(write: () => T) => T;
  /** How long a group stays open, ms; 0 (the default) closes it at the end of the event-loop turn. */
  readonly windowMs?: number;
  /** A group closes early at this many writes (default 512). */
  readonly maxWrites?: number;
}

interface Pending {
  readonly write: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

export class CommitGroup {
  readonly #opts: CommitGroupOptions;
  #pending: Pending[] = [];
  /** Cancels the scheduled close of the open group; undefined when none is open. */
  #cancelClose: (() => void) | undefined;

  constructor(opts: CommitGroupOptions) {
    this.#opts = opts;
  }

  /** Runs `write` in the next group; resolves with its result once the group has committed. */
  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length >= (this.#opts.maxWrites ?? 512)) this.flush();
      else if (this.#cancelClose === undefined) this.#cancelClose = this.#scheduleClose();
    });
  }

  /** Commits what is waiting now (closing: nothing acknowledged is left behind). */
  flush(): void {
    this.#cancelClose?.();
    this.#cancelClose = undefined;
    const group = this.#pending;
    if (group.length === 0) return;
    this.#pending = [];
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.#opts.transaction(() => {
        for (const p of group) {
          try {
            outcomes.push({ ok: true, value: this.#opts.savepoint(p.write) });
          } catch (err) {
            outcomes.push({ ok: false, value: err });
          }
        }
      });
    } catch (err) {
      // The commit itself failed (the database busy past its timeout, a full disk): nothing of the group holds.
      for (const p of group) p.reject(err);
      return;
    }
    group.forEach((p, i) => (outcomes[i]!.ok ? p.resolve(outcomes[i]!.value) : p.reject(outcomes[i]!.value)));
  }

  #scheduleClose(): () => void {
    const windowMs = this.#opts.windowMs ?? 0;
    if (windowMs > 0) {
      const timer = setTimeout(() => this.flush(), windowMs);
      return () => clearTimeout(timer);
    }
    const immediate = setImmediate(() => this.flush());
    return () => clearImmediate(immediate);
  }
}
