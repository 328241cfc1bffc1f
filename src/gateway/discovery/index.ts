/**
 * Discovery: the `discovery:` section of each model in the fleet file, one
 * provider per model (dns.ts, kubernetes.ts), feeding that model's
 * discovered replicas (reconcile.ts) through Membership.
 *
 * Built (and every section checked, so a bad kubeconfig or replica setting
 * is an error at load naming its field) before the gateway listens; started
 * once it does; told of every reload of the file (Membership.onReload): a
 * section that changed restarts its provider, whose first report replaces
 * the replicas the old one made where their settings changed and keeps the
 * rest; a section that is gone stops its provider and its replicas leave.
 */
import { ConfigError, type DiscoveryConfig, type FleetConfig, type ReplicaConfig } from "../../fleet/config.js";
import type { Fleet } from "../../fleet/fleet.js";
import { rateCardFor } from "../../metering/config.js";
import type { Membership, ReloadHook } from "../membership.js";
import { DnsProvider, type DnsResolver } from "./dns.js";
import { DiscoveredReplicas, type DiscoveryLog, type Provider, type Section, type Targets } from "./reconcile.js";

export interface DiscoveryOptions {
  readonly membership: Pick<Membership, "add" | "release" | "setPhase">;
  readonly fleet: Pick<Fleet, "declare">;
  /** The fleet file's folder: relative kubeconfig paths resolve against it. */
  readonly baseDir: string;
  /** Where api_key_env names are read, and KUBERNETES_SERVICE_HOST says it runs in a cluster. */
  readonly env: NodeJS.ProcessEnv;
  readonly log: DiscoveryLog;
  /** DNS lookups go here (a test's own server); default: the system's resolvers. */
  readonly resolver?: DnsResolver;
}

interface Running {
  /** The section as written, to tell a changed one on reload. */
  readonly key: string;
  readonly provider: Provider;
  readonly section: Section;
}

export class Discovery implements ReloadHook {
  readonly #o: DiscoveryOptions;
  /** By model: its provider and the replicas it made (these outlive a restart of the provider). */
  readonly #running = new Map<string, Running>();
  readonly #replicas = new Map<string, DiscoveredReplicas>();
  #started = false;

  private constructor(opts: DiscoveryOptions) {
    this.#o = opts;
  }

  /** Checks and builds the providers of every discovery section in `config`; none runs until `start`. */
  static async create(config: FleetConfig, opts: DiscoveryOptions): Promise<Discovery> {
    const discovery = new Discovery(opts);
    (await discovery.prepare(config))();
    return discovery;
  }

  /** What each model with a provider follows, e.g. "dns discovery of vllm.default.svc", by model. */
  get labels(): ReadonlyMap<string, string> {
    return new Map([...this.#running].map(([model, run]) => [model, run.provider.label]));
  }

  /** Starts every provider (call once the gateway listens). */
  start(): void {
    this.#started = true;
    for (const run of this.#running.values()) run.provider.start();
  }

  /** Stops every provider for good (shutdown): the replicas stay to drain with the gateway; one still starting leaves once it joins. */
  async stop(): Promise<void> {
    this.#started = false;
    await Promise.all([...this.#running.values()].map((run) => run.provider.stop()));
    for (const replicas of this.#replicas.values()) replicas.close(false);
  }

  /** Builds a provider for each section that is new or changed (checking it); what it returns swaps them in and stops those gone. */
  async prepare(config: FleetConfig): Promise<() => string[]> {
    const fresh = new Map<string, Running>();
    const listed = new Set<string>();
    for (const [i, m] of config.models.entries()) {
      if (m.discovery === undefined) continue;
      listed.add(m.name);
      const key = JSON.stringify(m.discovery);
      if (this.#running.get(m.name)?.key !== key) fresh.set(m.name, await this.#build(m.name, m.discovery, `models.${i}.discovery`, key));
    }
    return () => {
      const changed: string[] = [];
      for (const [model, run] of this.#running) {
        if (listed.has(model)) continue;
        void run.provider.stop();
        // Still in the file without discovery: its replicas leave. Gone from the file: the reload removes them all.
        this.#replicas.get(model)!.close(config.models.some((m) => m.name === model));
        this.#replicas.delete(model);
        this.#running.delete(model);
        changed.push(model);
      }
      for (const [model, run] of fresh) {
        this.#replace(model, run);
        changed.push(model);
      }
      return changed;
    };
  }

  #replace(model: string, run: Running): void {
    void this.#running.get(model)?.provider.stop();
    this.#running.set(model, run);
    const replicas = this.#replicas.get(model);
    if (replicas === undefined) this.#replicas.set(model, new DiscoveredReplicas(model, run.section, this.#o.membership, this.#o.log));
    else replicas.configure(run.section);
    this.#o.fleet.declare(model);
    if (this.#started) run.provider.start();
  }

  /** A provider for one section, its settings checked; its reports reach the model's replicas while it is the model's provider. */
  async #build(model: string, d: DiscoveryConfig, where: string, key: string): Promise<Running> {
    const { log, baseDir, env, resolver } = this.#o;
    await checkTemplate(model, d, where, { env, baseDir });
    let provider: Provider | undefined;
    const sink = (targets: Targets): void => {
      if (this.#running.get(model)?.provider === provider) this.#replicas.get(model)?.sync(targets);
    };
    if (d.kind === "dns") {
      provider = new DnsProvider(model, d, { sink, log, ...(resolver === undefined ? {} : { resolver }) });
    } else {
      // Loaded only where a fleet uses it: the client is large.
      const { KubernetesProvider } = await import("./kubernetes.js");
      provider = new KubernetesProvider(model, d, { sink, log, baseDir, env, where });
    }
    return { key, provider, section: { source: d.kind, label: provider.label, template: d.replica, removeWaitMs: d.remove_wait_ms } };
  }
}

/** The replica settings every discovered replica will have, checked as a fleet-file entry's are at startup. */
async function checkTemplate(model: string, d: DiscoveryConfig, where: string, { env, baseDir }: { env: NodeJS.ProcessEnv; baseDir: string }): Promise<void> {
  const name = d.replica.api_key_env;
  if (name !== undefined && env[name] === undefined) throw new ConfigError(`${where}.replica.api_key_env: environment variable ${name} is not set`);
  // Prices and hardware do not depend on the url, which discovery supplies later.
  const entry: ReplicaConfig = { ...d.replica, url: "http://discovered.invalid", count: 1 };
  await rateCardFor(entry, model, `${where}.replica`, baseDir);
}
