/**
 * Admission: the queue in front of the router when the fleet is saturated.
 * A pure data structure driven by explicit calls with explicit times (no
 * timers, no clock of its own), so the gateway and the simulator drive it
 * alike:
 *
 *   enqueue(item, now) -> accepted, or rejected with a reason and a Retry-After
 *   next(now)          -> the item to dispatch now, or undefined
 *   expire(now)        -> items whose deadline passed while queued, with reasons
 *
 * Order of service:
 * 1. priority classes, strictly: an interactive item is always served before
 *    any batch item waiting at the same time;
 * 2. within a class, weighted fair share between tenants by self-clocked fair
 *    queuing (Golestani 1994): the item at the head of each tenant's queue
 *    carries a virtual finish tag F = max(V, F of the tenant's last served
 *    item) + cost / weight, the smallest tag is served next and V becomes its
 *    tag. A backlogged tenant gets a share of service (in cost units)
 *    proportional to its weight, an idle tenant does not bank credit, and no
 *    backlogged tenant waits for more than about one item of every other
 *    tenant's per item of its own. Tags are given at the head rather than
 *    on arrival, so an item that expires or is removed costs its tenant
 *    nothing;
 * 3. within a tenant, first come first served.
 *
 * The queue is bounded (in items, overall and optionally per tenant); when
 * full it rejects with a Retry-After computed from the observed drain rate:
 * the time to serve what is queued now. Items may carry a deadline: once it
 * passes they are never served, and expire() hands them back with a reason.
 */

export const PRIORITY_CLASSES = ["interactive", "batch"] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];

export interface Waiter {
  readonly tenant: string;
  /** Default "interactive". */
  readonly priority?: PriorityClass;
  /** Work the item stands for in fair-share accounting, e.g. prompt + max tokens (default 1). */
  readonly cost?: number;
  /** Absolute time (the caller's clock, ms) after which the item must not be served. */
  readonly deadlineMs?: number;
}

export type RejectionReason = "queue_full" | "tenant_queue_full" | "deadline_exceeded";

export type EnqueueResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: RejectionReason; readonly retryAfterS: number; readonly message: string };

export interface ExpiredWaiter<T> {
  readonly item: T;
  readonly reason: "deadline_exceeded";
  /** Time the item spent queued, ms. */
  readonly waitedMs: number;
}

export interface AdmissionOptions {
  /** Items queued at most, over all tenants and classes. */
  readonly maxQueued: number;
  /** Items one tenant may have queued (default: maxQueued). */
  readonly maxQueuedPerTenant?: number;
  /** Tenant weights (default 1 each), by name or as a function. */
  readonly weights?: Readonly<Record<string, number>> | ((tenant: string) => number);
  /** Window over which the drain rate is measured (default 10 s). */
  readonly drainWindowMs?: number;
  /** Bounds of the Retry-After hint (default 1 and 60 s). */
  readonly minRetryAfterS?: number;
  readonly maxRetryAfterS?: number;
}

interface Entry<T> {
  readonly item: T;
  readonly tenant: TenantQueue<T>;
  /** cost / weight: the virtual time its service takes. */
  readonly span: number;
  readonly seq: number;
  readonly enqueuedMs: number;
  readonly deadlineMs: number;
  alive: boolean;
}

interface TenantQueue<T> {
  readonly name: string;
  readonly cls: number;
  readonly fifo: Entry<T>[];
  head: number;
  live: number;
  /** Tag of the tenant's last served item. */
  lastFinish: number;
  /** Tag and entry of the head as of the tenant's last push into the ready heap. */
  headFinish: number;
  headEntry: Entry<T> | undefined;
  inHeap: boolean;
}

/** Array-backed binary min-heap. */
class Heap<E> {
  readonly #a: E[] = [];
  readonly #less: (x: E, y: E) => boolean;
  constructor(less: (x: E, y: E) => boolean) {
    this.#less = less;
  }
  get size(): number {
    return this.#a.length;
  }
  peek(): E | undefined {
    return this.#a[0];
  }
  push(e: E): void {
    const a = this.#a;
    let i = a.length;
    a.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(e, a[p]!)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }
  pop(): E | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.#less(a[r]!, a[l]!) ? r : l;
      if (!this.#less(a[c]!, last)) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

const DRAIN_RING = 256;

export class AdmissionQueue<T extends Waiter> {
  readonly maxQueued: number;
  readonly maxQueuedPerTenant: number;
  readonly #weightOf: (tenant: string) => number;
  readonly #drainWindowMs: number;
  readonly #minRetryS: number;
  readonly #maxRetryS: number;

  readonly #tenants: Map<string, TenantQueue<T>>[] = PRIORITY_CLASSES.map(() => new Map());
  readonly #ready: Heap<TenantQueue<T>>[];
  readonly #virtual: number[] = PRIORITY_CLASSES.map(() => 0);
  readonly #classLive: number[] = PRIORITY_CLASSES.map(() => 0);
  readonly #deadlines = new Heap<Entry<T>>((x, y) => x.deadlineMs < y.deadlineMs || (x.deadlineMs === y.deadlineMs && x.seq < y.seq));
  readonly #byItem = new Map<T, Entry<T>>();
  #expired: ExpiredWaiter<T>[] = [];
  #size = 0;
  #seq = 0;
  readonly #drained = new Float64Array(DRAIN_RING);
  #drainCount = 0;

  constructor(opts: AdmissionOptions) {
    if (!Number.isInteger(opts.maxQueued) || opts.maxQueued < 0) throw new RangeError(`maxQueued must be a non-negative integer, got ${opts.maxQueued}`);
    this.maxQueued = opts.maxQueued;
    this.maxQueuedPerTenant = opts.maxQueuedPerTenant ?? opts.maxQueued;
    if (!Number.isInteger(this.maxQueuedPerTenant) || this.maxQueuedPerTenant < 0) throw new RangeError(`maxQueuedPerTenant must be a non-negative integer, got ${this.maxQueuedPerTenant}`);
    const w = opts.weights;
    const raw = typeof w === "function" ? w : w === undefined ? () => 1 : (t: string) => (Object.hasOwn(w, t) ? w[t]! : 1);
    this.#weightOf = (t) => {
      const x = raw(t);
      if (!(x > 0) || !Number.isFinite(x)) throw new RangeError(`weight of tenant "${t}" must be a positive finite number, got ${x}`);
      return x;
    };
    this.#drainWindowMs = opts.drainWindowMs ?? 10_000;
    this.#minRetryS = opts.minRetryAfterS ?? 1;
    this.#maxRetryS = opts.maxRetryAfterS ?? 60;
    if (!(this.#drainWindowMs > 0)) throw new RangeError(`drainWindowMs must be > 0, got ${this.#drainWindowMs}`);
    if (!(this.#minRetryS >= 0 && this.#maxRetryS >= this.#minRetryS)) throw new RangeError("need 0 <= minRetryAfterS <= maxRetryAfterS");
    this.#ready = PRIORITY_CLASSES.map(
      () => new Heap<TenantQueue<T>>((x, y) => x.headFinish < y.headFinish || (x.headFinish === y.headFinish && x.headEntry!.seq < y.headEntry!.seq)),
    );
  }

  /** Items queued (not yet served, expired or removed). */
  get size(): number {
    return this.#size;
  }

  /** Items `tenant` has queued, over both classes. */
  sizeOf(tenant: string): number {
    let n = 0;
    for (const m of this.#tenants) n += m.get(tenant)?.live ?? 0;
    return n;
  }

  /** Items of a class queued. */
  sizeOfClass(priority: PriorityClass): number {
    return this.#classLive[PRIORITY_CLASSES.indexOf(priority)]!;
  }

  /**
   * Items served per second over the drain window ending at `now` (0 when none).
   * While the ring of recent dequeue times spans less than the window, the
   * rate is over that span.
   */
  drainRatePerS(now: number): number {
    const n = Math.min(this.#drainCount, DRAIN_RING);
    if (n === 0) return 0;
    const from = now - this.#drainWindowMs;
    let count = 0;
    let oldest = Infinity;
    for (let i = 0; i < n; i++) {
      const t = this.#drained[i]!;
      if (t > from) {
        count++;
        if (t < oldest) oldest = t;
      }
    }
    if (count === 0) return 0;
    const spanMs = count === DRAIN_RING ? Math.max(1, now - oldest) : this.#drainWindowMs;
    return (count * 1000) / spanMs;
  }

  /** Seconds until what is queued now would drain at the observed rate, clamped; the max when nothing drains. */
  retryAfterS(now: number): number {
    const rate = this.drainRatePerS(now);
    if (rate <= 0) return this.#maxRetryS;
    return Math.min(this.#maxRetryS, Math.max(this.#minRetryS, Math.ceil(this.#size / rate)));
  }

  enqueue(item: T, now: number): EnqueueResult {
    const cls = PRIORITY_CLASSES.indexOf(item.priority ?? "interactive");
    if (cls < 0) throw new RangeError(`priority must be one of ${PRIORITY_CLASSES.join(", ")}, got ${String(item.priority)}`);
    const cost = item.cost ?? 1;
    if (!(cost >= 0) || !Number.isFinite(cost)) throw new RangeError(`cost must be a finite number >= 0, got ${cost}`);
    if (this.#byItem.has(item)) throw new Error("item is already queued");
    const deadline = item.deadlineMs ?? Infinity;
    if (deadline <= now) return { ok: false, reason: "deadline_exceeded", retryAfterS: 0, message: "the request's deadline passed before it could be queued" };
    this.#collectExpired(now);
    if (this.#size >= this.maxQueued) {
      const retryAfterS = this.retryAfterS(now);
      return { ok: false, reason: "queue_full", retryAfterS, message: `the admission queue is full (${this.#size} waiting); retry in ${retryAfterS} s` };
    }
    if (this.sizeOf(item.tenant) >= this.maxQueuedPerTenant) {
      const retryAfterS = this.retryAfterS(now);
      return {
        ok: false,
        reason: "tenant_queue_full",
        retryAfterS,
        message: `tenant "${item.tenant}" has ${this.maxQueuedPerTenant} requests waiting, its limit; retry in ${retryAfterS} s`,
      };
    }
    const tenants = this.#tenants[cls]!;
    let tq = tenants.get(item.tenant);
    if (tq === undefined) {
      tq = { name: item.tenant, cls, fifo: [], head: 0, live: 0, lastFinish: 0, headFinish: 0, headEntry: undefined, inHeap: false };
      tenants.set(item.tenant, tq);
    }
    const e: Entry<T> = { item, tenant: tq, span: cost / this.#weightOf(item.tenant), seq: this.#seq++, enqueuedMs: now, deadlineMs: deadline, alive: true };
    tq.fifo.push(e);
    tq.live++;
    this.#classLive[cls]!++;
    this.#size++;
    this.#byItem.set(item, e);
    if (deadline !== Infinity) this.#deadlines.push(e);
    if (!tq.inHeap) {
      this.#skipDead(tq);
      this.#push(tq);
    }
    return { ok: true };
  }

  /** The next item to dispatch at `now`, or undefined when none waits. Never an expired one. */
  next(now: number): T | undefined {
    this.#collectExpired(now);
    for (let cls = 0; cls < PRIORITY_CLASSES.length; cls++) {
      if (this.#classLive[cls] === 0) continue;
      const heap = this.#ready[cls]!;
      for (;;) {
        const tq = heap.pop();
        if (tq === undefined) break;
        tq.inHeap = false;
        this.#skipDead(tq);
        if (tq.head >= tq.fifo.length) {
          this.#dropTenant(tq);
          continue;
        }
        const e = tq.fifo[tq.head]!;
        if (e !== tq.headEntry) {
          // Its head left the queue (expired, removed) since the tenant was tagged: tag the new head.
          this.#push(tq);
          continue;
        }
        tq.head++;
        this.#take(e);
        tq.lastFinish = tq.headFinish;
        this.#virtual[cls] = Math.max(this.#virtual[cls]!, tq.headFinish);
        this.#skipDead(tq);
        if (tq.head < tq.fifo.length) this.#push(tq);
        else this.#dropTenant(tq);
        this.#drained[this.#drainCount % DRAIN_RING] = now;
        this.#drainCount++;
        return e.item;
      }
    }
    return undefined;
  }

  /** Tags the tenant's (live) head and puts the tenant in its class's ready heap. */
  #push(tq: TenantQueue<T>): void {
    const e = tq.fifo[tq.head]!;
    tq.headEntry = e;
    tq.headFinish = Math.max(this.#virtual[tq.cls]!, tq.lastFinish) + e.span;
    tq.inHeap = true;
    this.#ready[tq.cls]!.push(tq);
  }

  /** Drops the items whose deadline is at or before `now` and returns them, with those dropped since the last call. */
  expire(now: number): ExpiredWaiter<T>[] {
    this.#collectExpired(now);
    const out = this.#expired;
    this.#expired = [];
    return out;
  }

  /** Removes a queued item (its client went away); returns whether it was queued. */
  remove(item: T): boolean {
    const e = this.#byItem.get(item);
    if (e === undefined) return false;
    this.#take(e);
    return true;
  }

  #take(e: Entry<T>): void {
    e.alive = false;
    e.tenant.live--;
    this.#classLive[e.tenant.cls]!--;
    this.#size--;
    this.#byItem.delete(e.item);
  }

  #collectExpired(now: number): void {
    const dl = this.#deadlines;
    for (;;) {
      const e = dl.peek();
      if (e === undefined || e.deadlineMs > now) return;
      dl.pop();
      if (!e.alive) continue;
      this.#take(e);
      this.#expired.push({ item: e.item, reason: "deadline_exceeded", waitedMs: now - e.enqueuedMs });
    }
  }

  #skipDead(tq: TenantQueue<T>): void {
    while (tq.head < tq.fifo.length && !tq.fifo[tq.head]!.alive) tq.head++;
    if (tq.head > 64 && tq.head * 2 > tq.fifo.length) {
      tq.fifo.splice(0, tq.head);
      tq.head = 0;
    }
  }

  #dropTenant(tq: TenantQueue<T>): void {
    if (tq.live > 0 || tq.inHeap) return;
    const m = this.#tenants[tq.cls]!;
    if (m.get(tq.name) === tq) m.delete(tq.name);
  }
}
