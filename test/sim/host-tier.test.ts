import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { findHardware, findModel, findPrecision, makeEnergyProfile, makePerfProfile, prefillMs } from "../../src/hardware/index.js";
import { DEFAULT_HOST_KV_GB, FleetFileError, resolveSimFleet } from "../../src/sim/fleet-file.js";
import { BlockLru } from "../../src/sim/lru.js";
import { prefixAware } from "../../src/scheduler/policies.js";
import { seededRandom } from "../../src/sim/random.js";
import { DEFAULT_HOST_LINK_GBS, ReplicaModel, SimSeq, hostTransfer, type ReplicaParams } from "../../src/sim/replica.js";
import { buildReport } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import { loadTrace, spreadTies } from "../../src/sim/traces.js";
import { MOONCAKE, close, drain, fleetOf, tinyTrace, TRACES_ABSENT } from "./fixtures.js";

const hw = findHardware("h100");
const precision = findPrecision("bf16");
const profile = makePerfProfile(findModel("llama-3.1-8b"), hw, precision);
const energy = makeEnergyProfile(profile, hw, precision);
const BS = 512;
/** Room for four blocks and a little private KV (the generated tokens). */
const FOUR_BLOCKS = 4 * BS + 64;

function replica(over: Partial<ReplicaParams> = {}): { r: ReplicaModel; first: Map<number, number> } {
  const first = new Map<number, number>();
  const r = new ReplicaModel({ profile, energy, maxBatch: 256, kvCapacityTokens: FOUR_BLOCKS, ...over }, { firstToken: (s, now) => first.set(s.id, now), finished: () => undefined });
  return { r, first };
}

/** Runs one request alone from `now` until the replica is idle; returns the end time. */
function serve(r: ReplicaModel, seq: SimSeq, now: number): number {
  r.enqueue(seq);
  return drain(r, now);
}

describe("host-memory KV tier", () => {
  it("a block evicted from HBM is served from host memory: a host hit, TTFT = load + the uncached token, less than recomputing", () => {
    const { r, first } = replica({ hostKvTokens: 100 * BS });
    let now = serve(r, new SimSeq(0, 4 * BS, 1, [1, 2, 3, 4]), 0);
    now = serve(r, new SimSeq(1, 4 * BS, 1, [5, 6, 7, 8]), now); // HBM holds four blocks: 1-4 go to host memory
    assert.equal(r.cachedBlock(1) && r.hostBlock(1), true);
    assert.equal(r.counters.hostStores, 4);
    const arrival = now + 1000;
    serve(r, new SimSeq(2, 4 * BS, 1, [1, 2, 3, 4]), arrival);
    const c = r.counters;
    assert.equal(c.blockHits, 4);
    assert.equal(c.hostBlockHits, 4);
    const load = hostTransfer(profile, energy, BS, DEFAULT_HOST_LINK_GBS).loadMs;
    close(c.hostLoadMs, 4 * load, "load time");
    const ttft = first.get(2)! - arrival;
    close(ttft, 4 * load + prefillMs(profile, 1, 4 * BS - 1), "TTFT");
    assert.ok(ttft < prefillMs(profile, 4 * BS) / 3, `TTFT ${ttft} vs recompute ${prefillMs(profile, 4 * BS)}`);
    // A block of the 8B model in BF16 is 64 MiB (128 KiB a token): about 1.3 ms at 50 GB/s.
    close(load, (BS * 131_072) / 50e6, "one block's load");
  });

  it("with no host tier, the same requests recompute (the HBM-only counts)", () => {
    const { r } = replica({ hostKvTokens: 0 });
    let now = serve(r, new SimSeq(0, 4 * BS, 1, [1, 2, 3, 4]), 0);
    now = serve(r, new SimSeq(1, 4 * BS, 1, [5, 6, 7, 8]), now);
    serve(r, new SimSeq(2, 4 * BS, 1, [1, 2, 3, 4]), now);
    const c = r.counters;
    assert.deepEqual([c.blockRefs, c.blockHits, c.hostBlockHits, c.hostStores, c.hostLoadMs], [12, 0, 0, 0, 0]);
    assert.equal(r.hostCapacityBlocks, 0);
  });

  it("the host LRU evicts its least recently used block; a load counts as a use", () => {
    const { r } = replica({ kvCapacityTokens: BS + 64, hostKvTokens: 2 * BS });
    let now = 0;
    for (const [id, block] of [[0, 1], [1, 2], [2, 3], [3, 4]] as const) now = serve(r, new SimSeq(id, BS, 1, [block]), now);
    // HBM holds 4; host memory got 1, 2, 3 in that order and, holding two, let 1 go.
    assert.deepEqual([1, 2, 3, 4].map((b) => r.hostBlock(b)), [false, true, true, false]);
    now = serve(r, new SimSeq(4, BS, 1, [2]), now); // loads 2 (now the youngest there); HBM evicts 4 to host memory, which lets 3 go
    assert.deepEqual([1, 2, 3, 4].map((b) => r.hostBlock(b)), [false, true, false, true]);
    assert.equal(r.counters.hostBlockHits, 1);
    assert.equal(r.hostBlocks, 2);
  });

  it("a load makes its pass longer and costs energy; a device failure loses the host tier", () => {
    const run = (hostKvTokens: number): ReplicaModel => {
      const { r } = replica({ hostKvTokens });
      let now = serve(r, new SimSeq(0, 4 * BS, 1, [1, 2, 3, 4]), 0);
      now = serve(r, new SimSeq(1, 4 * BS, 1, [5, 6, 7, 8]), now);
      serve(r, new SimSeq(2, 4 * BS, 1, [1, 2, 3, 4]), now);
      return r;
    };
    const withHost = run(100 * BS);
    const without = run(0);
    assert.ok(withHost.counters.busyMs < without.counters.busyMs, "loading beats recomputing");
    const t = hostTransfer(profile, energy, BS, DEFAULT_HOST_LINK_GBS);
    assert.ok(t.loadJoules > t.storeJoules && t.storeJoules > 0);
    withHost.failAll();
    assert.equal(withHost.hostBlocks, 0);
  });

  it("prefixHits and cachedBlock count both tiers", () => {
    const { r } = replica({ hostKvTokens: 100 * BS });
    const now = serve(r, new SimSeq(0, 4 * BS, 1, [1, 2, 3, 4]), 0);
    serve(r, new SimSeq(1, 2 * BS, 1, [1, 9]), now); // 1 is a hit; room for 9 comes from the oldest cached block, 2
    assert.deepEqual([r.hostBlock(2), r.cachedBlock(2), r.hostBlock(3)], [true, true, false]);
    assert.equal(r.prefixHits([1, 2, 3, 4, 5]), 4, "the chain runs across both tiers");
    assert.equal(r.prefixHits([7]), 0);
  });

  it("rejects a negative host capacity and a non-positive link", () => {
    assert.throws(() => replica({ hostKvTokens: -1 }), /host KV capacity/);
    assert.throws(() => replica({ hostLinkGBs: 0 }), /host link/);
  });
});

describe("host tier in the fleet file and the simulation", () => {
  it("defaults to 256 GB a GPU at 50 GB/s; the tier holds a device's GB over a device's KV bytes per token", () => {
    const f = resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-70b", precision: "fp8", tp: 2 }] });
    const isl = f.islands[0]!;
    assert.equal(DEFAULT_HOST_KV_GB, 256);
    assert.equal(isl.hostLinkGBs, DEFAULT_HOST_LINK_GBS);
    assert.equal(isl.profile.kvBytesPerToken, 81_920); // 80 layers x 8 KV heads x 128 x 2 (K, V) x 1 byte, over 2 devices
    assert.equal(isl.hostKvTokens, Math.floor(256e9 / 81_920));
    const off = resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", host_kv_gb: 0, host_link_gb_s: 25 }] }).islands[0]!;
    assert.deepEqual([off.hostKvTokens, off.hostLinkGBs], [0, 25]);
  });

  it("names bad host-tier values by their path", () => {
    const bad = (over: Record<string, unknown>): string => {
      try {
        resolveSimFleet({ islands: [{ hardware: "h100", count: 1, model: "llama-3.1-8b", ...over }] });
      } catch (err) {
        assert.ok(err instanceof FleetFileError);
        return err.message;
      }
      assert.fail("accepted");
    };
    assert.match(bad({ host_kv_gb: -1 }), /islands\.0\.host_kv_gb: .*>=\s*0/);
    assert.match(bad({ host_kv_gb: "lots" }), /islands\.0\.host_kv_gb: .*number/);
    assert.match(bad({ host_link_gb_s: 0 }), /islands\.0\.host_link_gb_s: .*>\s*0/);
    assert.match(bad({ host_link_gbps: 50 }), /host_link_gbps/);
  });

  it("a replica's evicted prefix comes back from host memory in a simulation, and the report counts it apart", () => {
    const trace = tinyTrace([
      [0, 4 * BS, 1, [1, 2, 3, 4]],
      [10_000, 4 * BS, 1, [5, 6, 7, 8]],
      [20_000, 4 * BS, 1, [1, 2, 3, 4]],
    ]);
    const report = buildReport(simulate({ fleet: fleetOf(1), trace, kvCapacityTokens: FOUR_BLOCKS }));
    assert.deepEqual([report.cache.blockRefs, report.cache.blockHits, report.cache.hostBlockHits, report.cache.hostStores], [12, 4, 4, 8]); // 1-4 went to host memory, then 5-8 to make room for them
    assert.deepEqual([report.cache.hitRate, report.cache.hbmHitRate, report.cache.hostHitRate], [4 / 12, 0, 4 / 12]);
    const off = buildReport(simulate({ fleet: fleetOf(1, { host_kv_gb: 0 }), trace, kvCapacityTokens: FOUR_BLOCKS }));
    assert.equal(off.cache.blockHits, 0);
  });

  it("host_kv_gb 0 reproduces the HBM-only simulation exactly (Mooncake, 8 x 70B TP2, prefix-aware)", { skip: TRACES_ABSENT }, async () => {
    const trace = await loadTrace(MOONCAKE);
    const fleet = resolveSimFleet({ islands: [{ hardware: "h100", count: 8, model: "llama-3.1-70b", precision: "fp8", tp: 2, host_kv_gb: 0 }], router: { policy: "prefix-aware" } });
    // prefix-aware as it was then, before its minMatch threshold.
    const r = simulate({ fleet, trace, policy: prefixAware({ minMatch: 0 }) });
    const report = buildReport(r);
    // The figures of the simulator before the host tier existed.
    assert.deepEqual([report.cache.blockRefs, report.cache.blockHits, r.events, report.goodput.requests], [288_500, 48_818, 742_165, 8_402]);
    assert.equal(report.cache.hostBlockHits, 0);
  });
});

describe("BlockLru against a reference", () => {
  it("matches a Map-ordered LRU over random operations", () => {
    const random = seededRandom(3);
    for (const capacity of [0, 1, 5, 64, Infinity]) {
      const lru = new BlockLru(capacity);
      const ref: number[] = []; // oldest first
      for (let i = 0; i < 5000; i++) {
        const h = Math.floor(random() * 100);
        const op = random();
        if (op < 0.5) {
          const at = ref.indexOf(h);
          if (at >= 0) ref.splice(at, 1);
          ref.push(h);
          let evicted = 0;
          while (ref.length > capacity) {
            ref.shift();
            evicted++;
          }
          assert.equal(lru.insert(h), evicted);
        } else if (op < 0.7) {
          const at = ref.indexOf(h);
          if (at >= 0) ref.push(...ref.splice(at, 1));
          assert.equal(lru.touch(h), at >= 0);
        } else if (op < 0.85) {
          const at = ref.indexOf(h);
          if (at >= 0) ref.splice(at, 1);
          assert.equal(lru.delete(h), at >= 0);
        } else {
          assert.equal(lru.evictOldest(), ref.shift());
        }
        assert.equal(lru.size, ref.length);
      }
      assert.deepEqual([...lru.keys()], ref);
      lru.clear();
      assert.deepEqual([lru.size, [...lru.keys()]], [0, []]);
    }
  });
});

describe("spreadTies", () => {
  it("spreads equal timestamps over the gap to the next, keeping order; leaves distinct ones alone", () => {
    const trace = tinyTrace([
      [0, 10, 1],
      [0, 10, 1],
      [0, 10, 1],
      [3000, 10, 1],
      [6000, 10, 1],
      [6000, 10, 1],
    ]);
    const s = spreadTies(trace, seededRandom(1));
    const a = [...s.arrivalMs];
    for (let i = 1; i < a.length; i++) assert.ok(a[i]! >= a[i - 1]!, "order kept");
    assert.ok(a.slice(0, 3).every((t) => t >= 0 && t < 3000));
    assert.ok(a[3]! >= 3000 && a[3]! < 6000);
    assert.ok(a.slice(4).every((t) => t >= 6000 && t < 9000), "the last run spreads over the median gap");
    assert.deepEqual([...spreadTies(s, seededRandom(1)).arrivalMs], a, "no ties: unchanged");
    assert.deepEqual([...spreadTies(trace, seededRandom(1)).arrivalMs], a, "seeded");
  });
});
