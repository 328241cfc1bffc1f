/**
 * Every component reads time from an injected Clock, so the simulator can run
 * the same code in virtual time. `now()` is monotonic milliseconds for
 * durations; `epochMs()` is calendar time for timestamps users see.
 */
export interface Clock {
  now(): number;
  epochMs(): number;
}

export const wallClock: Clock = {
  now: () => performance.now(),
  epochMs: () => Date.now(),
};

/** A clock that moves only when told to: the simulator's, and tests'. */
export class ManualClock implements Clock {
  #now: number;
  readonly #epochAtZero: number;

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

  advanceTo(ms: number): void {
    if (ms < this.#now) throw new RangeError(`clock cannot go back from ${this.#now} to ${ms}`);
    this.#now = ms;
  }
}
