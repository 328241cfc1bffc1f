/**
 * The autoscaler, live: for every model whose fleet file entry has an
 * `autoscale:` section, every `interval_ms` the decision the twin runs
 * (scheduler/autoscale.ts) reads the model's pool as the gateway sees it:
 * sequences running and waiting on its replicas, requests waiting at the
 * front door for it, and, for the predictive mode, the model's arrivals.
 * The count is exported (flotilla_desired_replicas{island}, the island
 * being the model's pool) and, when it changes, handed to the actuator: a
 * command (argv, no shell) that scales whatever runs the engines (a cloud
 * instance group, say), or a Kubernetes Deployment's or StatefulSet's
 * scale subresource (kubernetes-scale.ts). New
 * replicas then reach the gateway the way they always do: discovery, the
 * fleet file, or the admin routes. An actuator that fails is counted and
 * logged, and the count is handed over again at the next decision.
 */
import { execFile } from "node:child_process";
import { NO_LONGER_NEEDED } from "../core/abort.js";
import type { Clock } from "../core/clock.js";
import type { AutoscaleConfig, FleetConfig } from "../fleet/config.js";
import type { Fleet } from "../fleet/fleet.js";
import { Autoscaler } from "../scheduler/autoscale.js";
import type { AutoscalingRow } from "../obs/observatory.js";

/** Tells whatever runs a model's engines to run `desired` of them. */
export type Actuator = (change: { readonly model: string; readonly desired: number; readonly current: number }) => Promise<void>;

interface Pool {
  readonly model: string;
  readonly config: AutoscaleConfig;
  readonly autoscaler: Autoscaler;
  /** Where its section is in the fleet file, for errors. */
  readonly where: string;
  actuator: Actuator | undefined;
  desired: number | undefined;
  /** The last count the actuator took. */
  handed: number | undefined;
  acting: boolean;
  ok: number;
  failed: number;
}

export interface AutoscalingOptions {
  readonly fleet: Fleet;
  /** Requests waiting at the front door, by model. */
  readonly waiting: () => readonly { readonly model: string; readonly count: number }[];
  readonly clock: Clock;
  readonly warn: (message: string) => void;
  /** Where a kubeconfig the fleet file names resolves, and the environment (in a pod: the service account). */
  readonly build?: { readonly baseDir: string; readonly env: NodeJS.ProcessEnv };
}

export class Autoscaling {
  readonly #o: AutoscalingOptions;
  readonly #pools = new Map<string, Pool>();
  readonly #stop = new AbortController();

  constructor(config: FleetConfig | undefined, o: AutoscalingOptions) {
    this.#o = o;
    for (const [i, m] of (config?.models ?? []).entries()) {
      const c = m.autoscale;
      if (c === undefined) continue;
      const autoscaler = new Autoscaler({ min: c.min, max: c.max, mode: c.mode, targetUtilisation: c.target_utilisation, provisioningMs: c.provisioning_ms, cooldownMs: c.cooldown_ms, windowMs: c.window_ms });
      const where = `models.${i}.autoscale`;
      this.#pools.set(m.name, { model: m.name, config: c, autoscaler, where, actuator: commandActuator(c), desired: undefined, handed: undefined, acting: false, ok: 0, failed: 0 });
    }
  }

  /** A request for `model` arrived (the predictive mode's rate). */
  arrived(model: string): void {
    this.#pools.get(model)?.autoscaler.arrived(this.#o.clock.now());
  }

  /**
   * Each pool decides every interval until stop(). A pool that scales a
   * Kubernetes workload gets its client here: the client library loads
   * only where a fleet file asks for it (half a second of start-up), and a
   * bad kubeconfig fails the start, naming the field.
   */
  async start(): Promise<void> {
    const build = this.#o.build ?? { baseDir: process.cwd(), env: process.env };
    for (const pool of this.#pools.values()) {
      const section = pool.config.kubernetes;
      if (section === undefined) continue;
      const { kubernetesScaleActuator } = await import("./kubernetes-scale.js");
      pool.actuator = kubernetesScaleActuator(section, { ...build, where: `${pool.where}.kubernetes` });
    }
    for (const pool of this.#pools.values()) void this.#loop(pool);
  }

  stop(): void {
    this.#stop.abort(NO_LONGER_NEEDED);
  }

  rows(): AutoscalingRow[] {
    return [...this.#pools.values()].map((p) => ({ island: p.model, desired: p.desired, current: this.#current(p.model), actions: { ok: p.ok, failed: p.failed } }));
  }

  async #loop(pool: Pool): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await this.#o.clock.sleep(pool.config.interval_ms, signal);
      if (signal.aborted) return;
      this.#decide(pool);
    }
  }

  /** One decision for the pool, and the actuator's call when the count changed. */
  #decide(pool: Pool): void {
    const model = pool.model;
    const served = this.#o.fleet.model(model);
    if (served === undefined) return;
    let running = 0;
    let waiting = 0;
    let slots = 0;
    let members = 0;
    for (const r of served.replicas) {
      const load = r.engine.load();
      running += load.active;
      waiting += load.queued;
      slots += load.slots;
      if (r.health.phase === "serving") members++;
    }
    for (const d of this.#o.waiting()) if (d.model === model) waiting += d.count;
    const c = pool.config;
    pool.desired = pool.autoscaler.desired(this.#o.clock.now(), {
      running,
      waiting,
      // A replica's slots as configured, whether or not any serves now (all draining in a rollout).
      slotsPerReplica: served.replicas.length > 0 ? slots / served.replicas.length : 1,
      ...(c.replica_rps === undefined ? {} : { replicaRps: c.replica_rps }),
    });
    if (pool.actuator !== undefined && !pool.acting && pool.desired !== pool.handed) void this.#hand(pool, pool.actuator, pool.desired, members);
  }

  #current(model: string): number {
    return this.#o.fleet.model(model)?.replicas.filter((r) => r.health.phase === "serving").length ?? 0;
  }

  async #hand(pool: Pool, actuator: Actuator, desired: number, current: number): Promise<void> {
    pool.acting = true;
    try {
      await actuator({ model: pool.model, desired, current });
      pool.handed = desired;
      pool.ok++;
    } catch (err) {
      pool.failed++;
      this.#o.warn(`autoscale: the actuator for ${pool.model} failed to set ${desired} replicas (will try again at the next decision): ${(err as Error).message}`);
    } finally {
      pool.acting = false;
    }
  }
}

/** The pool's `command`, run without a shell, the counts in its environment; none without one. */
function commandActuator(config: AutoscaleConfig): Actuator | undefined {
  const argv = config.command;
  if (argv === undefined) return undefined;
  return ({ model, desired, current }) =>
    new Promise<void>((resolve, reject) => {
      const env = { ...process.env, FLOTILLA_MODEL: model, FLOTILLA_DESIRED_REPLICAS: String(desired), FLOTILLA_CURRENT_REPLICAS: String(current) };
      execFile(argv[0]!, argv.slice(1), { env, timeout: config.command_timeout_ms }, (err, _stdout, stderr) => {
        if (err === null) return resolve();
        const why = err.killed ? `killed after ${config.command_timeout_ms} ms` : `exit ${String(err.code)}`;
        reject(new Error(`${argv[0]} ${why}${stderr.trim() === "" ? "" : `: ${stderr.trim().slice(0, 500)}`}`));
      });
    });
}
