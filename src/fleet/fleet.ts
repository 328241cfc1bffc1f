import type { Prompt } from "../core/request.js";
import type { Engine } from "../engines/engine.js";
import type { ReplicaHealth } from "../scheduler/health.js";
import type { Candidate } from "../scheduler/pipeline.js";
import { markReady, type Readiness, type ReplicaStatus } from "../scheduler/readiness.js";

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
 * The router's snapshot of one model's replicas, every one a candidate,
 * made ready or not by the shared rule (scheduler/readiness.ts: phase,
 * engine, breaker, panic mode).
 */
export function candidatesOf(model: ServedModel, resume = false, readiness: Readiness = markReady): Candidate[] {
  const candidates = model.replicas.map((r, index) => {
    const load = r.engine.load();
    return { index, ready: false, active: load.active, queued: load.queued, slots: load.slots, maxQueue: load.maxQueue, contextSize: r.engine.contextSize };
  });
  readiness(candidates, (i) => statusOf(model.replicas[i]!), resume);
  return candidates;
}

/**
 * The prompt's length in the model's own tokens, from the first replica
 * with a tokenizer at hand; undefined when none has one (remote engines). A
 * tokenizer belongs to the model, so a replica whose engine is down still
 * counts: the dispatcher's route and the tenancy's admission read the same.
 */
export function promptTokensOf(model: ServedModel, prompt: Prompt, continuation?: string): number | undefined {
  for (const r of model.replicas) {
    const n = r.engine.countPromptTokens(prompt, continuation);
    if (n !== undefined) return n;
  }
  return undefined;
}

/** What the readiness rule reads of a replica. */
export function statusOf(replica: Replica): ReplicaStatus {
  return { engineReady: replica.engine.isReady(), health: replica.health };
}
