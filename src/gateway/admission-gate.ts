import { NO_LONGER_NEEDED } from "../core/abort.js";
import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { statusOf, type ServedModel } from "../fleet/fleet.js";
import { PRIORITY_CLASSES, type PriorityClass, type Waiter } from "../scheduler/admission.js";
import { AdmissionLane } from "../scheduler/admission-lane.js";
import { servingSlots } from "../scheduler/readiness.js";

/**
 * Fair share at the front door: per served model, the scheduler's
 * AdmissionLane (the rule the simulator runs too) over the live fleet. The
 * queue is bounded: past it, 429 with a Retry-After from its measured drain
 * rate. A request whose deadline passes while it waits gets 504; one whose
 * client leaves is dropped from the queue.
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
  /** The model's replicas now (the fleet's latest snapshot): replicas added or removed change its capacity. */
  readonly latest?: (model: string) => ServedModel | undefined;
  /** Hears every request that comes to the gate, by model (the autoscaler's arrival rate). */
  readonly arrived?: (model: string) => void;
}

interface Waiting extends Waiter {
  readonly admit: () => void;
  readonly refuse: (err: FlotillaError) => void;
}

/** One model's lane, and the snapshot of its replicas it was made for (replicas come and go; a lane outlives snapshots). */
interface Entry {
  readonly model: ServedModel;
  readonly lane: AdmissionLane<Waiting>;
}

function laneFor(model: ServedModel, opts: AdmissionGateOptions, weights: ReadonlyMap<string, number>): AdmissionLane<Waiting> {
  return new AdmissionLane<Waiting>({
    maxQueued: opts.maxQueued ?? model.replicas.reduce((n, r) => n + r.engine.load().maxQueue, 0),
    ...(opts.maxQueuedPerTenant === undefined ? {} : { maxQueuedPerTenant: opts.maxQueuedPerTenant }),
    weights: (tenant) => weights.get(tenant) ?? 1,
  });
}

export class AdmissionGate {
  readonly #opts: AdmissionGateOptions;
  /** By model name. */
  readonly #lanes = new Map<string, Entry>();
  /** The latest weight each tenant was admitted with (weights change through the admin API). */
  readonly #weights = new Map<string, number>();
  /** Stops the poll loop (see #poll). */
  #polling: AbortController | undefined;

  constructor(opts: AdmissionGateOptions) {
    this.#opts = opts;
  }

  /** Requests waiting, over every model. */
  queued(): number {
    let n = 0;
    for (const { lane } of this.#lanes.values()) n += lane.queue.size;
    return n;
  }

  /** Requests waiting by model and priority class, for the metrics. */
  depths(): { model: string; priority: PriorityClass; count: number }[] {
    return [...this.#lanes].flatMap(([model, { lane }]) => PRIORITY_CLASSES.map((priority) => ({ model, priority, count: lane.queue.sizeOfClass(priority) })));
  }

  /**
   * Resolves with a release function once `request` may run on `model`
   * (call it exactly when the request ends); rejects with `overloaded` (429)
   * when the queue is full, `deadline_exceeded` when its deadline passes
   * first, `cancelled` when `signal` aborts while it waits.
   */
  enter(model: ServedModel, request: GateRequest, signal: AbortSignal): Promise<() => void> {
    this.#opts.arrived?.(model.name);
    const entry = this.#entry(model);
    const lane = entry.lane;
    if (request.weight !== undefined) this.#weights.set(request.tenant, request.weight);
    const now = this.#opts.clock.now();
    if (lane.opensFor(this.#capacity(entry))) {
      lane.start();
      return Promise.resolve(this.#release(entry));
    }
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
          resolve(this.#release(entry));
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

  /** Stops looking at deadlines and capacity on the clock (queued requests still leave as capacity frees). */
  close(): void {
    this.#polling?.abort(NO_LONGER_NEEDED);
    this.#polling = undefined;
  }

  #entry(model: ServedModel): Entry {
    let entry = this.#lanes.get(model.name);
    if (entry === undefined) {
      entry = { model, lane: laneFor(model, this.#opts, this.#weights) };
      this.#lanes.set(model.name, entry);
    }
    return entry;
  }

  #capacity(entry: Entry): number {
    return capacity(this.#opts.latest?.(entry.model.name) ?? entry.model);
  }

  /** The release function of a request the entry's lane has started: call it exactly once, when the request ends. */
  #release(entry: Entry): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.lane.finish();
      this.#pump(entry);
    };
  }

  #pump(entry: Entry): void {
    const { model, lane } = entry;
    lane.pump(
      this.#opts.clock.now(),
      this.#capacity(entry),
      (item) => item.admit(),
      ({ item, waitedMs }) => item.refuse(new FlotillaError("deadline_exceeded", `the request waited ${Math.round(waitedMs)} ms for capacity on model "${model.name}" and ran out of time`)),
    );
  }

  /**
   * While anything waits, deadlines are checked and capacity re-read
   * (replicas come back, slots grow) every pollMs of the gate's clock: an
   * engine coming back has no event to wake a waiter with.
   */
  #poll(): void {
    if (this.#polling !== undefined) return;
    const polling = (this.#polling = new AbortController());
    const { clock, pollMs = 50 } = this.#opts;
    void (async () => {
      while (!polling.signal.aborted && this.queued() > 0) {
        await clock.sleep(pollMs, polling.signal);
        for (const entry of this.#lanes.values()) this.#pump(entry);
      }
      if (this.#polling === polling) this.#polling = undefined;
    })();
  }
}

/** Sequences the model's replicas that take new traffic can run at once. */
function capacity(model: ServedModel): number {
  return servingSlots(model.replicas.length, (i) => statusOf(model.replicas[i]!), (i) => model.replicas[i]!.engine.load().slots);
}
