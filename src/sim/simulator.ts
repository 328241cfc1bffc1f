/**
 * The discrete-event loop: the production router (`route()` from
 * scheduler/pipeline.ts, with the same Policy objects and the same Candidate
 * shape the live dispatcher builds) over simulated replicas in virtual time.
 *
 * Events are replica step ends, device failures and repairs, and retries of
 * requests a failure displaced; arrivals are read from the trace in order
 * rather than queued. One event advances a whole batch by one forward pass,
 * so the cost of a run is the number of passes, not of tokens times Promises.
 */
import { ManualClock } from "../core/clock.js";
import type { Candidate, Policy, RejectReason, RouteRequest } from "../scheduler/pipeline.js";
import { route } from "../scheduler/pipeline.js";
import { CandidateSelector } from "../scheduler/candidates.js";
import { routeConstants, type RouteConstants } from "../scheduler/constants.js";
import { PrefixIndex } from "../scheduler/prefix-index.js";
import { EventQueue } from "./events.js";
import type { SimFleet, SimIsland } from "./fleet-file.js";
import { exponential, seededRandom } from "./random.js";
import type { ReplicaCounters, ReplicaListener } from "./replica.js";
import { ReplicaModel, SimSeq } from "./replica.js";
import type { Trace } from "./traces.js";

/** The routing function the simulator calls: the gateway's own (a test checks they are one). */
export { route as schedulerRoute };

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
}

/** Request outcome codes in `SimResult.requests.status`. */
export const STATUS = { pending: 0, done: 1, rejected: 2, lost: 3 } as const;

export interface SimReplicaResult {
  readonly name: string;
  readonly island: string;
  readonly counters: Readonly<ReplicaCounters>;
  readonly failures: number;
  readonly downMs: number;
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
}

export interface SimResult {
  readonly fleet: SimFleet;
  readonly trace: Trace;
  readonly policy: string;
  readonly requests: {
    readonly firstTokenMs: Float64Array;
    readonly finishMs: Float64Array;
    readonly replica: Int32Array;
    readonly retries: Int32Array;
    readonly cachedTokens: Int32Array;
    readonly status: Uint8Array;
  };
  readonly replicas: readonly SimReplicaResult[];
  readonly timeline: SimTimeline;
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

const STEP_END = 0;
const FAIL = 1;
const REPAIR = 2;
const RETRY = 3;
const SCHEDULED_FAIL = 4;

type MutableCandidate = { -readonly [K in keyof Candidate]: Candidate[K] };

function niceBucket(spanMs: number, buckets: number): number {
  const raw = Math.max(spanMs, 1000) / buckets;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/** Runs a trace through a fleet; synchronous, deterministic for a given seed. */
export function simulate(opts: SimulateOptions): SimResult {
  const wallStart = performance.now();
  const { fleet, trace } = opts;
  const policy = opts.policy ?? fleet.policy;
  const n = fleet.replicaCount;
  const total = trace.count;
  const clock = new ManualClock();
  const random = seededRandom(fleet.seed);
  const failRandom = seededRandom(fleet.seed ^ 0x5bd1e995);

  // --- per-request results
  const firstTokenMs = new Float64Array(total).fill(NaN);
  const finishMs = new Float64Array(total).fill(NaN);
  const reqReplica = new Int32Array(total).fill(-1);
  const retries = new Int32Array(total);
  const cachedTokens = new Int32Array(total);
  const status = new Uint8Array(total);
  let resolved = 0;
  let parked = 0;
  const parkedSeqs = new Map<number, SimSeq>();
  const rejected: Record<RejectReason, number> = { no_ready_replica: 0, context_length_exceeded: 0, overloaded: 0 };
  let lost = 0;
  let totalRetries = 0;

  // --- timeline
  const lastArrival = total > 0 ? trace.arrivalMs[total - 1]! : 0;
  const bucketMs = niceBucket(lastArrival, opts.timelineBuckets ?? 240);
  const timeline: SimTimeline = { bucketMs, outputTokens: [], completed: [], queued: [], running: [], down: [] };
  let nextBoundary = 0;

  // --- replicas
  const listener: ReplicaListener = {
    firstToken(seq, now) {
      firstTokenMs[seq.id] = now;
    },
    finished(seq, now) {
      finishMs[seq.id] = now;
      cachedTokens[seq.id] = seq.cachedTokens;
      status[seq.id] = STATUS.done;
      resolved++;
      const b = Math.floor(now / bucketMs);
      while (timeline.completed.length <= b) timeline.completed.push(0);
      timeline.completed[b]!++;
    },
  };
  const replicas: ReplicaModel[] = [];
  const islandOf: SimIsland[] = [];
  const names: string[] = [];
  for (const isl of fleet.islands) {
    for (let j = 0; j < isl.count; j++) {
      replicas.push(
        new ReplicaModel(
          {
            profile: isl.profile,
            energy: isl.energy,
            maxBatch: isl.maxBatch,
            kvCapacityTokens: opts.kvCapacityTokens ?? isl.profile.kvCapacityTokens,
            hostKvTokens: opts.hostKvTokens ?? isl.hostKvTokens,
            hostLinkGBs: isl.hostLinkGBs,
            blockTokens: fleet.blockTokens,
            chunkedPrefill: fleet.chunkedPrefill,
            ...(fleet.stepTokens !== undefined ? { stepTokens: fleet.stepTokens } : {}),
          },
          listener,
        ),
      );
      islandOf.push(isl);
      names.push(`${isl.name}/${j}`);
    }
  }
  if (trace.blockTokens !== 0 && trace.blockTokens !== fleet.blockTokens) {
    throw new RangeError(`the trace's prefix blocks are ${trace.blockTokens} tokens but the fleet's cache blocks are ${fleet.blockTokens}; set engine.block_tokens to ${trace.blockTokens}`);
  }
  // What the router reads, in flat arrays: a decision touches k entries of these,
  // not k replica objects scattered over the heap.
  const up = new Uint8Array(n).fill(1);
  const activeOf = new Int32Array(n);
  const queuedOf = new Int32Array(n);
  const slotsOf = new Int32Array(n);
  const maxQueueOf = new Int32Array(n);
  const contextOf = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    const isl = islandOf[r]!;
    slotsOf[r] = isl.maxBatch;
    maxQueueOf[r] = isl.maxQueue;
    contextOf[r] = isl.contextSize;
  }
  const stepDue = new Float64Array(n).fill(NaN);
  const failAt = new Float64Array(n).fill(NaN);
  const repairAt = new Float64Array(n).fill(NaN);
  const downSince = new Float64Array(n);
  const downMs = new Float64Array(n);
  const failures = new Int32Array(n);
  let downCount = 0;

  const events = new EventQueue(Math.min(1 << 20, 2 * n + 64));

  // --- routing: the production candidate selection (prefix holders + a
  // power-of-d sample) over the router's approximate prefix index, as the
  // live gateway keeps it; not the simulated caches' exact state.
  const selector = new CandidateSelector({ sample: Math.min(n, fleet.sample) });
  const prefixIndex = new PrefixIndex();
  const constantsOf = new Map<SimIsland, RouteConstants>();
  for (let r = 0; r < n; r++) {
    const isl = islandOf[r]!;
    // Both tiers are hits, so the router remembers as many blocks per replica as HBM and host memory hold together.
    const rep = replicas[r]!;
    prefixIndex.setCapacity(r, Math.max(1, Math.floor(rep.kvCapacityTokens / fleet.blockTokens) + rep.hostCapacityBlocks));
    if (!constantsOf.has(isl)) constantsOf.set(isl, routeConstants(isl.profile, isl.energy, { usdPerHour: isl.usdPerHour }));
  }
  const pool: MutableCandidate[] = [];
  for (let j = 0; j < selector.capacity; j++) pool.push({ index: 0, ready: true, active: 0, queued: 0, slots: 1, maxQueue: 0, contextSize: undefined });
  const candidates: MutableCandidate[] = [];
  let decisions = 0;
  let decisionMs = 0;

  /** Starts replica r's next pass if it is idle and has work, and refreshes what the router sees of it. */
  const startStep = (r: number, now: number): void => {
    const rep = replicas[r]!;
    if (!rep.stepping && up[r] === 1) {
      const ms = rep.beginStep(now);
      if (ms >= 0) {
        const due = now + ms;
        stepDue[r] = due;
        events.push(due, STEP_END, r);
      }
    }
    activeOf[r] = rep.active;
    queuedOf[r] = rep.queued;
  };

  /** One routing decision; returns the replica index or the reason none could take it. */
  const decide = (seq: SimSeq): number | RejectReason => {
    const t0 = performance.now();
    const blocks = blocksOf(seq);
    const m = selector.select(n, random, blocks, prefixIndex);
    candidates.length = m;
    for (let j = 0; j < m; j++) {
      const r = selector.indices[j]!;
      const c = pool[j]!;
      const k = constantsOf.get(islandOf[r]!)!;
      c.index = r;
      c.ready = up[r] === 1;
      c.active = activeOf[r]!;
      c.queued = queuedOf[r]!;
      c.slots = slotsOf[r]!;
      c.maxQueue = maxQueueOf[r]!;
      c.contextSize = contextOf[r]!;
      c.prefixBlocks = selector.prefixBlocks[j]!;
      c.prefillMsPerToken = k.prefillMsPerToken;
      c.usdPerMTok = k.usdPerMTok;
      c.joulesPerToken = k.joulesPerToken;
      c.kvCapacityTokens = k.kvCapacityTokens;
      candidates[j] = c;
    }
    const request: RouteRequest = {
      promptTokens: seq.input + seq.generated,
      maxTokens: seq.output - seq.generated,
      blocks,
      blockTokens: fleet.blockTokens,
      ttftSloMs: fleet.slo.ttftMs,
    };
    const outcome = route(policy, request, candidates, random);
    if (outcome.ok && blocks.length > 0) prefixIndex.record(outcome.index, blocks);
    decisions++;
    decisionMs += performance.now() - t0;
    return outcome.ok ? outcome.index : outcome.reason;
  };

  const dispatch = (seq: SimSeq, now: number, displaced: boolean): void => {
    const choice = decide(seq);
    if (typeof choice === "number") {
      reqReplica[seq.id] = choice;
      replicas[choice]!.enqueue(seq);
      startStep(choice, now);
      return;
    }
    if (!displaced) {
      rejected[choice]++;
      status[seq.id] = STATUS.rejected;
      resolved++;
    } else if (choice === "context_length_exceeded") {
      lost++;
      status[seq.id] = STATUS.lost;
      resolved++;
    } else {
      // Displaced by a failure and nowhere to go yet: wait and try again, as a client told Retry-After would.
      parked++;
      parkedSeqs.set(seq.id, seq);
      events.push(now + (fleet.failures?.retryMs ?? 1000), RETRY, seq.id);
    }
  };

  const fail = (r: number, now: number): void => {
    if (up[r] === 0) return;
    up[r] = 0;
    downCount++;
    downSince[r] = now;
    failures[r]!++;
    stepDue[r] = NaN;
    const displaced = replicas[r]!.failAll();
    prefixIndex.removeReplica(r); // a failed replica's cache is gone
    activeOf[r] = 0;
    queuedOf[r] = 0;
    for (const seq of displaced) {
      retries[seq.id]!++;
      totalRetries++;
      dispatch(seq, now, true);
    }
  };

  const repair = (r: number, now: number): void => {
    if (up[r] === 1) return;
    up[r] = 1;
    downCount--;
    downMs[r]! += now - downSince[r]!;
    repairAt[r] = NaN;
    const mtbf = fleet.failures?.mtbfMs;
    if (mtbf !== undefined) {
      failAt[r] = now + exponential(failRandom, mtbf);
      events.push(failAt[r]!, FAIL, r);
    }
  };

  // --- failure processes
  const fp = fleet.failures;
  if (fp !== undefined) {
    if (fp.mtbfMs !== undefined) {
      for (let r = 0; r < n; r++) {
        failAt[r] = exponential(failRandom, fp.mtbfMs);
        events.push(failAt[r]!, FAIL, r);
      }
    }
    fp.schedule.forEach((s, j) => events.push(s.atMs, SCHEDULED_FAIL, j));
  }

  const recordBoundaries = (now: number): void => {
    while (now >= nextBoundary) {
      let queued = parked;
      let running = 0;
      for (let r = 0; r < n; r++) {
        queued += queuedOf[r]!;
        running += activeOf[r]!;
      }
      timeline.queued.push(queued);
      timeline.running.push(running);
      timeline.down.push(downCount);
      nextBoundary += bucketMs;
    }
  };

  // --- the loop
  const until = opts.untilMs ?? Infinity;
  const progressEvery = opts.progressEveryMs ?? 100;
  let lastProgress = wallStart;
  let nextArrival = 0;
  let eventCount = 0;
  let now = 0;
  while (resolved < total) {
    const tHeap = events.peekTime();
    const tArr = nextArrival < total ? trace.arrivalMs[nextArrival]! : Infinity;
    const t = Math.min(tHeap, tArr);
    if (t === Infinity || t > until) break;
    if (t >= nextBoundary) recordBoundaries(t);
    clock.advanceTo(t);
    now = t;
    eventCount++;
    if (tHeap <= tArr) {
      events.pop();
      const kind = events.kind;
      const target = events.target;
      if (kind === STEP_END) {
        if (stepDue[target] !== t) continue; // a step abandoned by a failure
        stepDue[target] = NaN;
        const rep = replicas[target]!;
        const before = rep.outputTokens;
        rep.endStep(t);
        const produced = rep.outputTokens - before;
        if (produced > 0) {
          const b = Math.floor(t / bucketMs);
          while (timeline.outputTokens.length <= b) timeline.outputTokens.push(0);
          timeline.outputTokens[b]! += produced;
        }
        startStep(target, t);
      } else if (kind === FAIL) {
        if (failAt[target] !== t) continue;
        failAt[target] = NaN;
        fail(target, t);
        if (fp !== undefined && up[target] === 0) {
          repairAt[target] = t + exponential(failRandom, fp.repairMs);
          events.push(repairAt[target]!, REPAIR, target);
        }
      } else if (kind === SCHEDULED_FAIL) {
        const s = fp!.schedule[target]!;
        const wasUp = up[s.replica] === 1;
        fail(s.replica, t);
        if (wasUp) {
          failAt[s.replica] = NaN; // the random process resumes after this repair
          repairAt[s.replica] = t + s.downMs;
          events.push(repairAt[s.replica]!, REPAIR, s.replica);
        }
      } else if (kind === REPAIR) {
        if (repairAt[target] !== t) continue;
        repair(target, t);
        startStep(target, t);
      } else if (kind === RETRY) {
        const seq = parkedSeqs.get(target);
        if (seq === undefined) continue;
        parkedSeqs.delete(target);
        parked--;
        dispatch(seq, t, true);
      }
    } else {
      const i = nextArrival++;
      const seq = new SimSeq(i, trace.inputTokens[i]!, trace.outputTokens[i]!, trace.blockIds, trace.blockOffsets[i]!, trace.blockOffsets[i + 1]!);
      dispatch(seq, t, false);
    }
    if ((eventCount & 4095) === 0 && opts.onProgress !== undefined) {
      const w = performance.now();
      if (w - lastProgress >= progressEvery) {
        lastProgress = w;
        opts.onProgress({ resolved, total, simMs: now, events: eventCount, wallMs: w - wallStart });
      }
    }
  }
  recordBoundaries(now);
  for (let r = 0; r < n; r++) if (up[r] === 0) downMs[r]! += now - downSince[r]!;
  const nb = timeline.queued.length;
  while (timeline.outputTokens.length < nb) timeline.outputTokens.push(0);
  while (timeline.completed.length < nb) timeline.completed.push(0);

  const wallMs = performance.now() - wallStart;
  opts.onProgress?.({ resolved, total, simMs: now, events: eventCount, wallMs });
  return {
    fleet,
    trace,
    policy: policy.name,
    requests: { firstTokenMs, finishMs, replica: reqReplica, retries, cachedTokens, status },
    replicas: replicas.map((rep, r) => ({ name: names[r]!, island: islandOf[r]!.name, counters: { ...rep.counters }, failures: failures[r]!, downMs: downMs[r]! })),
    timeline,
    rejected,
    retries: totalRetries,
    lost,
    unfinished: total - resolved,
    endMs: now,
    events: eventCount,
    decisions,
    decisionMs,
    wallMs,
  };
}

const NO_BLOCKS = new Int32Array(0);

/** A request's prefix blocks as a view of the trace's columns (no copy). */
function blocksOf(seq: SimSeq): ArrayLike<number> {
  if (seq.blockEnd <= seq.blockStart) return NO_BLOCKS;
  const b = seq.blocks;
  if (b instanceof Int32Array) return b.subarray(seq.blockStart, seq.blockEnd);
  return Array.prototype.slice.call(b, seq.blockStart, seq.blockEnd) as number[];
}
