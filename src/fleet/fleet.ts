import type { Prompt } from "../core/request.js";
import type { ReplicaConfig } from "./config.js";
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
  /** The fleet-file entry it was made from (absent for replicas made in code): a reload compares it. */
  readonly config?: ReplicaConfig;
  /** The discovery provider that made it ("dns", "kubernetes"); absent for the file's and the admin API's. A reload leaves these to their provider. */
  readonly source?: string;
}

/**
 * One model's replicas at one moment. Membership changes make a new
 * snapshot rather than editing this one: a decision, or a request retrying
 * over several, reads one consistent list, in which an index means one
 * replica. `version` grows with every change of the fleet.
 */
export interface ServedModel {
  readonly name: string;
  readonly replicas: readonly Replica[];
  readonly version?: number;
}

export type FleetChange = { readonly kind: "added" | "removed"; readonly replica: Replica };

/** The controller's view of everything it serves; replicas come and go while it serves (gateway/membership.ts). */
export class Fleet {
  readonly #models = new Map<string, ServedModel>();
  #version = 0;
  /** Per model, the number the next replica's id takes: ids are never reused, so a ledger row or a metric names one replica. */
  readonly #nextNumber = new Map<string, number>();
  readonly #listeners: ((change: FleetChange) => void)[] = [];

  constructor(models: readonly ServedModel[]) {
    for (const m of models) {
      this.#models.set(m.name, { name: m.name, replicas: m.replicas, version: 0 });
      this.#nextNumber.set(m.name, nextNumberAfter(m.name, m.replicas));
    }
  }

  /** The id the next replica of `model` gets. */
  nextId(model: string): string {
    return `${model}/${this.#nextNumber.get(model) ?? 0}`;
  }

  /** Adds a replica (its model too, when new); it takes requests once its engine is ready. */
  add(replica: Replica): void {
    const prior = this.#models.get(replica.model);
    if (prior?.replicas.some((r) => r.id === replica.id) === true) throw new Error(`replica ${replica.id} is already in the fleet`);
    this.#nextNumber.set(replica.model, Math.max(this.#nextNumber.get(replica.model) ?? 0, nextNumberAfter(replica.model, [replica])));
    this.#replace(replica.model, [...(prior?.replicas ?? []), replica]);
    this.#emit({ kind: "added", replica });
  }

  /**
   * Takes a replica out of every snapshot from now on; its engine is the
   * caller's to close. A model left with none is still served (503 until a
   * replica comes: discovery scaled it to zero) until `forget` drops it.
   */
  detach(replica: Replica): void {
    const prior = this.#models.get(replica.model);
    if (prior === undefined || !prior.replicas.includes(replica)) return;
    this.#replace(replica.model, prior.replicas.filter((r) => r !== replica));
    this.#emit({ kind: "removed", replica });
  }

  /** Serves a model before it has any replica (503 until one comes), as the constructor does for each model it is given. */
  declare(model: string): void {
    if (!this.#models.has(model)) this.#replace(model, []);
  }

  /** Stops serving a model that has no replicas left (404 from now on); false when it still has some. */
  forget(model: string): boolean {
    if ((this.#models.get(model)?.replicas.length ?? 0) > 0) return false;
    return this.#models.delete(model);
  }

  /** Hears every replica added or removed, after the change. */
  onChange(listener: (change: FleetChange) => void): void {
    this.#listeners.push(listener);
  }

  #replace(model: string, replicas: readonly Replica[]): void {
    this.#models.set(model, { name: model, replicas, version: ++this.#version });
  }

  #emit(change: FleetChange): void {
    for (const l of this.#listeners) l(change);
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
  /** Requests this gateway has running or waiting on any replica (not what engines report of other clients). */
  inFlight(): number {
    let n = 0;
    for (const r of this.replicas()) {
      const load = r.engine.load();
      const own = load.own ?? load;
      n += own.active + own.queued;
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
    const kvUsage = load.reported?.kvUsage;
    return { index, ready: false, active: load.active, queued: load.queued, slots: load.slots, maxQueue: load.maxQueue, contextSize: r.engine.contextSize, ...(kvUsage === undefined ? {} : { kvUsage }) };
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

/** One past the highest `model/N` id among `replicas`. */
function nextNumberAfter(model: string, replicas: readonly Replica[]): number {
  let next = 0;
  for (const r of replicas) {
    const n = r.id.startsWith(`${model}/`) ? Number(r.id.slice(model.length + 1)) : NaN;
    if (Number.isInteger(n) && n >= next) next = n + 1;
  }
  return next;
}

/** What the readiness rule reads of a replica. */
export function statusOf(replica: Replica): ReplicaStatus {
  return { engineReady: replica.engine.isReady(), health: replica.health };
}
