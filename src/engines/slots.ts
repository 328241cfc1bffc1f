import { FlotillaError } from "../core/errors.js";

interface Waiter<T> {
  resolve(slot: T): void;
  reject(err: unknown): void;
  signal: AbortSignal;
  onAbort(): void;
}

/**
 * A fixed set of execution slots (an engine's sequences) with a bounded FIFO
 * of waiters. The bound is what turns overload into a prompt `overloaded`
 * error instead of an ever-growing queue; an aborted waiter leaves the queue
 * at once, so a client that gives up never holds a place.
 */
export class SlotPool<T> {
  readonly #free: T[];
  readonly #waiters: Waiter<T>[] = [];
  readonly #size: number;
  readonly #maxQueue: number;

  constructor(slots: readonly T[], maxQueue: number) {
    this.#free = [...slots];
    this.#size = slots.length;
    this.#maxQueue = maxQueue;
  }

  get size(): number {
    return this.#size;
  }
  get active(): number {
    return this.#size - this.#free.length;
  }
  get queued(): number {
    return this.#waiters.length;
  }
  get maxQueue(): number {
    return this.#maxQueue;
  }

  acquire(signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(cancelled());
    // LIFO: the slot used last has the warmest KV cache for a follow-up turn.
    const slot = this.#free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.#waiters.length >= this.#maxQueue) {
      return Promise.reject(new FlotillaError("overloaded", `all ${this.#size} slots are busy and ${this.#maxQueue} requests are already waiting`, { retryAfterS: 1 }));
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(cancelled());
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(slot: T): void {
    const waiter = this.#waiters.shift();
    if (waiter === undefined) {
      this.#free.push(slot);
      return;
    }
    waiter.signal.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(slot);
  }

  /** Rejects every waiter; used when the engine shuts down. */
  rejectWaiters(err: unknown): void {
    for (const w of this.#waiters.splice(0)) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(err);
    }
  }
}

function cancelled(): FlotillaError {
  return new FlotillaError("cancelled", "the request was cancelled before a slot was free");
}
