/**
 * Runs the Batch API's lines in the fleet's idle capacity. One runner in
 * the fleet at a time holds the store's "batch-runner" lease (any gateway
 * process sharing the store may take it over); it claims lines as
 * scheduler/batch-room.ts allows, runs each as a batch-class request, and
 * moves batches on (cancelled, expired, finished with their output files).
 *
 * Nothing is lost or done twice across a crash: a line's result commits in
 * the transaction that settles its ledger row, so a line has a result and
 * a charge, or neither. The runner that takes the lease runs again every
 * line left running (their ledger rows are interrupted: charged nothing),
 * and a late result of an earlier attempt is refused and its row charged
 * nothing (store/batches.ts finishLine).
 */
import { randomBytes } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import type { Clock } from "../../core/clock.js";
import type { Fleet } from "../../fleet/fleet.js";
import { batchRoom } from "../../scheduler/batch-room.js";
import { batchPlans, type BatchLine, type Store } from "../../store/index.js";
import type { AdmissionGate } from "../admission-gate.js";
import type { CompletionServices } from "../completions.js";
import { BATCH_STOPPED, RUNNER_STOPPING, endpointRuns, runLine } from "./line-run.js";

export interface BatchRunnerOptions {
  readonly store: Store;
  readonly services: CompletionServices;
  readonly fleet: Fleet;
  readonly gate: AdmissionGate;
  readonly clock: Clock;
  readonly log: FastifyBaseLogger;
  /** Who holds the lease: this gateway process's instance id. */
  readonly holder: string;
  /** Slots kept free for interactive arrivals (default 1). */
  readonly headroomSlots?: number;
  /** How often the runner looks for work, ms (default 200). */
  readonly pollMs?: number;
  /** The lease's length, ms (default 30 s). */
  readonly leaseMs?: number;
}

const LEASE = "batch-runner";
/** Lines claimed at most per look. */
const MAX_CLAIM = 64;
/**
 * The longest a batch waits after a refusal before its lines are tried
 * again: a Retry-After can be far off (a monthly budget resets next month),
 * and a limit can be raised meanwhile.
 */
const MAX_WAIT_S = 30;
/** How often half-written uploads are looked for, and how old one must be to be removed (no upload takes a day). */
const CLEANUP_EVERY_MS = 60_000;
const STALE_UPLOAD_MS = 24 * 3600 * 1000;

export function newFileId(): string {
  return `file-${randomBytes(12).toString("hex")}`;
}

export class BatchRunner {
  readonly #o: BatchRunnerOptions;
  readonly #runs: ReturnType<typeof endpointRuns>;
  /** Lines running here, by batch id. */
  readonly #inFlight = new Map<string, Set<AbortController>>();
  #lines = 0;
  #leaseUntil = 0;
  /** While another process holds the lease: when to try for it again. */
  #nextTry = 0;
  #nextCleanup = 0;
  /** Batches whose lines were refused for now (Retry-After), until when. */
  readonly #waiting = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  /** Woken during a look: look again as soon as it ends. */
  #again = false;
  #stopped = false;
  #idle: (() => void) | undefined;

  constructor(opts: BatchRunnerOptions) {
    this.#o = opts;
    this.#runs = endpointRuns(opts.services);
  }

  start(): void {
    this.#schedule(0);
  }

  /** Looks for work now (a batch was created or cancelled, a line ended); during a look, again right after it. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#ticking !== undefined) this.#again = true;
    else this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#ticking = this.#tick()
        .catch((err: unknown) => this.#o.log.warn({ err }, "batch runner: a look for work failed; trying again"))
        .finally(() => {
          this.#ticking = undefined;
          const again = this.#again;
          this.#again = false;
          this.#schedule(again ? 0 : (this.#o.pollMs ?? 200));
        });
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (!(await this.#holdLease())) return;
    const { store, clock } = this.#o;
    if (this.#inFlight.size > 0) {
      const stopped = await store.transact(batchPlans.stoppedBatches([...this.#inFlight.keys()]));
      for (const id of stopped) for (const c of this.#inFlight.get(id) ?? []) c.abort(BATCH_STOPPED);
    }
    const now = clock.epochMs();
    await store.transact(batchPlans.sweepBatches(now, newFileId));
    if (now >= this.#nextCleanup) {
      // An upload cut off by a crash never became visible; its pieces go once it is surely over.
      this.#nextCleanup = now + CLEANUP_EVERY_MS;
      await store.transact(batchPlans.discardUploads(now - STALE_UPLOAD_MS));
    }
    const room = Math.min(MAX_CLAIM, this.#room());
    if (room <= 0) return;
    for (const [id, until] of this.#waiting) if (until <= now) this.#waiting.delete(id);
    const lines = await store.transact(batchPlans.claimLines(room, [...this.#waiting.keys()]));
    for (const line of lines) void this.#run(line);
  }

  /** Takes or renews the lease; the first take runs again whatever an earlier holder left running. */
  async #holdLease(): Promise<boolean> {
    const { store, clock, holder } = this.#o;
    const ttl = this.#o.leaseMs ?? 30_000;
    const now = clock.epochMs();
    if (now < this.#leaseUntil - (ttl * 2) / 3) return true;
    // Another process runs the batches: look again only when its lease could have lapsed.
    if (this.#leaseUntil === 0 && now < this.#nextTry) return false;
    const held = this.#leaseUntil > now ? await store.renewLease(LEASE, holder, ttl) : await store.tryAcquireLease(LEASE, holder, ttl);
    if (!held) {
      this.#leaseUntil = 0;
      this.#nextTry = now + ttl / 3;
      return false;
    }
    const first = this.#leaseUntil <= now;
    this.#leaseUntil = now + ttl;
    if (first && this.#lines === 0) {
      const n = await store.transact(batchPlans.requeueRunning());
      if (n > 0) this.#o.log.info(`batch runner: ${n} line(s) an earlier runner left running will run again`);
    }
    return true;
  }

  /** Lines that may start now: idle slots of ready replicas, less the headroom, none while interactive requests wait. */
  #room(): number {
    let slots = 0;
    let busy = 0;
    for (const m of this.#o.fleet.models()) {
      for (const r of m.replicas) {
        if (!r.engine.isReady() || !r.health.admits()) continue;
        const load = r.engine.load();
        slots += load.slots;
        busy += load.active + load.queued;
      }
    }
    const interactiveWaiting = this.#o.gate.depths().reduce((n, d) => n + (d.priority === "interactive" ? d.count : 0), 0);
    return batchRoom({ slots, busy, interactiveWaiting, linesInFlight: this.#lines, headroom: this.#o.headroomSlots ?? 1 });
  }

  async #run(line: BatchLine): Promise<void> {
    const { store, log } = this.#o;
    const control = new AbortController();
    const mine = this.#inFlight.get(line.batchId) ?? new Set();
    this.#inFlight.set(line.batchId, mine.add(control));
    this.#lines++;
    try {
      const tenant = line.tenantId === "anonymous" ? undefined : (await store.getTenant(line.tenantId))?.tenant;
      const outcome = await runLine(this.#o.services, this.#runs, line, tenant, control.signal, log);
      if (outcome.committed) return;
      if (outcome.result !== undefined) {
        await store.transact(batchPlans.finishLine(outcome.result));
        return;
      }
      // Its batch waits (a full fleet, its tenant at a limit); the others go on.
      const wait = Math.min(outcome.retryAfterS ?? 1, MAX_WAIT_S) * 1000;
      this.#waiting.set(line.batchId, Math.max(this.#waiting.get(line.batchId) ?? 0, this.#o.clock.epochMs() + wait));
      await store.transact(batchPlans.releaseLine(line.batchId, line.line, line.attempt));
    } catch (err) {
      // The store failed us: the line stays running until a runner takes the lease again.
      log.warn({ err, batch: line.batchId, line: line.line }, "batch runner: could not record a line's outcome");
    } finally {
      mine.delete(control);
      if (mine.size === 0) this.#inFlight.delete(line.batchId);
      if (--this.#lines === 0) this.#idle?.();
      this.wake();
    }
  }

  /**
   * Claims nothing more, lets the lines running finish for up to `graceMs`,
   * then stops the rest (they run again under the next runner) and gives the
   * lease up.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#ticking;
    if (this.#lines > 0) {
      const done = new AbortController();
      await Promise.race([new Promise<void>((resolve) => (this.#idle = resolve)), this.#o.clock.sleep(graceMs, done.signal)]);
      done.abort();
    }
    for (const set of this.#inFlight.values()) for (const c of set) c.abort(RUNNER_STOPPING);
    if (this.#lines > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    if (this.#leaseUntil > 0) await this.#o.store.releaseLease(LEASE, this.#o.holder).catch(() => false);
  }
}
