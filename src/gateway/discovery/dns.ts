/**
 * DNS discovery: a name is resolved every `interval_ms`, and each address
 * becomes one replica at http://<address>:<port> (IPv6 in brackets). With
 * `srv: true` the name's SRV records give a target and a port each, and
 * each target's addresses are replicas at that port.
 *
 * DNS cannot tell "scaled to zero" from "the resolver hiccupped", so a
 * failed lookup, and a name that resolves to nothing, keep the last set and
 * are logged (naming the model and the name) until the name resolves again.
 */
import { isIP } from "node:net";
import { Resolver } from "node:dns/promises";
import type { SrvRecord } from "node:dns";
import type { DnsDiscoveryConfig } from "../../fleet/config.js";
import type { DiscoveryLog, Provider, TargetPhase, Targets } from "./reconcile.js";

/** The lookups it makes; a test points one at its own server (Resolver#setServers). */
export type DnsResolver = Pick<Resolver, "resolve4" | "resolve6" | "resolveSrv">;

/** A family with no record, as opposed to a lookup that failed. */
const NO_RECORD = new Set(["ENODATA", "ENOTFOUND"]);

export class DnsProvider implements Provider {
  readonly label: string;
  readonly #model: string;
  readonly #section: DnsDiscoveryConfig;
  readonly #sink: (targets: Targets) => void;
  readonly #log: DiscoveryLog;
  readonly #resolver: DnsResolver;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  /** The failure last logged, so an outage is one line, not one per interval. */
  #failing: string | undefined;
  #known = 0;

  constructor(model: string, section: DnsDiscoveryConfig, opts: { sink: (targets: Targets) => void; log: DiscoveryLog; resolver?: DnsResolver }) {
    this.#model = model;
    this.#section = section;
    this.#sink = opts.sink;
    this.#log = opts.log;
    this.#resolver = opts.resolver ?? new Resolver();
    this.label = `dns discovery of ${section.name}${section.srv ? " (SRV)" : ""}`;
  }

  start(): void {
    this.#stopped = false;
    void this.#tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #tick(): Promise<void> {
    try {
      const targets = await this.#resolve();
      if (this.#stopped) return;
      if (this.#failing !== undefined) this.#log("info", `model ${this.#model}: ${this.label}: resolves again (${targets.size} addresses)`);
      this.#failing = undefined;
      this.#known = targets.size;
      this.#sink(targets);
    } catch (err) {
      const message = (err as Error).message;
      if (!this.#stopped && message !== this.#failing) {
        this.#log("warn", `model ${this.#model}: ${this.label}: ${message}; keeping the last ${this.#known} replicas and retrying every ${this.#section.interval_ms} ms`);
      }
      this.#failing = message;
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#tick(), this.#section.interval_ms).unref();
  }

  /** Every endpoint the name stands for now; throws if any lookup failed, rather than report part of the set. */
  async #resolve(): Promise<Map<string, TargetPhase>> {
    const { name, port, srv } = this.#section;
    const endpoints = srv ? await this.#srv(name) : (await this.#addresses(name)).map((address) => ({ address, port: port! }));
    return new Map(endpoints.map((e) => [`http://${isIP(e.address) === 6 ? `[${e.address}]` : e.address}:${e.port}`, "serving" as const]));
  }

  async #srv(name: string): Promise<{ address: string; port: number }[]> {
    const records: SrvRecord[] = await this.#resolver.resolveSrv(name).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot resolve SRV ${name}: ${err.code ?? err.message}`);
    });
    const each = await Promise.all(records.map(async (r) => (await this.#addresses(r.name)).map((address) => ({ address, port: r.port }))));
    return each.flat();
  }

  /** A host's A and AAAA addresses; one family may have none, but not both. */
  async #addresses(host: string): Promise<string[]> {
    if (isIP(host) !== 0) return [host];
    const families = await Promise.allSettled([this.#resolver.resolve4(host), this.#resolver.resolve6(host)]);
    const addresses = families.flatMap((f) => {
      if (f.status === "fulfilled") return f.value;
      const code = (f.reason as NodeJS.ErrnoException).code;
      if (code !== undefined && NO_RECORD.has(code)) return [];
      throw new Error(`cannot resolve ${host}: ${code ?? (f.reason as Error).message}`);
    });
    if (addresses.length === 0) throw new Error(`${host} has no A or AAAA record`);
    return addresses;
  }
}
