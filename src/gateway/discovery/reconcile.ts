/**
 * One model's discovered replicas, brought to what its provider last saw.
 * A provider (dns.ts, kubernetes.ts) only reports the endpoints it sees, as
 * a whole set each time; this turns the difference into Membership changes:
 *
 * - an endpoint that is gone leaves the router at once (phase `removed`, in
 *   the same turn as the report, so no new request is routed to it), and
 *   its running requests get the section's wait before they move on;
 * - a new endpoint is built and started before it joins (Membership.add);
 * - an endpoint that turns terminating takes no new requests but may still
 *   finish answers begun elsewhere (scheduler/replica-state.ts);
 * - after a reload changed the replica settings, each endpoint's new replica
 *   joins before its old one leaves, as a rolling update.
 */
import type { ReplicaTemplate } from "../../fleet/config.js";
import type { Replica } from "../../fleet/fleet.js";
import type { Membership } from "../membership.js";

/** What a replica of a discovered endpoint should be doing. */
export type TargetPhase = "serving" | "terminating";

/** Every endpoint a provider sees, by the url its replica serves at. */
export type Targets = ReadonlyMap<string, TargetPhase>;

/** Where discovery reports: what changed (info), and what is wrong (warn: the operator's health signal). */
export type DiscoveryLog = (level: "info" | "warn", message: string) => void;

/** A running provider: it reports whole sets of targets until stopped. */
export interface Provider {
  /** Names the provider and what it follows in log lines, e.g. "dns discovery of vllm.default.svc". */
  readonly label: string;
  start(): void;
  stop(): Promise<void>;
}

/** What the replicas of one discovery section are made with. */
export interface Section {
  /** Replica.source: "dns" or "kubernetes". */
  readonly source: string;
  readonly label: string;
  readonly template: ReplicaTemplate;
  readonly removeWaitMs: number;
}

interface Held {
  readonly replica: Replica;
  /** The template it was made from (a reload may change the section's). */
  readonly key: string;
  /** The phase its endpoint last asked for: an operator's drain stands until the endpoint itself changes. */
  phase: TargetPhase;
}

export class DiscoveredReplicas {
  readonly #membership: Pick<Membership, "add" | "release" | "setPhase">;
  readonly #model: string;
  readonly #log: DiscoveryLog;
  #section: Section;
  #key: string;
  readonly #byUrl = new Map<string, Held>();
  #want: Targets = new Map();
  #pumping = false;
  #closed = false;
  /** Targets in the last report; -1 before the first, so a first empty one is reported too. */
  #lastSize = -1;

  constructor(model: string, section: Section, membership: Pick<Membership, "add" | "release" | "setPhase">, log: DiscoveryLog) {
    this.#model = model;
    this.#membership = membership;
    this.#log = log;
    this.#section = section;
    this.#key = JSON.stringify(section.template);
  }

  /** Replicas it holds now, by url. */
  get replicas(): ReadonlyMap<string, Replica> {
    return new Map([...this.#byUrl].map(([url, held]) => [url, held.replica]));
  }

  /** A changed section (a reload): replicas made from another template are replaced at the next report. */
  configure(section: Section): void {
    this.#section = section;
    this.#key = JSON.stringify(section.template);
  }

  /** The provider's latest view: every endpoint there is, none left out. */
  sync(targets: Targets): void {
    if (this.#closed) return;
    this.#want = targets;
    if (targets.size === 0 && this.#lastSize !== 0) {
      this.#log("warn", `model ${this.#model}: ${this.#section.label} finds no endpoint; the model answers 503 until one comes`);
    }
    this.#lastSize = targets.size;
    for (const [url, held] of this.#byUrl) {
      const phase = targets.get(url);
      if (held.replica.health.phase === "removed") {
        // Taken out by hand (flotilla fleet remove): made again below while its endpoint is still there.
        this.#byUrl.delete(url);
      } else if (phase === undefined) {
        this.#byUrl.delete(url);
        this.#release(held.replica, url);
      } else if (phase !== held.phase) {
        held.phase = phase;
        this.#membership.setPhase(held.replica, phase);
      }
    }
    void this.#pump();
  }

  /**
   * Stops following its provider. `release`: its replicas leave too (the
   * model's discovery section is gone); otherwise they are left to whoever
   * removes them (the model left the file: the reload removes them all).
   */
  close(release: boolean): void {
    this.#closed = true;
    if (release) for (const [url, held] of this.#byUrl) this.#release(held.replica, url);
    this.#byUrl.clear();
  }

  /** Adds what is wanted and not held (or held from an old template) until nothing is missing; one pump at a time. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        const missing = [...this.#want].filter(([url]) => this.#byUrl.get(url)?.key !== this.#key);
        if (missing.length === 0 || this.#closed) return;
        const joined = await Promise.all(missing.map(([url, phase]) => this.#add(url, phase)));
        // Where every add failed, the next report tries again, rather than this loop spinning.
        if (!joined.some(Boolean)) return;
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #add(url: string, phase: TargetPhase): Promise<boolean> {
    const key = this.#key;
    const { source, template, label } = this.#section;
    let replica: Replica;
    try {
      [replica] = (await this.#membership.add(this.#model, { ...template, url }, { source, phase })) as [Replica];
    } catch (err) {
      this.#log("warn", `model ${this.#model}: ${label}: cannot add a replica at ${url}: ${(err as Error).message}`);
      return false;
    }
    // The view may have moved on while it started.
    const wanted = this.#want.get(url);
    if (this.#closed || wanted === undefined || key !== this.#key) {
      this.#release(replica, url);
      return true;
    }
    const old = this.#byUrl.get(url);
    this.#byUrl.set(url, { replica, key, phase: wanted });
    if (wanted !== phase) this.#membership.setPhase(replica, wanted);
    this.#log("info", `model ${this.#model}: replica ${replica.id} joined from ${label} (${url})`);
    if (old !== undefined) this.#release(old.replica, url);
    return true;
  }

  #release(replica: Replica, url: string): void {
    const { label, removeWaitMs } = this.#section;
    this.#log("info", `model ${this.#model}: replica ${replica.id} (${url}) left ${label}; its running requests get ${removeWaitMs} ms`);
    this.#membership.release(replica, removeWaitMs).catch((err: unknown) => {
      this.#log("warn", `model ${this.#model}: replica ${replica.id}: removing it failed: ${(err as Error).message}`);
    });
  }
}
