import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import type { ServedModel } from "../fleet/fleet.js";
import { AdmissionQueue, PRIORITY_CLASSES, type PriorityClass, type Waiter } from "../scheduler/admission.js";

/**
 * Fair share at the front door. Each served model can run as many requests
 * at once as its ready replicas have sequences; below that a request goes
 * straight to the router. At it, requests wait in the scheduler's
 * AdmissionQueue — interactive before batch, weighted fair share between
 * tenants, first come first served within one — and leave it as running
 * requests finish. The queue is bounded: past it, 429 with a Retry-After
 * from its measured drain rate. A request whose deadline passes while it
 * waits gets 504; one whose client leaves is dropped from the queue.
 *
 * Waiting here rather than in the engines' own queues is what makes the
 * share fair: an engine serves its queue in arrival order and knows nothing
 * of tenants, and the router decides only when a request leaves this queue,
 * so it routes on the fleet as it is then, not as it was on arrival.
 */

export interface GateRequest {
  readonly tenant: string;
  readonly priority: PriorityClass;
  /** Fair-share cost, e.g. prompt tokens plus the most it may generate; asked only when the request must wait. */
  readonly cost: () => number;
  /** Absolute time (the gate's clock) by which it must have started. */
  readonly deadlineMs: number;
  /** Tenant weight for fair share (default 1). */
  readonly weight?: number;
}

export interface AdmissionGateOptions {
  readonly clock: Clock;
  /** Requests waiting at most, per model (default: the sum of its replicas' own queue limits, `max_queue`). */
  readonly maxQueued?: number;
  /** Requests one tenant may have waiting, per model (default: maxQueued). */
  readonly maxQueuedPerTenant?: number;
  /** How often waiting requests are checked for passed deadlines and new capacity, ms (default 50). */
  readonly pollMs?: number;
}

interface Waiting extends Waiter {
  readonly admit: () => void;
  readonly refuse: (err: FlotillaError) => void;
}

/** Per model: what runs, and what waits. */
class Lane {
  running = 0;
  readonly queue: AdmissionQueue<Waiting>;

  constructor(model: ServedModel, opts: AdmissionGateOptions, weights: ReadonlyMap<string, number>) {
    this.queue = new AdmissionQueue<Waiting>({
      maxQueued: opts.maxQueued ?? model.replicas.reduce((n, r) => n + r.engine.load().maxQueue, 0),
      ...(opts.maxQueuedPerTenant === undefined ? {} : { maxQueuedPerTenant: opts.maxQueuedPerTenant }),
      weights: (tenant) => weights.get(tenant) ?? 1,
    });
  }
}

export class AdmissionGate {
  readonly #opts: AdmissionGateOptions;
  readonly #lanes = new Map<ServedModel, Lane>();
  /** The latest weight each tenant was admitted with (weights change through the admin API). */
  readonly #weights = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: AdmissionGateOptions) {
    this.#opts = opts;
  }

  /** Requests waiting, over every model. */
  queued(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.queue.size;
    return n;
  }

  /** Requests waiting by model and priority class, for the metrics. */
  depths(): { model: string; priority: PriorityClass; count: number }[] {
    return [...this.#lanes].flatMap(([model, lane]) => PRIORITY_CLASSES.map((priority) => ({ model: model.name, priority, count: lane.queue.sizeOfClass(priority) })));
  }

  /**
   * Resolves with a release function once `request` may run on `model`
   * (call it exactly when the request ends); rejects with `overloaded` (429)
   * when the queue is full, `deadline_exceeded` when its deadline passes
   * first, `cancelled` when `signal` aborts while it waits.
   */
  enter(model: ServedModel, request: GateRequest, signal: AbortSignal): Promise<() => void> {
    const lane = this.#lane(model);
    if (request.weight !== undefined) this.#weights.set(request.tenant, request.weight);
    const now = this.#opts.clock.now();
    const cap = capacity(model);
    if (lane.queue.size === 0 && (lane.running < cap || cap === 0)) return Promise.resolve(this.#start(model, lane));
    return new Promise<() => void>((resolve, reject) => {
      const onAbort = (): void => {
        if (lane.queue.remove(waiting)) reject(new FlotillaError("cancelled", "the client went away while the request waited for capacity"));
      };
      const waiting: Waiting = {
        tenant: request.tenant,
        priority: request.priority,
        cost: request.cost(),
        deadlineMs: request.deadlineMs,
        admit: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.#start(model, lane));
        },
        refuse: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const queued = lane.queue.enqueue(waiting, now);
      if (!queued.ok) {
        const code = queued.reason === "deadline_exceeded" ? "deadline_exceeded" : "overloaded";
        reject(new FlotillaError(code, `${queued.message} (model "${model.name}")`, { retryAfterS: queued.retryAfterS }));
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.#poll();
    });
  }

  /** Stops the deadline timer (queued requests still leave as capacity frees). */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #lane(model: ServedModel): Lane {
    let lane = this.#lanes.get(model);
    if (lane === undefined) {
      lane = new Lane(model, this.#opts, this.#weights);
      this.#lanes.set(model, lane);
    }
    return lane;
  }

  #start(model: ServedModel, lane: Lane): () => void {
    lane.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      lane.running--;
      this.#pump(model, lane);
    };
  }

  /** Lets waiting requests in while there is room. With no replica ready, they go on to the router, which waits for one or answers 503. */
  #pump(model: ServedModel, lane: Lane): void {
    const now = this.#opts.clock.now();
    for (const { item, waitedMs } of lane.queue.expire(now)) {
      item.refuse(new FlotillaError("deadline_exceeded", `the request waited ${Math.round(waitedMs)} ms for capacity on model "${model.name}" and ran out of time`));
    }
    const cap = capacity(model);
    while (lane.queue.size > 0 && (lane.running < cap || cap === 0)) {
      const next = lane.queue.next(now);
      if (next === undefined) break;
      next.admit();
    }
  }

  /** While anything waits, deadlines are checked and capacity re-read (replicas come back, slots grow) every pollMs. */
  #poll(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      for (const [model, lane] of this.#lanes) this.#pump(model, lane);
      if (this.queued() === 0) this.close();
    }, this.#opts.pollMs ?? 50);
    this.#timer.unref();
  }
}

/** Sequences the model's replicas that take traffic can run at once. */
function capacity(model: ServedModel): number {
  let n = 0;
  for (const r of model.replicas) if (r.engine.isReady() && r.health.admits()) n += r.engine.load().slots;
  return n;
}
