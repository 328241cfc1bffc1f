import type { Engine } from "../engines/engine.js";
import type { ReplicaHealth } from "./health.js";
import type { Candidate } from "../scheduler/pipeline.js";
import { phaseAdmits } from "../scheduler/replica-state.js";

/** One engine serving one model, as the controller tracks it. */
export interface Replica {
  /** Stable name, e.g. "llama-8b/0", used in logs, usage rows and metrics. */
  readonly id: string;
  readonly model: string;
  readonly engine: Engine;
  readonly health: ReplicaHealth;
}

export interface ServedModel {
  readonly name: string;
  readonly replicas: readonly Replica[];
}

/** The controller's view of everything it serves. */
export class Fleet {
  readonly #models: ReadonlyMap<string, ServedModel>;

  constructor(models: readonly ServedModel[]) {
    this.#models = new Map(models.map((m) => [m.name, m]));
  }

  models(): IterableIterator<ServedModel> {
    return this.#models.values();
  }

  model(name: string): ServedModel | undefined {
    return this.#models.get(name);
  }

  replica(id: string): Replica | undefined {
    return this.replicas().find((r) => r.id === id);
  }

  replicas(): Replica[] {
    return [...this.#models.values()].flatMap((m) => m.replicas);
  }

  /** True when at least one replica of any model can take work. */
  anyReady(): boolean {
    return this.replicas().some((r) => r.engine.isReady() && r.health.admits());
  }

  /** Requests running or waiting on any replica. */
  inFlight(): number {
    let n = 0;
    for (const r of this.replicas()) {
      const load = r.engine.load();
      n += load.active + load.queued;
    }
    return n;
  }

  /**
   * Starts every engine at once. A replica that fails to start stays
   * not-ready and is reported; the fleet serves with the rest.
   */
  async start(onError: (replica: Replica, err: unknown) => void): Promise<void> {
    await Promise.all(this.replicas().map((r) => r.engine.start().catch((err: unknown) => onError(r, err))));
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.replicas().map((r) => r.engine.close()));
  }
}

/**
 * The router's snapshot of one model's replicas. A replica the breaker has
 * ejected is still better than none: when every replica that is up has been
 * ejected (a burst of failures during an outage trips them all), they are
 * offered anyway, as Envoy's panic threshold does, rather than failing every
 * request with 503. A `resume` (the rest of an answer another replica broke
 * off) may go to a draining or terminating replica too; a removed one is
 * never offered (src/scheduler/replica-state.ts).
 */
export function candidatesOf(model: ServedModel, resume = false): Candidate[] {
  let anyAdmitted = false;
  const candidates = model.replicas.map((r, index) => {
    const load = r.engine.load();
    const up = r.engine.isReady();
    r.health.observe(up);
    const admitted = up && r.health.admits(resume);
    anyAdmitted ||= admitted;
    return {
      index,
      ready: admitted,
      active: load.active,
      queued: load.queued,
      slots: load.slots,
      maxQueue: load.maxQueue,
      contextSize: r.engine.contextSize,
      failures: r.health.failures,
      proven: r.health.proven,
    };
  });
  if (anyAdmitted) return candidates;
  return candidates.map((c) => {
    const r = model.replicas[c.index]!;
    return r.engine.isReady() && phaseAdmits(r.health.phase, resume) ? { ...c, ready: true } : c;
  });
}
