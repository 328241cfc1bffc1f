/**
 * Every component reads time from an injected Clock, and waits on it, so the
 * simulator and tests can run the same code in virtual time. `now()` is
 * monotonic milliseconds for durations; `epochMs()` is calendar time for
 * timestamps users see; `sleep()` resolves once `ms` of this clock's time
 * has passed, or at once when `signal` aborts (a wait is never an error);
 * `after()` calls back once `ms` have passed and returns what cancels it:
 * the request path's deadlines, which a signal and a promise per request
 * would make dearer than the work they guard.
 */
export interface Clock {
  now(): number;
  epochMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  after(ms: number, fn: () => void): () => void;
}

export const wallClock: Clock = {
  now: () => performance.now(),
  epochMs: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener("abort", done, { once: true });
    }),
  after: (ms, fn) => {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};

/** A clock that moves only when told to: the simulator's, and tests'. Sleepers wake, in time order, as it passes their time. */
export class ManualClock implements Clock {
  #now: number;
  readonly #epochAtZero: number;
  #sleepers: { at: number; wake: () => void }[] = [];

  constructor(startMs = 0, epochAtZero = 0) {
    this.#now = startMs;
    this.#epochAtZero = epochAtZero;
  }

  now(): number {
    return this.#now;
  }

  epochMs(): number {
    return this.#epochAtZero + this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted === true) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const sleeper = {
        at: this.#now + ms,
        wake: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#sleepers.push(sleeper);
    });
  }

  after(ms: number, fn: () => void): () => void {
    const sleeper = { at: this.#now + Math.max(0, ms), wake: fn };
    this.#sleepers.push(sleeper);
    return () => {
      this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
    };
  }

  /** When the earliest sleeper wakes; Infinity when none sleeps. A driver steps the clock from one to the next. */
  get nextWakeMs(): number {
    let at = Infinity;
    for (const s of this.#sleepers) at = Math.min(at, s.at);
    return at;
  }

  advanceTo(ms: number): void {
    if (ms < this.#now) throw new RangeError(`clock cannot go back from ${this.#now} to ${ms}`);
    const due = this.#sleepers.filter((s) => s.at <= ms).sort((a, b) => a.at - b.at);
    this.#sleepers = this.#sleepers.filter((s) => s.at > ms);
    this.#now = ms;
    for (const s of due) s.wake();
  }
}
