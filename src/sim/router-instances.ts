/**
 * Several gateways over one fleet, as the twin sees them: requests spread
 * over N router instances by a load balancer (uniformly at random, per
 * request: a conversation's turns land on different gateways), each with
 * its own prefix index and its own view of load, sharing only what live
 * gateways share: nothing but what the engines report of themselves.
 *
 * A gateway counts what it sent each replica and has not seen end; with
 * engine-reported load (engines/metrics-scraper.ts), it adds what others
 * had there at the last scrape: the report less its own count then, by the
 * live gateway's rule (engines/engine-metrics.ts othersOnReplica). Its own
 * requests count at once, others' as fast as the engines report. The report
 * alone would herd: every gateway reads the same stale snapshot and sends
 * its requests to the same replica until the next one (on Mooncake over 8
 * replicas with 4 gateways, reports each second and nothing else sustained
 * 1.31 req/s where each gateway's own counts alone did 2.02).
 * With one instance the view is the fleet's true load and its one index:
 * exactly the single router the simulator always had, decision for decision.
 */
import { othersOnReplica } from "../engines/engine-metrics.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";
import { seededRandom } from "./random.js";

export interface RouterInstancesOptions {
  /** Router instances (gateways) behind the load balancer (default 1). */
  readonly instances?: number;
  /** How often each engine's own load reaches the routers, ms of virtual time; 0: never (each sees only what it sent). Default 1,000. */
  readonly loadReportMs?: number;
}

export interface Load {
  active: number;
  queued: number;
}

export class RouterInstances {
  readonly count: number;
  readonly indexes: PrefixIndex[];
  readonly #reportMs: number;
  /** Per instance, requests it sent each replica that have not ended; and that count when the engines last reported. */
  readonly #sent: Int32Array[];
  readonly #sentAtReport: Int32Array[];
  readonly #reportedActive: Int32Array;
  readonly #reportedQueued: Int32Array;
  #reportedAt = -Infinity;
  readonly #random: () => number;

  constructor(replicas: number, seed: number, opts: RouterInstancesOptions = {}) {
    const n = opts.instances ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new RangeError(`router instances must be an integer from 1 to 1024, got ${n}`);
    this.count = n;
    this.#reportMs = opts.loadReportMs ?? 1_000;
    if (!(this.#reportMs >= 0) || !Number.isFinite(this.#reportMs)) throw new RangeError(`router load_report_ms must be a non-negative number, got ${this.#reportMs}`);
    this.indexes = Array.from({ length: n }, () => new PrefixIndex());
    this.#sent = Array.from({ length: n }, () => new Int32Array(replicas));
    this.#sentAtReport = Array.from({ length: n }, () => new Int32Array(replicas));
    this.#reportedActive = new Int32Array(replicas);
    this.#reportedQueued = new Int32Array(replicas);
    // Its own stream, so one instance draws nothing and leaves every other random choice as it was.
    this.#random = seededRandom(seed ^ 0x2f6b9e31);
  }

  /** The instance a new request arrives at. */
  assign(): number {
    return this.count === 1 ? 0 : Math.floor(this.#random() * this.count);
  }

  setCapacity(replica: number, blocks: number): void {
    for (const index of this.indexes) index.setCapacity(replica, blocks);
  }

  /** The replica's cache is gone (it failed): every router's index forgets it, as each learns of the failure. */
  removeReplica(replica: number): void {
    for (const index of this.indexes) index.removeReplica(replica);
  }

  dispatched(instance: number, replica: number): void {
    if (this.count === 1) return;
    this.#sent[instance]![replica]!++;
  }

  ended(instance: number, replica: number): void {
    if (this.count > 1) this.#sent[instance]![replica]!--;
  }

  /**
   * What `instance` believes replica r runs and queues, written to `out`
   * (with several instances; one sees the truth, and needs no view). `slots`
   * are the replica's sequences, `now` the virtual time, and `truth(r, out)`
   * reads a replica's true load for a report.
   */
  view(instance: number, r: number, slots: number, now: number, truth: (r: number, out: Load) => void, out: Load): void {
    if (this.#reportMs > 0 && now - this.#reportedAt >= this.#reportMs) this.#report(now, truth);
    const own = this.#sent[instance]![r]!;
    const total = own + othersOnReplica(this.#reportedActive[r]!, this.#reportedQueued[r]!, this.#sentAtReport[instance]![r]!);
    out.active = Math.min(total, slots);
    out.queued = total - out.active;
  }

  #report(now: number, truth: (r: number, out: Load) => void): void {
    this.#reportedAt = now;
    for (let i = 0; i < this.count; i++) this.#sentAtReport[i]!.set(this.#sent[i]!);
    const out = { active: 0, queued: 0 };
    for (let r = 0; r < this.#reportedActive.length; r++) {
      truth(r, out);
      this.#reportedActive[r] = out.active;
      this.#reportedQueued[r] = out.queued;
    }
  }
}
