/**
 * Live membership: replicas added, changed and removed while the gateway
 * serves, from the admin routes, `flotilla fleet add|remove|update`, or a
 * reload of the fleet file (SIGHUP, or the file changing). Nothing is lost:
 *
 * - an added replica is built and started before it joins the fleet (a
 *   snapshot the router reads), with its rate card priced first;
 * - a removed replica leaves the router at once (phase `removed`: no new
 *   request, no resume), its requests get up to `wait` to finish, and what
 *   still runs then is evicted: each of those requests resumes on another
 *   replica after the text it has already sent (dispatcher.evict). Only
 *   then does its engine close;
 * - a change is an add of the new replica and then a remove of the old one,
 *   so a rolling change of every replica keeps serving throughout;
 * - replicas a discovery provider made (gateway/discovery/) are its own: a
 *   reload of the file leaves them alone and tells the provider instead
 *   (`onReload`), and they leave by `release`, whose wait holds up no other
 *   change, so a scale-down and a scale-up overlap.
 *
 * Changes run one at a time, in order.
 */
import type { Clock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { buildReplica, type BuildOptions } from "../fleet/build.js";
import { modelName, replicaConfig, type FleetConfig, type ReplicaConfig } from "../fleet/config.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import { rateCardFor } from "../metering/config.js";
import type { RateBook } from "../metering/pricing.js";
import type { Cascade } from "../scheduler/cascade.js";
import { DEFAULT_BREAKER, type BreakerOptions } from "../scheduler/health.js";
import type { ReplicaPhase } from "../scheduler/replica-state.js";
import type { Dispatcher } from "./dispatcher.js";

export interface MembershipOptions {
  readonly fleet: Fleet;
  readonly dispatcher: Pick<Dispatcher, "runningOn" | "evict">;
  readonly clock: Clock;
  /** Where relative model paths resolve, and the environment api_key_env names are read from. */
  readonly build: BuildOptions;
  readonly breaker?: BreakerOptions;
  /** Rate cards by replica id, when the gateway prices requests: a new replica is priced before it serves. */
  readonly rates?: RateBook;
  /** Cascade aliases: no model may take one of their names. */
  readonly cascades?: ReadonlyMap<string, Cascade>;
  readonly log?: (message: string) => void;
}

/** What a reload did. */
export interface ReloadSummary {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly kept: number;
  /** Settings that changed in the file but apply only at the next start. */
  readonly needsRestart: readonly string[];
  /** Models whose discovery section changed: their provider restarted (or stopped, where the section is gone). */
  readonly discovery: readonly string[];
}

/** How a replica from a discovery provider joins. */
export interface Joining {
  /** The provider that made it (Replica.source): a reload of the file leaves it alone. */
  readonly source?: string;
  /** Its phase from the start, e.g. "terminating" for an endpoint already on its way out. */
  readonly phase?: Exclude<ReplicaPhase, "removed">;
}

/** A source of replicas besides the file (discovery), told of each reload. */
export interface ReloadHook {
  /**
   * Checks the new file's part for this source before anything changes (a
   * ConfigError refuses the whole reload) and returns how to apply it; the
   * reload applies it before it removes the file's dropped replicas, and it
   * returns the models whose source it restarted.
   */
  prepare(config: FleetConfig): Promise<() => readonly string[]>;
}

/** How long a removed replica's requests get to finish by default before they move on, ms. */
export const DEFAULT_REMOVE_WAIT_MS = 30_000;
const POLL_MS = 50;

export class Membership {
  readonly #o: MembershipOptions;
  #queue: Promise<unknown> = Promise.resolve();
  /** The fleet file as last applied (server and cascades: what a reload cannot change live). */
  #applied: FleetConfig | undefined;
  #hook: ReloadHook | undefined;

  constructor(opts: MembershipOptions, applied?: FleetConfig) {
    this.#o = opts;
    this.#applied = applied;
  }

  /** Adds `count` replicas (1 by default) of `model` from a fleet-file replica entry; resolves once they are in the fleet. */
  add(model: string, raw: unknown, joining: Joining = {}): Promise<Replica[]> {
    const rc = parseReplica(raw, "replica");
    this.#checkModelName(model);
    return this.#serial(() => this.#add(model, rc, rc.count, joining));
  }

  /**
   * Takes a discovered replica out: no new request from now on, its running
   * ones get `waitMs` to finish and then go on elsewhere. Unlike `remove`, the
   * wait holds up no other change. One already removed is left as it is.
   */
  async release(replica: Replica, waitMs = DEFAULT_REMOVE_WAIT_MS): Promise<void> {
    if (replica.health.phase === "removed") return;
    replica.health.phase = "removed";
    await this.#drain(replica, waitMs);
    await this.#serial(() => this.#detach(replica));
  }

  /** Moves a replica between serving, draining and terminating (scheduler/replica-state.ts says what each admits); a removed one stays removed. */
  setPhase(replica: Replica, phase: Exclude<ReplicaPhase, "removed">): void {
    if (replica.health.phase === "removed" || replica.health.phase === phase) return;
    replica.health.phase = phase;
    this.#log(`replica ${replica.id} is ${phase}`);
  }

  /** Tells `hook` of every reload from now on (the discovery providers). */
  onReload(hook: ReloadHook): void {
    this.#hook = hook;
  }

  /** Takes a replica out: no new requests at once; those running get `waitMs` to finish, then go on elsewhere. */
  remove(id: string, waitMs = DEFAULT_REMOVE_WAIT_MS): Promise<{ replica: Replica; evicted: number }> {
    const replica = this.#find(id);
    return this.#serial(() => this.#remove(replica, waitMs));
  }

  /** Replaces a replica by one with `changes` applied to its entry: the new one serves before the old one drains. */
  update(id: string, changes: unknown, waitMs = DEFAULT_REMOVE_WAIT_MS): Promise<Replica> {
    const old = this.#find(id);
    if (old.source !== undefined) {
      throw new FlotillaError("invalid_request", `replica ${id} comes from ${old.source} discovery; change the replica settings of its model's discovery section in the fleet file instead`, { param: "replica" });
    }
    if (typeof changes !== "object" || changes === null || Array.isArray(changes)) throw new FlotillaError("invalid_request", "set must be an object of replica settings", { param: "set" });
    if ("count" in changes) throw new FlotillaError("invalid_request", "count cannot be updated on one replica; add or remove replicas instead", { param: "set.count" });
    const rc = parseReplica({ ...(old.config ?? {}), ...changes }, "set");
    return this.#serial(async () => {
      const [fresh] = await this.#add(old.model, rc, 1);
      await this.#remove(old, waitMs);
      return fresh!;
    });
  }

  /**
   * Brings the fleet to what `config` lists: replicas whose entry is
   * unchanged stay (their load and history with them), new entries are
   * added, entries gone are removed. Server settings and cascades apply at
   * the next start; a change to them is reported, not applied. Discovered
   * replicas are their provider's: a changed discovery section restarts it.
   */
  reload(config: FleetConfig, waitMs = DEFAULT_REMOVE_WAIT_MS): Promise<ReloadSummary> {
    return this.#serial(async () => {
      const needsRestart = this.#applied === undefined ? [] : restartOnly(this.#applied, config);
      const applyDiscovery = await this.#hook?.prepare(config);
      const plan = planReload(this.#o.fleet, config);
      for (const [alias, c] of this.#o.cascades ?? []) {
        const gone = [c.config.light, c.config.heavy].find((leg) => plan.forget.includes(leg));
        if (gone !== undefined) throw new FlotillaError("invalid_request", `the fleet file drops model "${gone}", which cascade "${alias}" runs on; cascades change at the next start`, { param: "models" });
      }
      // First, so a dropped model's provider adds nothing more while its replicas leave.
      const discovery = applyDiscovery?.() ?? [];
      const added: string[] = [];
      for (const { model, rc } of plan.add) added.push(...(await this.#add(model, rc, 1)).map((r) => r.id));
      await Promise.all(plan.remove.map((r) => this.#remove(r, waitMs)));
      for (const model of plan.forget) this.#o.fleet.forget(model);
      if (needsRestart.length === 0) this.#applied = config;
      return { added, removed: plan.remove.map((r) => r.id), kept: plan.kept, needsRestart, discovery };
    });
  }

  #serial<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(change, change);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #add(model: string, rc: ReplicaConfig, count: number, joining: Joining = {}): Promise<Replica[]> {
    const { fleet, rates, build } = this.#o;
    // Priced (and its hardware checked) as the fleet file's replicas are at startup, before it serves.
    const card = await rateCardFor(rc, model, "replica", build.baseDir).catch(asInvalid);
    const replicas: Replica[] = [];
    for (let i = 0; i < count; i++) {
      const built = buildReplica(rc, model, fleet.nextId(model), this.#o.breaker ?? DEFAULT_BREAKER, build);
      const replica = joining.source === undefined ? built : { ...built, source: joining.source };
      if (joining.phase !== undefined) replica.health.phase = joining.phase;
      rates?.set(replica.id, model, card);
      try {
        await replica.engine.start();
      } catch (err) {
        // As at startup: it joins not ready, and serves once its engine answers.
        this.#log(`replica ${replica.id} did not start: ${(err as Error).message}`);
      }
      fleet.add(replica);
      replicas.push(replica);
      this.#log(`replica ${replica.id} added`);
    }
    return replicas;
  }

  async #remove(replica: Replica, waitMs: number): Promise<{ replica: Replica; evicted: number }> {
    replica.health.phase = "removed";
    await this.#drain(replica, waitMs);
    return this.#detach(replica);
  }

  /** Waits up to `waitMs` for a removed replica's running requests to finish. */
  async #drain(replica: Replica, waitMs: number): Promise<void> {
    const { dispatcher, clock } = this.#o;
    const until = clock.now() + waitMs;
    while (dispatcher.runningOn(replica) > 0 && clock.now() < until) await clock.sleep(Math.min(POLL_MS, until - clock.now()));
  }

  /** Moves what still runs on a removed replica to others, takes it out of the fleet and closes its engine. */
  async #detach(replica: Replica): Promise<{ replica: Replica; evicted: number }> {
    const { fleet, dispatcher } = this.#o;
    const evicted = dispatcher.runningOn(replica);
    dispatcher.evict(replica);
    fleet.detach(replica);
    this.#o.rates?.delete(replica.id);
    await replica.engine.close().catch((err: unknown) => this.#log(`replica ${replica.id}: closing its engine failed: ${(err as Error).message}`));
    this.#log(`replica ${replica.id} removed${evicted > 0 ? ` (${evicted} request(s) moved to other replicas)` : ""}`);
    return { replica, evicted };
  }

  #find(id: string): Replica {
    const replica = this.#o.fleet.replica(id);
    if (replica === undefined || replica.health.phase === "removed") {
      const known = this.#o.fleet.replicas().map((r) => r.id).join(", ");
      throw new FlotillaError("invalid_request", `no replica "${id}"; replicas: ${known || "none"}`, { param: "replica" });
    }
    return replica;
  }

  #checkModelName(model: string): void {
    const checked = modelName.safeParse(model);
    if (!checked.success) throw new FlotillaError("invalid_request", `model: ${checked.error.issues[0]!.message}`, { param: "model" });
    if (this.#o.cascades?.has(model) === true) throw new FlotillaError("invalid_request", `"${model}" is a cascade; replicas belong to its light or heavy model`, { param: "model" });
  }

  #log(message: string): void {
    (this.#o.log ?? ((m: string) => process.stderr.write(`flotilla: ${m}\n`)))(message);
  }
}

/** A replica entry checked as the fleet file checks it; the first problem is a 400 naming its field under `prefix`. */
function parseReplica(raw: unknown, prefix: string): ReplicaConfig {
  const parsed = replicaConfig.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = [prefix, ...issue.path.map(String)].join(".");
  throw new FlotillaError("invalid_request", `${param}: ${issue.message}`, { param });
}

function asInvalid(err: unknown): never {
  throw new FlotillaError("invalid_request", (err as Error).message, { param: "replica.hardware" });
}

/** What one replica entry is, for comparing the fleet with a file: every setting but its count. */
function entryKey(rc: ReplicaConfig): string {
  const { count: _count, ...rest } = rc;
  return JSON.stringify(Object.fromEntries(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b))));
}

/** Which replicas a reload adds, removes and keeps: each unchanged entry keeps one serving replica made from it. */
export function planReload(fleet: Fleet, config: FleetConfig): { add: { model: string; rc: ReplicaConfig }[]; remove: Replica[]; forget: string[]; kept: number } {
  const add: { model: string; rc: ReplicaConfig }[] = [];
  const remove: Replica[] = [];
  let kept = 0;
  const listed = new Set(config.models.map((m) => m.name));
  for (const m of config.models) {
    // Discovered replicas are their provider's, not the file's.
    const current = (fleet.model(m.name)?.replicas ?? []).filter((r) => r.health.phase !== "removed" && r.source === undefined);
    const unmatched = new Set(current);
    for (const rc of m.replicas) {
      const key = entryKey(rc);
      for (let i = 0; i < rc.count; i++) {
        const same = [...unmatched].find((r) => r.config !== undefined && entryKey(r.config) === key);
        if (same === undefined) add.push({ model: m.name, rc });
        else {
          unmatched.delete(same);
          kept++;
        }
      }
    }
    remove.push(...unmatched);
  }
  const forget = [...fleet.models()].map((m) => m.name).filter((name) => !listed.has(name));
  for (const name of forget) remove.push(...fleet.model(name)!.replicas.filter((r) => r.health.phase !== "removed"));
  return { add, remove, forget, kept };
}

/** The settings of `next` that differ from `applied` and take a restart: the server section and the cascades. */
function restartOnly(applied: FleetConfig, next: FleetConfig): string[] {
  const changed: string[] = [];
  for (const key of new Set([...Object.keys(applied.server), ...Object.keys(next.server)])) {
    const k = key as keyof FleetConfig["server"];
    if (JSON.stringify(applied.server[k]) !== JSON.stringify(next.server[k])) changed.push(`server.${key}`);
  }
  if (JSON.stringify(applied.cascades) !== JSON.stringify(next.cascades)) changed.push("cascades");
  const autoscale = (c: FleetConfig): string => JSON.stringify(c.models.map((m) => [m.name, m.autoscale]));
  if (autoscale(applied) !== autoscale(next)) changed.push("models.*.autoscale");
  return changed;
}
