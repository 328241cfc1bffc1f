/**
 * Several gateways over one fleet, as the twin sees them: requests spread
 * over N router instances by a load balancer (uniformly at random, per
 * request: a conversation's turns land on different gateways), each with
 * its own prefix index and its own view of load, sharing only what live
 * gateways share: what the engines report of themselves, and with
 * `peerSyncMs` what the gateways tell each other every so often (their
 * placements and in-flight counts, gateway/peer-sync.ts).
 *
 * A gateway counts what it sent each replica and has not seen end; with
 * engine-reported load (engines/metrics-scraper.ts), it adds what others
 * had there at the last scrape: the report less its own count then, by the
 * live gateway's rule (engines/engine-metrics.ts othersOnReplica). Its own
 * requests count at once, others' as fast as the engines report. The report
 * alone would herd: every gateway reads the same stale snapshot and sends
 * its requests to the same replica until the next one (on Mooncake over 8
 * replicas with 4 gateways, reports each second and nothing else sustained
 * 1.31 req/s where each gateway's own counts alone did 2.02). Told the
 * peers' counts, a gateway takes others' load as those counts plus what the
 * report showed beyond every gateway's count then (withPeers); told their
 * placements, its index records a peer's chain when a prompt on it arrives
 * (scheduler/peer-hints.ts).
 * With one instance the view is the fleet's true load and its one index:
 * exactly the single router the simulator always had, decision for decision.
 */
import { othersOnReplica, withPeers } from "../engines/engine-metrics.js";
import { PeerHints, placementOf, type Placement } from "../scheduler/peer-hints.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";
import { seededRandom } from "./random.js";

export interface RouterInstancesOptions {
  /** Router instances (gateways) behind the load balancer (default 1). */
  readonly instances?: number;
  /** How often each engine's own load reaches the routers, ms of virtual time; 0: never (each sees only what it sent). Default 1,000. */
  readonly loadReportMs?: number;
  /** How often gateways tell each other their placements and in-flight counts (gateway/peer-sync.ts), ms of virtual time; 0: they share nothing. Default 0. */
  readonly peerSyncMs?: number;
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
  readonly #syncMs: number;
  readonly #hints: PeerHints[];
  /** Placements made since the last sync, and by which instance. */
  #pending: { readonly from: number; readonly points: Placement[] }[] = [];
  /** Per instance, its counts as the others last heard them. */
  readonly #sentAtSync: Int32Array[];
  /** Per replica, every instance's count at the last sync. */
  readonly #allAtSync: Int32Array;
  /** Per instance, its peers' counts as it knew them when the engines last reported. */
  readonly #peersAtReport: Int32Array[];
  #syncedAt = -Infinity;

  constructor(replicas: number, seed: number, opts: RouterInstancesOptions = {}) {
    const n = opts.instances ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new RangeError(`router instances must be an integer from 1 to 1024, got ${n}`);
    this.count = n;
    this.#reportMs = opts.loadReportMs ?? 1_000;
    if (!(this.#reportMs >= 0) || !Number.isFinite(this.#reportMs)) throw new RangeError(`router load_report_ms must be a non-negative number, got ${this.#reportMs}`);
    this.#syncMs = opts.peerSyncMs ?? 0;
    if (!(this.#syncMs >= 0) || !Number.isFinite(this.#syncMs)) throw new RangeError(`router peer_sync_ms must be a non-negative number, got ${this.#syncMs}`);
    this.indexes = Array.from({ length: n }, () => new PrefixIndex());
    this.#hints = Array.from({ length: n }, () => new PeerHints());
    this.#sentAtSync = Array.from({ length: n }, () => new Int32Array(replicas));
    this.#allAtSync = new Int32Array(replicas);
    this.#peersAtReport = Array.from({ length: n }, () => new Int32Array(replicas));
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

  get #sharing(): boolean {
    return this.count > 1 && this.#syncMs > 0;
  }

  /**
   * Before `instance` routes a prompt of `blocks` at `now`: what the peers
   * told it by then (placements and counts, at the last sync), its prefix
   * index holding the peers' placements on this prompt's chain.
   */
  prepare(instance: number, blocks: ArrayLike<number>, now: number): void {
    if (!this.#sharing) return;
    if (now - this.#syncedAt >= this.#syncMs) this.#sync(now);
    this.#hints[instance]!.apply(blocks, this.indexes[instance]!);
  }

  /** `instance` sent a prompt of `blocks` to `replica`: its own index records it, and the peers hear of it at the next sync. */
  placed(instance: number, replica: number, blocks: ArrayLike<number>): void {
    if (blocks.length === 0) return;
    this.indexes[instance]!.record(replica, blocks);
    if (this.#sharing) this.#pending.push({ from: instance, points: placementOf(replica, blocks) });
  }

  #sync(now: number): void {
    this.#syncedAt = now;
    for (const { from, points } of this.#pending) {
      for (let i = 0; i < this.count; i++) if (i !== from) for (const p of points) this.#hints[i]!.add(p);
    }
    this.#pending = [];
    this.#allAtSync.fill(0);
    for (let i = 0; i < this.count; i++) {
      this.#sentAtSync[i]!.set(this.#sent[i]!);
      for (let r = 0; r < this.#allAtSync.length; r++) this.#allAtSync[r]! += this.#sent[i]![r]!;
    }
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
    const reported = othersOnReplica(this.#reportedActive[r]!, this.#reportedQueued[r]!, this.#sentAtReport[instance]![r]!);
    const total = own + (this.#sharing ? withPeers(reported, this.#allAtSync[r]! - this.#sentAtSync[instance]![r]!, this.#peersAtReport[instance]![r]!) : reported);
    out.active = Math.min(total, slots);
    out.queued = total - out.active;
  }

  #report(now: number, truth: (r: number, out: Load) => void): void {
    this.#reportedAt = now;
    for (let i = 0; i < this.count; i++) this.#sentAtReport[i]!.set(this.#sent[i]!);
    if (this.#sharing) {
      for (let i = 0; i < this.count; i++) {
        for (let r = 0; r < this.#allAtSync.length; r++) this.#peersAtReport[i]![r] = this.#allAtSync[r]! - this.#sentAtSync[i]![r]!;
      }
    }
    const out = { active: 0, queued: 0 };
    for (let r = 0; r < this.#reportedActive.length; r++) {
      truth(r, out);
      this.#reportedActive[r] = out.active;
      this.#reportedQueued[r] = out.queued;
    }
  }
}
