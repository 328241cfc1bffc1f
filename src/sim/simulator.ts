/**
 * The discrete-event loop: the live fleet's decisions over simulated
 * replicas in virtual time. Every decision is the gateway's own code from
 * scheduler/: the admission lane (admission-lane.ts) at the front door, the
 * candidate rule (readiness.ts: phase, breaker, panic mode), the retry
 * rules (retry.ts: attempt budget, avoiding replicas that failed the
 * request, backoff, waiting for a ready replica) and `route()` with the
 * same Policy objects and Candidate shape. test/sim/parity.test.ts drives
 * the live dispatcher and this loop through one scenario and requires the
 * same decisions, event for event.
 *
 * Events are replica step ends, device failures and repairs, requests
 * waking from a backoff or a wait for a ready replica, and the admission
 * lane's poll; arrivals are read from the trace in order rather than
 * queued. One event advances a whole batch by one forward pass, so the cost
 * of a run is the number of passes, not of tokens times Promises.
 */
import { ManualClock } from "../core/clock.js";
import type { PriorityClass } from "../scheduler/admission.js";
import { AdmissionLane } from "../scheduler/admission-lane.js";
import { CandidateSelector } from "../scheduler/candidates.js";
import { ownerBlocksOf } from "../scheduler/prefix-owner.js";
import { RouterInstances, type Load, type RouterInstancesOptions } from "./router-instances.js";
import { routeConstants, type RouteConstants } from "../scheduler/constants.js";
import type { DecisionListener } from "../scheduler/decision.js";
import { readyIndices } from "../scheduler/decision.js";
import { ReplicaHealth } from "../scheduler/health.js";
import type { Candidate, Policy, RejectReason, RouteOutcome, RouteRequest } from "../scheduler/pipeline.js";
import { newRouteTrace, route } from "../scheduler/pipeline.js";
import { markReady, type Readiness, type ReadinessCandidate, type ReplicaStatus } from "../scheduler/readiness.js";
import { Autoscaler, scalingActions } from "../scheduler/autoscale.js";
import { DEFAULT_RETRY, attemptBudget, backoffMs, retryCandidates, type RetryPolicy } from "../scheduler/retry.js";
import { kvBytesPerToken } from "../hardware/index.js";
import { kvLanes, kvLink, kvTransferJoules, kvTransferMs, type KvLink } from "../hardware/links.js";
import { replicaRps } from "./autoscaling.js";
import { EventQueue } from "./events.js";
import type { MembershipChange, SimFleet, SimIsland } from "./fleet-file.js";
import { exponential, seededRandom } from "./random.js";
import type { ReplicaCounters } from "./replica.js";
import { ReplicaModel, SimSeq } from "./replica.js";
import type { Trace } from "./traces.js";

export interface SimProgress {
  /** Requests finished, rejected or lost. */
  readonly resolved: number;
  readonly total: number;
  readonly simMs: number;
  readonly events: number;
  readonly wallMs: number;
}

export interface SimulateOptions {
  readonly fleet: SimFleet;
  readonly trace: Trace;
  /** Overrides the fleet file's policy (any Policy object). */
  readonly policy?: Policy;
  /** Overrides every replica's KV capacity in tokens; Infinity for an unlimited cache. */
  readonly kvCapacityTokens?: number;
  /** Overrides every replica's host-tier capacity in tokens (0: none; Infinity: unlimited). */
  readonly hostKvTokens?: number;
  /** Stops at this virtual time; requests not finished by then are reported as unfinished. */
  readonly untilMs?: number;
  /** Called about every `progressEveryMs` of wall time (default 100), and once at the end. */
  readonly onProgress?: (p: SimProgress) => void;
  readonly progressEveryMs?: number;
  /** Timeline resolution: about this many buckets over the trace's span (default 240). */
  readonly timelineBuckets?: number;
  /** The retry rules; the gateway's defaults (DEFAULT_RETRY) where left out. */
  readonly retry?: Partial<RetryPolicy>;
  /** The candidate rule; the gateway's (markReady). Injectable so a test can show the twin diverging without it. */
  readonly readiness?: Readiness;
  /** Requests waiting at the front door at most (default: the sum of the replicas' max_queue, as the gateway's). */
  readonly maxQueued?: number;
  /** How often the admission lane looks again while requests wait, ms (the gateway's default, 50). */
  readonly admissionPollMs?: number;
  /** Hears every routing decision, with its RouteTrace (scores, plugin times); costs a little per decision, so off unless given. */
  readonly onDecision?: DecisionListener;
  /** Several gateways over the fleet, each with its own index and view of load (router-instances.ts); default: the fleet file's router section. */
  readonly router?: RouterInstancesOptions;
}

/** Request outcome codes in `SimResult.requests.status`. */
export const STATUS = { pending: 0, done: 1, rejected: 2, lost: 3 } as const;

export interface SimReplicaResult {
  readonly name: string;
  readonly island: string;
  readonly counters: Readonly<ReplicaCounters>;
  readonly failures: number;
  readonly downMs: number;
  /** How long it was part of the fleet (the whole run, unless membership changes added or removed it). */
  readonly memberMs: number;
}

export interface SimTimeline {
  readonly bucketMs: number;
  /** Output tokens generated in each bucket. */
  readonly outputTokens: number[];
  /** Requests finished in each bucket. */
  readonly completed: number[];
  /** Requests waiting (queued on replicas, or parked for retry) at the start of each bucket. */
  readonly queued: number[];
  /** Sequences running at the start of each bucket. */
  readonly running: number[];
  /** Replicas down at the start of each bucket. */
  readonly down: number[];
  /** Replicas in the fleet (serving, draining or provisioning: paid) at the start of each bucket. */
  readonly members: number[];
}

export interface SimKvTransfer {
  /** The fleet file's kv_transfer.link, and the first transfer's link as resolved (its name). */
  readonly link: string;
  readonly linkName: string;
  readonly transfers: number;
  readonly bytes: number;
  /** The links' energy, before PUE. */
  readonly joules: number;
  /** Each transfer's time, ms, in the order they started. */
  readonly ms: Float64Array;
}

export interface SimResult {
  readonly fleet: SimFleet;
  readonly trace: Trace;
  readonly policy: string;
  readonly requests: {
    /** When each arrived in this run: its trace arrival, or in a closed-loop session a pause after the request it follows ended. */
    readonly arrivalMs: Float64Array;
    readonly firstTokenMs: Float64Array;
    readonly finishMs: Float64Array;
    readonly replica: Int32Array;
    readonly retries: Int32Array;
    readonly cachedTokens: Int32Array;
    readonly status: Uint8Array;
  };
  readonly replicas: readonly SimReplicaResult[];
  readonly timeline: SimTimeline;
  /** KV moved from prefill to decode replicas (disaggregated fleets only). */
  readonly kvTransfer?: SimKvTransfer;
  /** Requests that waited at the front door, and the longest wait, ms. */
  readonly admission: { readonly queued: number; readonly maxWaitMs: number };
  readonly rejected: Readonly<Record<RejectReason, number>>;
  readonly retries: number;
  readonly lost: number;
  readonly unfinished: number;
  /** Virtual time of the last event processed. */
  readonly endMs: number;
  readonly events: number;
  readonly decisions: number;
  /** Wall time spent deciding (sampling, building candidates, route()). */
  readonly decisionMs: number;
  readonly wallMs: number;
}

// Event kinds.
const STEP_END = 0;
const FAIL = 1;
const REPAIR = 2;
/** A request's backoff or wait for a ready replica is over: it routes again. */
const WAKE = 3;
const SCHEDULED_FAIL = 4;
/** The admission lane looks at deadlines and capacity again. */
const ADMISSION_POLL = 5;
/** A request's KV has reached its decode replica. */
const TRANSFER_DONE = 6;
/** A replica joins the fleet, or leaves it (membership changes), or its last running requests are moved off it. */
const MEMBER_ADD = 7;
const MEMBER_REMOVE = 8;
const EVICT = 9;
/** An autoscaled island's autoscaler decides (target: the island), or a replica it ordered is ready (target: the replica). */
const AUTOSCALE = 10;
const PROVISIONED = 11;
/** A closed-loop client's next request arrives (target: its index). */
const ARRIVE = 12;

/** Replica roles (fleet-file `role`), and which a request routes to next. */
const ROLE_BOTH = 0;
const ROLE_PREFILL = 1;
const ROLE_DECODE = 2;
const ROLE_CODE = { both: ROLE_BOTH, prefill: ROLE_PREFILL, decode: ROLE_DECODE } as const;

/** Where a request's pick stands between events. */
const PICK_BACKOFF = 1;
const PICK_POLLING = 2;

type MutableCandidate = ReadinessCandidate;

/** One request at the admission lane. */
interface Arrival {
  readonly seq: SimSeq;
  readonly tenant: string;
  readonly priority: PriorityClass;
  readonly cost: number;
}

function niceBucket(spanMs: number, buckets: number): number {
  const raw = Math.max(spanMs, 1000) / buckets;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/** Runs a trace through a fleet; synchronous, deterministic for a given seed. */
export function simulate(opts: SimulateOptions): SimResult {
  return new Simulation(opts).run();
}

/** What the loop knows of each request. */
class Requests {
  readonly arrivalMs: Float64Array;
  readonly firstTokenMs: Float64Array;
  readonly finishMs: Float64Array;
  readonly replica: Int32Array;
  readonly retries: Int32Array;
  readonly cachedTokens: Int32Array;
  readonly status: Uint8Array;
  /** Attempts made, as the dispatcher counts them against the budget. */
  readonly attempts: Int32Array;
  /** Replicas that failed the request (only for requests a failure displaced). */
  readonly failed = new Map<number, Set<number>>();
  /** The pick under way: PICK_BACKOFF or PICK_POLLING while it waits for its WAKE at `wakeAt`, until `waitUntil`. */
  readonly pick: Uint8Array;
  readonly wakeAt: Float64Array;
  readonly waitUntil: Float64Array;
  /** When a request began to wait at the front door (NaN: it did not). */
  readonly queuedAt: Float64Array;
  readonly waiting = new Map<number, SimSeq>();
  /** The role a request routes to next: ROLE_BOTH in a colocated fleet, else ROLE_PREFILL or ROLE_DECODE. */
  readonly stage: Uint8Array;
  /** Its decode replica's failure count when its KV set out (a failure since loses the KV). */
  readonly transferEpoch: Int32Array;
  /** Requests whose KV is on its way, by id. */
  readonly inFlight: (SimSeq | undefined)[];

  constructor(n: number, firstStage: number) {
    this.arrivalMs = new Float64Array(n).fill(NaN);
    this.firstTokenMs = new Float64Array(n).fill(NaN);
    this.finishMs = new Float64Array(n).fill(NaN);
    this.replica = new Int32Array(n).fill(-1);
    this.retries = new Int32Array(n);
    this.cachedTokens = new Int32Array(n);
    this.status = new Uint8Array(n);
    this.attempts = new Int32Array(n);
    this.pick = new Uint8Array(n);
    this.wakeAt = new Float64Array(n).fill(NaN);
    this.waitUntil = new Float64Array(n).fill(NaN);
    this.queuedAt = new Float64Array(n).fill(NaN);
    this.stage = new Uint8Array(n).fill(firstStage);
    this.transferEpoch = new Int32Array(firstStage === ROLE_BOTH ? 0 : n);
    this.inFlight = firstStage === ROLE_BOTH ? [] : new Array<SimSeq | undefined>(n).fill(undefined);
  }
}

/** Transfers' durations (a growing buffer) and totals. */
class Transfers {
  ms = new Float64Array(64);
  count = 0;
  bytes = 0;
  joules = 0;
  linkName = "";

  add(ms: number, bytes: number, joules: number): void {
    if (this.count === this.ms.length) {
      const grown = new Float64Array(this.ms.length * 2);
      grown.set(this.ms);
      this.ms = grown;
    }
    this.ms[this.count++] = ms;
    this.bytes += bytes;
    this.joules += joules;
  }
}

/** The replicas, and what the router reads of them in flat arrays: a decision touches k entries, not k objects. */
class Replicas {
  readonly models: ReplicaModel[] = [];
  readonly health: ReplicaHealth[] = [];
  readonly islandOf: SimIsland[] = [];
  readonly names: string[] = [];
  /** Island index in fleet order, and role (ROLE_*). */
  readonly islandNo: Int32Array;
  readonly role: Uint8Array;
  /** Requests whose KV is on its way here: the router counts them as queued. */
  readonly incoming: Int32Array;
  readonly up: Uint8Array;
  readonly active: Int32Array;
  readonly queued: Int32Array;
  readonly slots: Int32Array;
  readonly maxQueue: Int32Array;
  readonly context: Float64Array;
  readonly stepDue: Float64Array;
  readonly failAt: Float64Array;
  readonly repairAt: Float64Array;
  readonly downSince: Float64Array;
  readonly downMs: Float64Array;
  readonly failures: Int32Array;
  /** 1 while the replica is part of the fleet (membership changes); when its current stay began, NaN for never. */
  readonly member: Uint8Array;
  readonly joinedAt: Float64Array;
  /** Time in the fleet of its earlier stays (an autoscaled replica can leave and join again). */
  readonly memberTotal: Float64Array;
  /** When the autoscaler ordered it, while it is provisioning (paid, not serving yet); else NaN. */
  readonly orderedAt: Float64Array;
  downCount = 0;
  /**
   * Sequences of the replicas up: the admission lane's capacity. The
   * gateway sums the slots of replicas whose engine is up and whose breaker
   * admits them (readiness.ts: servingSlots); a simulated replica serves
   * until it fails, its breaker can open only on the failures that take it
   * down, and it hears of the engine going and coming back at once (the
   * gateway, at its next look), so the two sums are one, kept here as a
   * running total instead of a pass over the fleet per arrival.
   */
  servingSlots = 0;

  constructor(n: number) {
    this.islandNo = new Int32Array(n);
    this.role = new Uint8Array(n);
    this.incoming = new Int32Array(n);
    this.up = new Uint8Array(n).fill(1);
    this.active = new Int32Array(n);
    this.queued = new Int32Array(n);
    this.slots = new Int32Array(n);
    this.maxQueue = new Int32Array(n);
    this.context = new Float64Array(n);
    this.stepDue = new Float64Array(n).fill(NaN);
    this.failAt = new Float64Array(n).fill(NaN);
    this.repairAt = new Float64Array(n).fill(NaN);
    this.downSince = new Float64Array(n);
    this.downMs = new Float64Array(n);
    this.failures = new Int32Array(n);
    this.member = new Uint8Array(n).fill(1);
    this.joinedAt = new Float64Array(n);
    this.memberTotal = new Float64Array(n);
    this.orderedAt = new Float64Array(n).fill(NaN);
  }

  /** It leaves the fleet at `now`: its stay is added up. */
  left(r: number, now: number): void {
    this.member[r] = 0;
    this.memberTotal[r]! += now - this.joinedAt[r]!;
  }

  /** Whether replica r's sequences count toward the admission lane's capacity: a member, up, and taking new requests. */
  serving(r: number): boolean {
    return this.member[r] === 1 && this.up[r] === 1 && this.health[r]!.phase !== "removed";
  }
}

class Simulation {
  readonly #opts: SimulateOptions;
  readonly #fleet: SimFleet;
  readonly #trace: Trace;
  readonly #policy: Policy;
  readonly #retry: RetryPolicy;
  readonly #readiness: Readiness;
  readonly #budget: number;
  readonly #n: number;
  readonly #clock = new ManualClock();
  readonly #random: () => number;
  readonly #failRandom: () => number;
  readonly #events: EventQueue;
  readonly #req: Requests;
  readonly #rep: Replicas;
  readonly #lane: AdmissionLane<Arrival>;
  readonly #timeline: SimTimeline;
  readonly #bucketMs: number;
  #nextBoundary = 0;
  /** Requests a pass finished, released at the front door once the pass is over. */
  readonly #finished: SimSeq[] = [];
  /** Requests a prefill replica's pass handed off, routed to decode once the pass is over. */
  readonly #handed: SimSeq[] = [];
  /** KV links by [prefill island][decode island] (disaggregated fleets). */
  readonly #links: KvLink[][] = [];
  readonly #transfers = new Transfers();
  /** KV bytes per token of the whole model (every device's shard), by island: what a transfer moves. */
  readonly #kvBytes: number[] = [];
  /** Longest request (prompt + output) some decode replica holds; Infinity in a colocated fleet. */
  #decodeContextMax = Infinity;
  #resolved = 0;
  readonly #rejected: Record<RejectReason, number> = { no_ready_replica: 0, context_length_exceeded: 0, overloaded: 0 };
  #lost = 0;
  #totalRetries = 0;
  #admissionQueued = 0;
  #admissionMaxWaitMs = 0;
  #pollDue = NaN;

  // Routing: the production candidate selection (prefix holders + a power-of-d
  // sample) over the router's approximate prefix index, as the live gateway
  // keeps it; not the simulated caches' exact state.
  readonly #selector: CandidateSelector;
  readonly #routers: RouterInstances;
  /** The router instance each request arrived at. */
  readonly #instanceOf: Int32Array;
  /** In closed-loop sessions, the request each one's end sends (-1: none); undefined without sessions. */
  readonly #followers: Int32Array | undefined;
  /** The prefix-owner scorer's conversation depth, when the policy has one: its owners join the candidates. */
  readonly #ownerBlocks: number | undefined;
  readonly #load: Load = { active: 0, queued: 0 };
  readonly #truth = (r: number, out: Load): void => {
    out.active = this.#rep.active[r]!;
    out.queued = this.#rep.queued[r]! + this.#rep.incoming[r]!;
  };
  readonly #constantsOf = new Map<SimIsland, RouteConstants>();
  readonly #pool: MutableCandidate[] = [];
  readonly #candidates: MutableCandidate[] = [];
  readonly #statusOf: (r: number) => ReplicaStatus;
  #decisions = 0;
  #decisionMs = 0;
  /**
   * Each autoscaled island's autoscaler, by island index; what one of its
   * replicas serves (predictive); and its share of the fleet's serving
   * slots at its last decision, the share of arrivals it counts.
   */
  readonly #scalers: ({ readonly autoscaler: Autoscaler; readonly replicaRps?: number; share: number } | undefined)[] = [];

  constructor(opts: SimulateOptions) {
    this.#opts = opts;
    const { fleet, trace } = opts;
    if (trace.blockTokens !== 0 && trace.blockTokens !== fleet.blockTokens) {
      throw new RangeError(`the trace's prefix blocks are ${trace.blockTokens} tokens but the fleet's cache blocks are ${fleet.blockTokens}; set engine.block_tokens to ${trace.blockTokens}`);
    }
    this.#fleet = fleet;
    this.#trace = trace;
    this.#policy = opts.policy ?? fleet.policy;
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#readiness = opts.readiness ?? markReady;
    this.#n = fleet.replicaCount;
    this.#budget = attemptBudget(this.#retry, this.#n);
    this.#random = seededRandom(fleet.seed);
    this.#failRandom = seededRandom(fleet.seed ^ 0x5bd1e995);
    this.#events = new EventQueue(Math.min(1 << 20, 2 * this.#n + 64));
    this.#req = new Requests(trace.count, fleet.disaggregated === true ? ROLE_PREFILL : ROLE_BOTH);
    this.#rep = new Replicas(this.#n);
    const lastArrival = trace.count > 0 ? trace.arrivalMs[trace.count - 1]! : 0;
    this.#bucketMs = niceBucket(lastArrival, opts.timelineBuckets ?? 240);
    this.#timeline = { bucketMs: this.#bucketMs, outputTokens: [], completed: [], queued: [], running: [], down: [], members: [] };
    this.#selector = new CandidateSelector({ sample: Math.min(this.#n, fleet.sample) });
    this.#routers = new RouterInstances(this.#n, fleet.seed, opts.router ?? fleet.router);
    this.#instanceOf = new Int32Array(trace.count);
    this.#followers = followersOf(trace);
    this.#ownerBlocks = ownerBlocksOf(this.#policy);
    for (let j = 0; j < this.#selector.capacity; j++) this.#pool.push({ index: 0, ready: true, active: 0, queued: 0, slots: 1, maxQueue: 0, contextSize: undefined });
    // One object, refilled per call: the rule reads it at once, and a decision allocates nothing per candidate.
    const status = { engineReady: true, health: undefined as unknown as ReplicaHealth };
    this.#statusOf = (r) => {
      status.engineReady = this.#rep.up[r] === 1;
      status.health = this.#rep.health[r]!;
      return status;
    };
    this.#buildReplicas();
    const weights = new Map<string, number>();
    trace.tenants?.names.forEach((name, j) => weights.set(name, trace.tenants!.weights[j]!));
    let maxQueued = 0;
    for (let r = 0; r < this.#n; r++) maxQueued += this.#rep.maxQueue[r]!;
    this.#lane = new AdmissionLane<Arrival>({ maxQueued: opts.maxQueued ?? maxQueued, weights: (t) => weights.get(t) ?? 1 });
    this.#scheduleFailures();
    this.#scheduleMembership();
    this.#scheduleAutoscaling();
    for (const [k, scaler] of this.#scalers.entries()) if (scaler !== undefined) scaler.share = this.#slotShare(this.#fleet.islands[k]!);
  }

  #buildReplicas(): void {
    const fleet = this.#fleet;
    const rep = this.#rep;
    const listener = {
      firstToken: (seq: SimSeq, now: number): void => {
        this.#req.firstTokenMs[seq.id] = now;
        rep.health[this.#req.replica[seq.id]!]!.spoke();
      },
      finished: (seq: SimSeq): void => {
        this.#finished.push(seq);
      },
      prefilled: (seq: SimSeq): void => {
        this.#handed.push(seq);
      },
    };
    fleet.islands.forEach((isl, k) => {
      for (let j = 0; j < isl.count; j++) {
        const r = rep.models.length;
        const model = new ReplicaModel(
          {
            profile: isl.profile,
            roofline: isl.roofline,
            energy: isl.energy,
            maxBatch: isl.maxBatch,
            kvCapacityTokens: this.#opts.kvCapacityTokens ?? isl.profile.kvCapacityTokens,
            hostKvTokens: this.#opts.hostKvTokens ?? isl.hostKvTokens,
            hostLinkGBs: isl.hostLinkGBs,
            role: isl.role ?? "both",
            blockTokens: fleet.blockTokens,
            chunkedPrefill: fleet.chunkedPrefill,
            ...(fleet.stepTokens !== undefined ? { stepTokens: fleet.stepTokens } : {}),
          },
          listener,
        );
        rep.models.push(model);
        rep.health.push(new ReplicaHealth(this.#clock));
        rep.islandOf.push(isl);
        rep.islandNo[r] = k;
        rep.role[r] = ROLE_CODE[isl.role ?? "both"];
        rep.names.push(`${isl.name}/${j}`);
        rep.slots[r] = isl.maxBatch;
        rep.maxQueue[r] = isl.maxQueue;
        rep.context[r] = isl.contextSize;
        rep.servingSlots += isl.maxBatch;
        // Both tiers are hits, so the router remembers as many blocks per replica as HBM and host memory hold together.
        this.#routers.setCapacity(r, Math.max(1, Math.floor(model.kvCapacityTokens / fleet.blockTokens) + model.hostCapacityBlocks));
        if (!this.#constantsOf.has(isl)) this.#constantsOf.set(isl, routeConstants(isl.profile, isl.energy, { usdPerHour: isl.usdPerHour }));
      }
    });
    if (fleet.disaggregated === true) this.#buildLinks();
  }

  /** The KV link between every pair of islands, and the longest request a decode island holds. */
  #buildLinks(): void {
    const islands = this.#fleet.islands;
    this.#decodeContextMax = 0;
    for (const from of islands) {
      this.#kvBytes.push(kvBytesPerToken(from.model, from.profile.kvFormat));
      this.#links.push(islands.map((to) => kvLink(this.#fleet.kvTransfer?.link ?? "rdma-400g", from.hardware, to.hardware)));
      if (from.role === "decode") this.#decodeContextMax = Math.max(this.#decodeContextMax, from.contextSize);
    }
  }

  #scheduleFailures(): void {
    const fp = this.#fleet.failures;
    if (fp === undefined) return;
    if (fp.mtbfMs !== undefined) {
      for (let r = 0; r < this.#n; r++) {
        this.#rep.failAt[r] = exponential(this.#failRandom, fp.mtbfMs);
        this.#events.push(this.#rep.failAt[r]!, FAIL, r);
      }
    }
    fp.schedule.forEach((s, j) => this.#events.push(s.atMs, SCHEDULED_FAIL, j));
  }

  /** Replicas that join later are absent (not up, not paid) until they do; every change is an event. */
  #scheduleMembership(): void {
    (this.#fleet.membership ?? []).forEach((c, j) => {
      if (c.change === "add") this.#absent(c.replica);
      this.#events.push(c.atMs, c.change === "add" ? MEMBER_ADD : MEMBER_REMOVE, j);
    });
  }

  #absent(r: number): void {
    const rep = this.#rep;
    if (rep.serving(r)) rep.servingSlots -= rep.slots[r]!;
    rep.member[r] = 0;
    rep.up[r] = 0;
    rep.joinedAt[r] = NaN;
    rep.failAt[r] = NaN;
  }

  /** An autoscaled island's replicas past its starting count are absent; its autoscaler decides every interval. */
  #scheduleAutoscaling(): void {
    this.#fleet.islands.forEach((isl, k) => {
      const a = isl.autoscale;
      if (a === undefined) return;
      for (let j = a.initial; j < isl.count; j++) this.#absent(isl.firstReplica + j);
      const rps = a.settings.mode === "predictive" ? replicaRps(isl, this.#trace, this.#fleet.slo.tpotMs) : undefined;
      this.#scalers[k] = { autoscaler: new Autoscaler(a.settings), ...(rps === undefined ? {} : { replicaRps: rps }), share: 0 };
      this.#events.push(a.intervalMs, AUTOSCALE, k);
    });
  }

  run(): SimResult {
    const wallStart = performance.now();
    const { onProgress } = this.#opts;
    const total = this.#trace.count;
    const until = this.#opts.untilMs ?? Infinity;
    const progressEvery = this.#opts.progressEveryMs ?? 100;
    let lastProgress = wallStart;
    let nextArrival = this.#nextOpen(0);
    let eventCount = 0;
    let now = 0;
    while (this.#resolved < total) {
      const tHeap = this.#events.peekTime();
      const tArr = nextArrival < total ? this.#trace.arrivalMs[nextArrival]! : Infinity;
      const t = Math.min(tHeap, tArr);
      if (t === Infinity || t > until) break;
      if (t >= this.#nextBoundary) this.#recordBoundaries(t);
      this.#clock.advanceTo(t);
      now = t;
      eventCount++;
      if (tHeap <= tArr) {
        this.#events.pop();
        this.#handle(this.#events.kind, this.#events.target, t);
      } else {
        this.#arrive(nextArrival, t);
        nextArrival = this.#nextOpen(nextArrival + 1);
      }
      if ((eventCount & 4095) === 0 && onProgress !== undefined) {
        const w = performance.now();
        if (w - lastProgress >= progressEvery) {
          lastProgress = w;
          onProgress({ resolved: this.#resolved, total, simMs: now, events: eventCount, wallMs: w - wallStart });
        }
      }
    }
    const wallMs = performance.now() - wallStart;
    const result = this.#result(now, eventCount, wallMs);
    onProgress?.({ resolved: this.#resolved, total, simMs: now, events: eventCount, wallMs });
    return result;
  }

  /** The first request from `k` on that arrives at its trace time (a closed-loop session's later requests arrive by event). */
  #nextOpen(k: number): number {
    const follows = this.#trace.sessions?.follows;
    if (follows !== undefined) while (k < follows.length && follows[k]! >= 0) k++;
    return k;
  }

  #handle(kind: number, target: number, t: number): void {
    const rep = this.#rep;
    switch (kind) {
      case STEP_END:
        if (rep.stepDue[target] === t) this.#stepEnd(target, t); // else a step abandoned by a failure
        return;
      case FAIL:
        if (rep.failAt[target] !== t) return;
        rep.failAt[target] = NaN;
        this.#fail(target, t);
        if (this.#fleet.failures !== undefined && rep.up[target] === 0) this.#scheduleRepair(target, t + exponential(this.#failRandom, this.#fleet.failures.repairMs));
        return;
      case SCHEDULED_FAIL: {
        const s = this.#fleet.failures!.schedule[target]!;
        const wasUp = rep.up[s.replica] === 1;
        this.#fail(s.replica, t);
        if (wasUp) {
          rep.failAt[s.replica] = NaN; // the random process resumes after this repair
          this.#scheduleRepair(s.replica, t + s.downMs);
        }
        return;
      }
      case REPAIR:
        if (rep.repairAt[target] !== t) return;
        this.#repair(target, t);
        this.#startStep(target, t);
        return;
      case WAKE:
        if (this.#req.wakeAt[target] === t) this.#wake(target, t);
        return;
      case ADMISSION_POLL:
        if (this.#pollDue === t) this.#poll(t);
        return;
      case TRANSFER_DONE:
        this.#transferred(target, t);
        return;
      case MEMBER_ADD:
        this.#join(this.#fleet.membership![target]!.replica, t);
        return;
      case MEMBER_REMOVE:
        this.#leave(this.#fleet.membership![target]!, t);
        return;
      case EVICT:
        this.#evict(target, t);
        return;
      case ARRIVE:
        this.#arrive(target, t);
        return;
      case AUTOSCALE:
        this.#autoscale(target, t);
        return;
      case PROVISIONED:
        if (rep.orderedAt[target]! + this.#fleet.islands[rep.islandNo[target]!]!.autoscale!.settings.provisioningMs !== t) return; // cancelled
        this.#join(target, t);
        rep.joinedAt[target] = rep.orderedAt[target]!; // paid from the order
        rep.orderedAt[target] = NaN;
        return;
    }
  }

  // --- the front door (scheduler/admission-lane.ts, as the gateway's AdmissionGate)

  #arrive(i: number, t: number): void {
    const trace = this.#trace;
    this.#req.arrivalMs[i] = t;
    const seq = new SimSeq(i, trace.inputTokens[i]!, trace.outputTokens[i]!, trace.blockIds, trace.blockOffsets[i]!, trace.blockOffsets[i + 1]!);
    this.#instanceOf[i] = this.#routers.assign();
    for (const scaler of this.#scalers) scaler?.autoscaler.arrived(t, scaler.share);
    if (seq.input + seq.output > this.#decodeContextMax) {
      // No decode replica could hold it: refused before any prefill, as the gateway's 400.
      this.#reject(seq, "context_length_exceeded", t);
      return;
    }
    if (this.#lane.opensFor(this.#rep.servingSlots)) {
      this.#lane.start();
      this.#pick(seq, t);
      return;
    }
    const tenants = trace.tenants;
    const who = tenants === undefined ? undefined : tenants.of[i]!;
    const arrival: Arrival = {
      seq,
      tenant: who === undefined ? "" : tenants!.names[who]!,
      priority: who === undefined ? "interactive" : tenants!.priorities[who]!,
      cost: seq.input + seq.output,
    };
    const queued = this.#lane.queue.enqueue(arrival, t);
    if (!queued.ok) {
      this.#reject(seq, "overloaded", t);
      return;
    }
    this.#admissionQueued++;
    this.#req.queuedAt[i] = t;
    if (Number.isNaN(this.#pollDue)) this.#schedulePoll(t);
  }

  /** While anything waits, the lane looks again every admissionPollMs, as the gateway's gate does. */
  #schedulePoll(t: number): void {
    this.#pollDue = t + (this.#opts.admissionPollMs ?? 50);
    this.#events.push(this.#pollDue, ADMISSION_POLL, 0);
  }

  #poll(t: number): void {
    this.#pollDue = NaN;
    this.#pump(t);
    if (this.#lane.queue.size > 0) this.#schedulePoll(t);
  }

  #pump(t: number): void {
    this.#lane.pump(
      t,
      this.#rep.servingSlots,
      ({ seq }) => {
        this.#admissionMaxWaitMs = Math.max(this.#admissionMaxWaitMs, t - this.#req.queuedAt[seq.id]!);
        this.#pick(seq, t);
      },
      () => undefined, // arrivals carry no deadline
    );
  }

  /** A request admitted at the front door has ended, however it ended: its place goes to the next. */
  #release(t: number): void {
    this.#lane.finish();
    if (this.#lane.queue.size > 0) this.#pump(t);
  }

  // --- picking a replica (scheduler/retry.ts, as the gateway's Dispatcher)

  /** Routes attempt `attempts + 1` of `seq`: after a backoff when it would go back to a replica that failed it. */
  #pick(seq: SimSeq, t: number): void {
    const failed = this.#req.failed.get(seq.id);
    if (failed !== undefined && this.#choose(seq, failed).revisiting) {
      this.#sleep(seq, t, PICK_BACKOFF, backoffMs(this.#retry, this.#req.attempts[seq.id]! + 1));
      return;
    }
    this.#route(seq, t, true);
  }

  /** One routing decision; with no replica ready, waits for one (readyWaitMs, looking every readyPollMs) before giving up. */
  #route(seq: SimSeq, t: number, first: boolean): void {
    const outcome = this.#decide(seq, t);
    if (outcome.ok) {
      this.#dispatch(seq, outcome.index, t);
      return;
    }
    const req = this.#req;
    if (first) req.waitUntil[seq.id] = t + this.#retry.readyWaitMs;
    if (outcome.reason === "no_ready_replica" && t < req.waitUntil[seq.id]!) {
      this.#sleep(seq, t, PICK_POLLING, this.#retry.readyPollMs);
      return;
    }
    req.waitUntil[seq.id] = NaN;
    this.#giveUp(seq, outcome.reason, t);
  }

  #sleep(seq: SimSeq, t: number, state: number, ms: number): void {
    const req = this.#req;
    req.pick[seq.id] = state;
    req.wakeAt[seq.id] = t + ms;
    req.waiting.set(seq.id, seq);
    this.#events.push(t + ms, WAKE, seq.id);
  }

  #wake(id: number, t: number): void {
    const req = this.#req;
    const seq = req.waiting.get(id)!;
    const state = req.pick[id];
    req.waiting.delete(id);
    req.pick[id] = 0;
    req.wakeAt[id] = NaN;
    this.#route(seq, t, state === PICK_BACKOFF);
  }

  /** The candidates of `seq`'s next attempt: the selection, the shared readiness rule, and the retry rule over the replicas that failed it. */
  #choose(seq: SimSeq, failed: ReadonlySet<number> | undefined): { candidates: readonly Candidate[]; revisiting: boolean } {
    const n = this.#n;
    const rep = this.#rep;
    const want = this.#req.stage[seq.id]!;
    const blocks = stageBlocks(seq, want);
    const instance = this.#instanceOf[seq.id]!;
    const owner = this.#ownerBlocks === undefined || blocks.length === 0 ? undefined : blocks[Math.min(this.#ownerBlocks, blocks.length) - 1];
    this.#routers.prepare(instance, blocks, this.#clock.now());
    const m = this.#selector.select(n, this.#random, blocks, this.#routers.indexes[instance], owner);
    const candidates = this.#candidates;
    candidates.length = m;
    const load = this.#load;
    let kept = 0;
    for (let j = 0; j < m; j++) {
      const r = this.#selector.indices[j]!;
      if (rep.role[r] !== want) continue; // a disaggregated fleet's other stage
      const c = this.#pool[kept]!;
      const k = this.#constantsOf.get(rep.islandOf[r]!)!;
      c.index = r;
      if (this.#routers.count === 1) this.#truth(r, load);
      else this.#routers.view(instance, r, rep.slots[r]!, this.#clock.now(), this.#truth, load);
      c.active = load.active;
      c.queued = load.queued;
      c.slots = rep.slots[r]!;
      c.maxQueue = rep.maxQueue[r]!;
      c.contextSize = rep.context[r]!;
      c.prefixBlocks = this.#selector.prefixBlocks[j]!;
      c.prefillMsPerToken = k.prefillMsPerToken;
      c.usdPerMTok = k.usdPerMTok;
      c.joulesPerToken = k.joulesPerToken;
      c.kvCapacityTokens = k.kvCapacityTokens;
      candidates[kept++] = c;
    }
    candidates.length = kept;
    this.#readiness(candidates, this.#statusOf, seq.generated > 0);
    return failed === undefined ? { candidates, revisiting: false } : retryCandidates(candidates, failed);
  }

  #decide(seq: SimSeq, t: number): RouteOutcome {
    const t0 = performance.now();
    const { candidates } = this.#choose(seq, this.#req.failed.get(seq.id));
    const blocks = stageBlocks(seq, this.#req.stage[seq.id]!);
    const request: RouteRequest = {
      promptTokens: seq.input + seq.generated,
      maxTokens: seq.output - seq.generated,
      blocks,
      blockTokens: this.#fleet.blockTokens,
      ttftSloMs: this.#fleet.slo.ttftMs,
    };
    const { onDecision } = this.#opts;
    const trace = onDecision === undefined ? undefined : newRouteTrace();
    const outcome = route(this.#policy, request, candidates, this.#random, trace);
    if (outcome.ok) this.#routers.placed(this.#instanceOf[seq.id]!, outcome.index, blocks);
    this.#decisions++;
    this.#decisionMs += performance.now() - t0;
    onDecision?.({
      atMs: t,
      promptTokens: request.promptTokens,
      maxTokens: request.maxTokens,
      resume: seq.generated > 0,
      ready: readyIndices(candidates),
      outcome: outcome.ok ? outcome.index : outcome.reason,
      ...(trace === undefined ? {} : { trace }),
    });
    return outcome;
  }

  #dispatch(seq: SimSeq, r: number, t: number): void {
    if (this.#req.stage[seq.id] === ROLE_DECODE) {
      this.#sendKv(seq, r, t);
      return;
    }
    this.#req.replica[seq.id] = r;
    this.#routers.dispatched(this.#instanceOf[seq.id]!, r);
    this.#req.attempts[seq.id]!++;
    this.#rep.health[r]!.dispatched();
    this.#rep.models[r]!.enqueue(seq);
    this.#startStep(r, t);
  }

  // --- disaggregation: prefill hands off, KV crosses the link, decode takes over

  /** A prefill replica's pass put `seq`'s prompt in KV and its token out: it routes to a decode replica. */
  #handoff(seq: SimSeq, r: number, t: number): void {
    this.#routers.ended(this.#instanceOf[seq.id]!, r);
    this.#rep.health[r]!.succeeded();
    this.#req.stage[seq.id] = ROLE_DECODE;
    this.#pick(seq, t);
  }

  /**
   * Sends `seq`'s KV (its prefill's tokens x the model's KV bytes per token)
   * from the replica that prefilled it to decode replica r: it arrives after
   * latency + bytes / (lanes x bandwidth). The same attempt goes on: no
   * attempt is counted against the budget.
   */
  #sendKv(seq: SimSeq, r: number, t: number): void {
    const req = this.#req;
    const rep = this.#rep;
    const from = req.replica[seq.id]!;
    const src = rep.islandOf[from]!;
    const link = this.#links[rep.islandNo[from]!]![rep.islandNo[r]!]!;
    const bytes = seq.promptTokens * this.#kvBytes[rep.islandNo[from]!]!;
    const ms = kvTransferMs(link, bytes, kvLanes(link, src.tp, rep.islandOf[r]!.tp));
    if (this.#transfers.count === 0) this.#transfers.linkName = link.name;
    this.#transfers.add(ms, bytes, kvTransferJoules(link, bytes));
    req.replica[seq.id] = r;
    req.transferEpoch[seq.id] = rep.failures[r]!;
    req.inFlight[seq.id] = seq;
    this.#routers.dispatched(this.#instanceOf[seq.id]!, r);
    rep.health[r]!.dispatched();
    rep.incoming[r]!++;
    this.#events.push(t + ms, TRANSFER_DONE, seq.id);
  }

  /** `seq`'s KV has arrived: it queues to decode, unless its replica failed meanwhile (the KV is lost: it prefills again). */
  #transferred(id: number, t: number): void {
    const req = this.#req;
    const rep = this.#rep;
    const seq = req.inFlight[id]!;
    req.inFlight[id] = undefined;
    const r = req.replica[id]!;
    rep.incoming[r]!--;
    if (rep.up[r] === 0 || rep.failures[r] !== req.transferEpoch[id]) {
      this.#displaced(seq, r);
      this.#reroute(seq, t);
      return;
    }
    seq.kvReady = true;
    rep.models[r]!.enqueue(seq);
    this.#startStep(r, t);
  }

  /** No attempt left, or nowhere to go: a request never dispatched is refused (the client's 4xx/5xx), one a failure displaced is lost. */
  #giveUp(seq: SimSeq, reason: RejectReason, t: number): void {
    if (this.#req.attempts[seq.id] === 0) this.#reject(seq, reason, t);
    else {
      this.#lost++;
      this.#req.status[seq.id] = STATUS.lost;
      this.#resolve(seq.id, t);
    }
    this.#release(t);
  }

  #reject(seq: SimSeq, reason: RejectReason, t: number): void {
    this.#rejected[reason]++;
    this.#req.status[seq.id] = STATUS.rejected;
    this.#resolve(seq.id, t);
  }

  /** Request i ended (answered, refused or lost) at t: a closed-loop client sends its next one after its pause. */
  #resolve(i: number, t: number): void {
    this.#resolved++;
    const next = this.#followers?.[i] ?? -1;
    if (next >= 0) this.#events.push(t + this.#trace.sessions!.thinkMs[next]!, ARRIVE, next);
  }

  // --- replicas

  /** Starts replica r's next pass if it is idle and has work, and refreshes what the router sees of it. */
  #startStep(r: number, now: number): void {
    const rep = this.#rep;
    const model = rep.models[r]!;
    if (!model.stepping && rep.up[r] === 1) {
      const ms = model.beginStep(now);
      if (ms >= 0) {
        rep.stepDue[r] = now + ms;
        this.#events.push(now + ms, STEP_END, r);
      }
    }
    rep.active[r] = model.active;
    rep.queued[r] = model.queued;
  }

  #stepEnd(r: number, t: number): void {
    const rep = this.#rep;
    rep.stepDue[r] = NaN;
    const model = rep.models[r]!;
    const before = model.outputTokens;
    model.endStep(t);
    const produced = model.outputTokens - before;
    if (produced > 0) {
      const b = Math.floor(t / this.#bucketMs);
      const out = this.#timeline.outputTokens;
      while (out.length <= b) out.push(0);
      out[b]! += produced;
    }
    // The replica starts its next pass before the answers it finished are
    // released, as the live engine does: their places at the front door go
    // to requests that find this pass already under way.
    this.#startStep(r, t);
    const handed = this.#handed;
    for (let j = 0; j < handed.length; j++) this.#handoff(handed[j]!, r, t);
    handed.length = 0;
    for (const seq of this.#finished.splice(0)) this.#finish(seq, r, t);
  }

  #finish(seq: SimSeq, r: number, t: number): void {
    const req = this.#req;
    this.#routers.ended(this.#instanceOf[seq.id]!, r);
    req.finishMs[seq.id] = t;
    req.cachedTokens[seq.id] = seq.cachedTokens;
    req.status[seq.id] = STATUS.done;
    this.#resolve(seq.id, t);
    this.#rep.health[r]!.succeeded();
    const b = Math.floor(t / this.#bucketMs);
    const completed = this.#timeline.completed;
    while (completed.length <= b) completed.push(0);
    completed[b]!++;
    this.#release(t);
  }

  #fail(r: number, now: number): void {
    const rep = this.#rep;
    if (rep.up[r] === 0) return;
    if (rep.serving(r)) rep.servingSlots -= rep.slots[r]!;
    rep.up[r] = 0;
    rep.downCount++;
    rep.downSince[r] = now;
    rep.failures[r]!++;
    rep.stepDue[r] = NaN;
    rep.health[r]!.observe(false);
    const displaced = rep.models[r]!.failAll();
    this.#routers.removeReplica(r); // a failed replica's cache is gone
    rep.active[r] = 0;
    rep.queued[r] = 0;
    // Every request on it hears of the failure before any routes again, as
    // the dispatcher's attempts settle before their requests pick anew.
    for (const seq of displaced) this.#displaced(seq, r);
    for (const seq of displaced) this.#reroute(seq, now);
  }

  /** `seq` lost its place (and its KV) on replica r: the router and the breaker hear of it, and it prefills again. */
  #displaced(seq: SimSeq, r: number): void {
    this.#routers.ended(this.#instanceOf[seq.id]!, r);
    this.#rep.health[r]!.failed();
    let failed = this.#req.failed.get(seq.id);
    if (failed === undefined) this.#req.failed.set(seq.id, (failed = new Set()));
    failed.add(r);
    seq.kvReady = false;
    if (this.#fleet.disaggregated === true) this.#req.stage[seq.id] = ROLE_PREFILL;
  }

  /** A displaced request routes again, within its attempt budget; past it, it is lost. */
  #reroute(seq: SimSeq, now: number): void {
    if (this.#req.attempts[seq.id]! >= this.#budget) {
      this.#giveUp(seq, "no_ready_replica", now);
      return;
    }
    this.#req.retries[seq.id]!++;
    this.#totalRetries++;
    this.#pick(seq, now);
  }

  #scheduleRepair(r: number, at: number): void {
    this.#rep.repairAt[r] = at;
    this.#events.push(at, REPAIR, r);
  }

  #repair(r: number, now: number): void {
    const rep = this.#rep;
    if (rep.up[r] === 1 || rep.member[r] === 0) return;
    rep.up[r] = 1;
    rep.downCount--;
    if (rep.serving(r)) rep.servingSlots += rep.slots[r]!;
    rep.downMs[r]! += now - rep.downSince[r]!;
    rep.repairAt[r] = NaN;
    const mtbf = this.#fleet.failures?.mtbfMs;
    if (mtbf !== undefined) {
      rep.failAt[r] = now + exponential(this.#failRandom, mtbf);
      this.#events.push(rep.failAt[r]!, FAIL, r);
    }
    rep.health[r]!.observe(true); // a new process: its breaker closes (the gateway sees it at its next look)
  }

  // --- membership (a replica added, removed, or replaced: live membership's rules)

  /** Replica r joins: up, serving, with an empty cache. */
  #join(r: number, now: number): void {
    const rep = this.#rep;
    if (rep.member[r] === 1) return;
    rep.member[r] = 1;
    rep.up[r] = 1;
    rep.joinedAt[r] = now;
    if (rep.health[r]!.phase === "removed") rep.health[r] = new ReplicaHealth(this.#clock); // joining again: a new process
    rep.health[r]!.observe(true);
    if (rep.serving(r)) rep.servingSlots += rep.slots[r]!;
    const mtbf = this.#fleet.failures?.mtbfMs;
    if (mtbf !== undefined) {
      rep.failAt[r] = now + exponential(this.#failRandom, mtbf);
      this.#events.push(rep.failAt[r]!, FAIL, r);
    }
  }

  /**
   * Replica r leaves: no new request from now on, no further failure or
   * repair; its running requests get `waitMs` to finish, then the rest
   * resume elsewhere. One down for repair has nothing running and leaves at once.
   */
  #leave(c: MembershipChange, now: number): void {
    const rep = this.#rep;
    const r = c.replica;
    if (rep.member[r] === 0 || rep.health[r]!.phase === "removed") return;
    if (rep.serving(r)) rep.servingSlots -= rep.slots[r]!;
    rep.health[r]!.phase = "removed";
    rep.failAt[r] = NaN;
    rep.repairAt[r] = NaN;
    if (rep.up[r] === 1) {
      this.#events.push(now + c.waitMs, EVICT, r);
      return;
    }
    rep.downMs[r]! += now - rep.downSince[r]!;
    rep.downCount--;
    rep.left(r, now);
  }

  /** The end of a removed replica's wait: what still runs there moves on, resuming after what it already generated. */
  #evict(r: number, now: number): void {
    const rep = this.#rep;
    if (rep.member[r] === 0) return;
    rep.left(r, now);
    if (rep.up[r] === 0) {
      // It failed while draining: its down time ends with its membership.
      rep.downMs[r]! += now - rep.downSince[r]!;
      rep.downCount--;
    }
    rep.up[r] = 0;
    rep.stepDue[r] = NaN;
    const displaced = rep.models[r]!.failAll();
    this.#routers.removeReplica(r);
    rep.active[r] = 0;
    rep.queued[r] = 0;
    for (const seq of displaced) this.#displaced(seq, r);
    for (const seq of displaced) this.#reroute(seq, now);
  }

  // --- autoscaling (scheduler/autoscale.ts decides; the live gateway runs the same decision)

  /**
   * Island k's autoscaler looks at the work on its replicas (and, in a
   * fleet of several islands, its share of the front door's queue by
   * serving slots), then orders replicas (serving after the provisioning
   * delay, paid from the order), cancels orders, or removes the least
   * loaded serving replicas, which drain as a removed member does.
   */
  #autoscale(k: number, now: number): void {
    const rep = this.#rep;
    const isl = this.#fleet.islands[k]!;
    const a = isl.autoscale!;
    const scaler = this.#scalers[k]!;
    const serving: number[] = [];
    const ordered: number[] = [];
    const idle: number[] = [];
    let running = 0;
    let waiting = 0;
    for (let r = isl.firstReplica; r < isl.firstReplica + isl.count; r++) {
      running += rep.active[r]!;
      waiting += rep.queued[r]! + rep.incoming[r]!;
      if (!Number.isNaN(rep.orderedAt[r]!)) ordered.push(r);
      else if (rep.member[r] === 0) idle.push(r);
      else if (rep.serving(r)) serving.push(r);
    }
    scaler.share = this.#slotShare(isl);
    waiting += scaler.share * (this.#lane.queue.size + this.#req.waiting.size);
    const desired = scaler.autoscaler.desired(now, { running, waiting, slotsPerReplica: isl.maxBatch, ...(scaler.replicaRps === undefined ? {} : { replicaRps: scaler.replicaRps }) });
    const act = scalingActions(desired, serving.length, ordered.length);
    for (const r of idle.slice(0, act.order)) {
      rep.orderedAt[r] = now;
      this.#events.push(now + a.settings.provisioningMs, PROVISIONED, r);
    }
    for (const r of ordered.slice(ordered.length - act.cancel)) {
      rep.memberTotal[r]! += now - rep.orderedAt[r]!; // paid while it loaded
      rep.orderedAt[r] = NaN;
    }
    const leastLoaded = serving.sort((x, y) => rep.active[x]! + rep.queued[x]! - (rep.active[y]! + rep.queued[y]!) || y - x);
    for (const r of leastLoaded.slice(0, act.remove)) this.#leave({ replica: r, atMs: now, change: "remove", waitMs: a.removeWaitMs }, now);
    this.#events.push(now + a.intervalMs, AUTOSCALE, k);
  }

  /** The island's share of the fleet's serving slots (1 with none serving anywhere: it is all there is to scale). */
  #slotShare(isl: SimIsland): number {
    const rep = this.#rep;
    if (rep.servingSlots === 0) return 1;
    let slots = 0;
    for (let r = isl.firstReplica; r < isl.firstReplica + isl.count; r++) if (rep.serving(r)) slots += rep.slots[r]!;
    return slots / rep.servingSlots;
  }

  // --- results

  #recordBoundaries(now: number): void {
    const rep = this.#rep;
    const timeline = this.#timeline;
    while (now >= this.#nextBoundary) {
      let queued = this.#req.waiting.size + this.#lane.queue.size;
      let running = 0;
      for (let r = 0; r < this.#n; r++) {
        queued += rep.queued[r]! + rep.incoming[r]!;
        running += rep.active[r]!;
      }
      timeline.queued.push(queued);
      timeline.running.push(running);
      timeline.down.push(rep.downCount);
      let members = 0;
      for (let r = 0; r < this.#n; r++) if (rep.member[r] === 1 || !Number.isNaN(rep.orderedAt[r]!)) members++;
      timeline.members.push(members);
      this.#nextBoundary += this.#bucketMs;
    }
  }

  #kvTransferResult(): SimKvTransfer {
    const x = this.#transfers;
    return { link: this.#fleet.kvTransfer?.link ?? "rdma-400g", linkName: x.linkName, transfers: x.count, bytes: x.bytes, joules: x.joules, ms: x.ms.slice(0, x.count) };
  }

  #result(now: number, events: number, wallMs: number): SimResult {
    this.#recordBoundaries(now);
    const rep = this.#rep;
    const req = this.#req;
    for (let r = 0; r < this.#n; r++) if (rep.up[r] === 0 && rep.member[r] === 1) rep.downMs[r]! += now - rep.downSince[r]!;
    const timeline = this.#timeline;
    const nb = timeline.queued.length;
    while (timeline.outputTokens.length < nb) timeline.outputTokens.push(0);
    while (timeline.completed.length < nb) timeline.completed.push(0);
    return {
      fleet: this.#fleet,
      trace: this.#trace,
      policy: this.#policy.name,
      requests: { arrivalMs: req.arrivalMs, firstTokenMs: req.firstTokenMs, finishMs: req.finishMs, replica: req.replica, retries: req.retries, cachedTokens: req.cachedTokens, status: req.status },
      replicas: rep.models.map((m, r) => ({ name: rep.names[r]!, island: rep.islandOf[r]!.name, counters: { ...m.counters }, failures: rep.failures[r]!, downMs: rep.downMs[r]!, memberMs: memberMs(rep, r, now) })),
      timeline,
      ...(this.#fleet.disaggregated === true ? { kvTransfer: this.#kvTransferResult() } : {}),
      admission: { queued: this.#admissionQueued, maxWaitMs: this.#admissionMaxWaitMs },
      rejected: this.#rejected,
      retries: this.#totalRetries,
      lost: this.#lost,
      unfinished: this.#trace.count - this.#resolved,
      endMs: now,
      events,
      decisions: this.#decisions,
      decisionMs: this.#decisionMs,
      wallMs,
    };
  }
}

const NO_BLOCKS = new Int32Array(0);

/** The blocks a stage's routing sees: a decode replica keeps transferred KV private, so prefixes matter only where prompts are computed. */
function stageBlocks(seq: SimSeq, stage: number): ArrayLike<number> {
  return stage === ROLE_DECODE ? NO_BLOCKS : blocksOf(seq);
}

/** A request's prefix blocks as a view of the trace's columns (no copy). */
function blocksOf(seq: SimSeq): ArrayLike<number> {
  if (seq.blockEnd <= seq.blockStart) return NO_BLOCKS;
  const b = seq.blocks;
  if (b instanceof Int32Array) return b.subarray(seq.blockStart, seq.blockEnd);
  return Array.prototype.slice.call(b, seq.blockStart, seq.blockEnd) as number[];
}

/** Replica r's time in the fleet up to `end`: each stay from joining (or being ordered) to leaving; 0 if it never joined. */
function memberMs(rep: Replicas, r: number, end: number): number {
  const ordered = rep.orderedAt[r]!;
  const now = rep.member[r] === 1 ? end - rep.joinedAt[r]! : Number.isNaN(ordered) ? 0 : end - ordered;
  return rep.memberTotal[r]! + Math.max(0, now);
}

/** Each request's follower in the trace's closed-loop sessions, checked: a request follows an earlier one, and at most one follows it. */
function followersOf(trace: Trace): Int32Array | undefined {
  const sessions = trace.sessions;
  if (sessions === undefined) return undefined;
  if (sessions.follows.length !== trace.count || sessions.thinkMs.length !== trace.count) throw new RangeError("trace sessions must give follows and thinkMs for every request");
  const followers = new Int32Array(trace.count).fill(-1);
  sessions.follows.forEach((j, i) => {
    if (j < 0) return;
    if (j >= i) throw new RangeError(`request ${i} follows request ${j}, which is not earlier in the trace`);
    if (followers[j] !== -1) throw new RangeError(`requests ${followers[j]} and ${i} both follow request ${j}`);
    if (!(sessions.thinkMs[i]! >= 0)) throw new RangeError(`request ${i}'s pause must be >= 0 ms, got ${sessions.thinkMs[i]}`);
    followers[j] = i;
  });
  return followers;
}
