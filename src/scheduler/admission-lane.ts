/**
 * The front door's rule, one per served model, shared by the gateway's
 * AdmissionGate and the simulator. The model can run as many requests at
 * once as its ready replicas have sequences (its capacity, from
 * readiness.ts's servingSlots); below that a request goes straight to the
 * router. At it, requests wait in the AdmissionQueue (interactive before
 * batch, weighted fair share between tenants, first come first served
 * within one) and leave it as running requests finish, or when the driver
 * looks again (a replica came back). With no replica ready at all, requests
 * go on to the router, which waits for one or answers 503, rather than
 * queueing behind a capacity of zero.
 */
import { AdmissionQueue, type AdmissionOptions, type ExpiredWaiter, type Waiter } from "./admission.js";

export class AdmissionLane<T extends Waiter> {
  /** Requests admitted and not yet finished. */
  running = 0;
  readonly queue: AdmissionQueue<T>;

  constructor(opts: AdmissionOptions) {
    this.queue = new AdmissionQueue<T>(opts);
  }

  /** Whether a request arriving now goes straight to the router. */
  opensFor(capacity: number): boolean {
    return this.queue.size === 0 && this.#room(capacity);
  }

  /** A request goes to the router. */
  start(): void {
    this.running++;
  }

  /** A request admitted earlier has ended. */
  finish(): void {
    this.running--;
  }

  /** Hands back what waited past its deadline, then admits (in the queue's order) what fits now. */
  pump(now: number, capacity: number, admit: (item: T) => void, expired: (e: ExpiredWaiter<T>) => void): void {
    for (const e of this.queue.expire(now)) expired(e);
    while (this.queue.size > 0 && this.#room(capacity)) {
      const next = this.queue.next(now);
      if (next === undefined) break;
      this.start();
      admit(next);
    }
  }

  #room(capacity: number): boolean {
    return this.running < capacity || capacity === 0;
  }
}
