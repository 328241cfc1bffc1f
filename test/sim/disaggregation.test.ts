import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeStepMs, kvBytesPerToken, prefillMs } from "../../src/hardware/index.js";
import { FleetFileError, resolveSimFleet, type SimFleet } from "../../src/sim/fleet-file.js";
import { renderSummary } from "../../src/sim/markdown.js";
import { buildReport } from "../../src/sim/report.js";
import { STATUS, simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { close, tinyTrace } from "./fixtures.js";

const MODEL = "llama-3.1-8b";

/** `p` prefill and `d` decode replicas of Llama-3.1-8B on one H100 each. */
function split(p: number, d: number, top: Record<string, unknown> = {}, over: { prefill?: Record<string, unknown>; decode?: Record<string, unknown> } = {}): SimFleet {
  return resolveSimFleet({
    islands: [
      { name: "p", hardware: "h100", model: MODEL, count: p, role: "prefill", ...over.prefill },
      { name: "d", hardware: "h100", model: MODEL, count: d, role: "decode", ...over.decode },
    ],
    ...top,
  });
}

describe("disaggregation: one request by hand", () => {
  it("TTFT is the prefill island's prefill; TPOT carries the KV transfer (latency + bytes / bandwidth) and the decode steps", () => {
    const fleet = split(1, 1);
    const trace = tinyTrace([[100, 4096, 5]]);
    const r = simulate({ fleet, trace });
    assert.equal(r.requests.status[0], STATUS.done);
    const pP = fleet.islands[0]!.profile;
    const pD = fleet.islands[1]!.profile;

    // TTFT: the prefill replica's one chunk of 4,096 tokens (<= the 8,192-token pass), nothing cached.
    const ttft = prefillMs(pP, 4096, 0);
    close(r.requests.firstTokenMs[0]! - 100, ttft, "TTFT");

    // Transfer: Llama-3.1-8B's KV in BF16 is 2 (K, V) x 8 KV heads x 128 dims x 32 layers x 2 bytes
    // = 131,072 bytes per token; 4,096 prompt tokens = 536,870,912 bytes. rdma-400g (the default):
    // 5 µs + bytes / (1 lane (tp 1) x 50 GB/s) = 0.005 + 536,870,912 / 5e7 = 10.74241824 ms.
    assert.equal(kvBytesPerToken(fleet.islands[0]!.model, "bf16"), 131_072);
    const bytes = 4096 * 131_072;
    const transfer = 0.005 + bytes / 50e6;
    close(transfer, 10.74241824, "transfer ms");

    // Decode: tokens 2..5 are one decode step each at batch 1, attending to the prompt plus the tokens so far
    // (4,097 .. 4,100: the first token's KV is written by the step that produces the second).
    const steps = decodeStepMs(pD, 1, 4097) + decodeStepMs(pD, 1, 4098) + decodeStepMs(pD, 1, 4099) + decodeStepMs(pD, 1, 4100);
    const tpot = (transfer + steps) / 4;
    close((r.requests.finishMs[0]! - r.requests.firstTokenMs[0]!) / 4, tpot, "TPOT");
    assert.equal(r.replicas[0]!.counters.handoffs, 1);
    assert.equal(r.replicas[0]!.counters.outputTokens, 1, "the prefill replica emits the first token");
    assert.equal(r.replicas[1]!.counters.outputTokens, 4);
    assert.equal(r.replicas[1]!.counters.prefillTokens, 0, "the decode replica computes no prompt");
    assert.equal(r.requests.replica[0], 1);

    const report = buildReport(r);
    assert.equal(report.kvTransfer!.transfers, 1);
    assert.equal(report.kvTransfer!.bytes, bytes);
    close(report.kvTransfer!.ms.p50, transfer, "reported transfer p50");
    // 90 pJ/bit (4 x 22.5 pJ/bit optics) x 8 bits/byte, x PUE 1.2.
    close(report.kvTransfer!.joules, bytes * 8 * 90e-12 * 1.2, "transfer energy");
    assert.match(renderSummary(report), /KV transfer over rdma-400g: 1 transfers, 0\.537 GB/);
    assert.equal(report.fleet.islands[1]!.role, "decode");
    // The request ends on the decoder; the prefill replica, which finished none, takes the fleet's goodput.
    assert.equal(report.replicas[0]!.completed, 0);
    assert.equal(report.replicas[0]!.efficiency.goodput, report.efficiency.goodput);
    assert.ok(report.replicas[0]!.efficiency.roofline > 0, "its prefill pass counts at the limit");
  });

  it("kv_transfer.link selects the link: nvlink is the hardware's own (NVLink4, 450 GB/s each way)", () => {
    const trace = tinyTrace([[0, 4096, 2]]);
    const r = simulate({ fleet: split(1, 1, { kv_transfer: { link: "nvlink" } }), trace });
    close(r.kvTransfer!.ms[0]!, 0.001 + (4096 * 131_072) / 450e6, "nvlink transfer");
    const e = simulate({ fleet: split(1, 1, { kv_transfer: { link: "ethernet-100g" } }), trace });
    close(e.kvTransfer!.ms[0]!, 0.01 + (4096 * 131_072) / 12.5e6, "ethernet transfer");
  });

  it("a tp-2 pair moves its shards over two lanes at once", () => {
    const trace = tinyTrace([[0, 4096, 2]]);
    const r = simulate({ fleet: split(1, 1, {}, { prefill: { tp: 2 }, decode: { tp: 2 } }), trace });
    close(r.kvTransfer!.ms[0]!, 0.005 + (4096 * 131_072) / (2 * 50e6), "two lanes");
  });

  it("a one-token answer never leaves the prefill replica", () => {
    const r = simulate({ fleet: split(1, 1), trace: tinyTrace([[0, 1000, 1]]) });
    assert.equal(r.requests.status[0], STATUS.done);
    assert.equal(r.kvTransfer!.transfers, 0);
    assert.equal(r.requests.replica[0], 0);
  });
});

describe("disaggregation: the fleet file", () => {
  const island = (role: string, name: string): Record<string, unknown> => ({ name, hardware: "h100", model: MODEL, count: 1, role });
  const error = (islands: unknown[]): string => {
    try {
      resolveSimFleet({ islands });
    } catch (err) {
      assert.ok(err instanceof FleetFileError, String(err));
      return err.message;
    }
    assert.fail("no error");
  };

  it("decode islands without a prefill island, or the reverse, is an error naming islands[i].role", () => {
    assert.match(error([island("both", "a"), island("decode", "b")]), /islands\.1\.role: island "b" decodes, but no island prefills/);
    assert.match(error([island("prefill", "a")]), /islands\.0\.role: island "a" prefills, but no island decodes/);
    assert.match(error([island("prefill", "a"), island("decode", "b"), island("both", "c")]), /islands\.2\.role: island "c" is role: both in a fleet that disaggregates/);
    assert.match(error([island("sideways", "a")]), /islands\.0\.role/);
  });

  it("prefill and decode islands serve one model, with KV in one format", () => {
    assert.match(error([island("prefill", "a"), { ...island("decode", "b"), model: "llama-3.1-70b", tp: 4 }]), /islands\.1\.model: island "b" runs llama-3\.1-70b but prefill island "a" runs llama-3\.1-8b/);
    assert.match(error([island("prefill", "a"), { ...island("decode", "b"), kv_precision: "fp8" }]), /islands\.1\.kv_precision/);
  });

  it("kv_transfer.link is checked", () => {
    assert.throws(() => resolveSimFleet({ islands: [island("prefill", "a"), island("decode", "b")], kv_transfer: { link: "carrier-pigeon" } }), /kv_transfer\.link/);
  });

  it("no role anywhere is the colocated fleet, figure for figure; role: both says the same", () => {
    const trace = syntheticTrace({ requests: 300, ratePerS: 30, seed: 5 });
    const plain = simulate({ fleet: resolveSimFleet({ islands: [{ hardware: "h100", model: MODEL, count: 3 }] }), trace });
    const both = simulate({ fleet: resolveSimFleet({ islands: [{ hardware: "h100", model: MODEL, count: 3, role: "both" }] }), trace });
    assert.equal(plain.kvTransfer, undefined);
    assert.deepEqual(Array.from(both.requests.firstTokenMs), Array.from(plain.requests.firstTokenMs));
    assert.deepEqual(Array.from(both.requests.finishMs), Array.from(plain.requests.finishMs));
    assert.equal(buildReport(plain).kvTransfer, undefined);
  });
});

describe("disaggregation: limits and failures", () => {
  it("a request longer than any decode replica's KV is refused as context_length_exceeded, before any prefill", () => {
    const fleet = split(1, 1, {}, { decode: { kv_memory_fraction: 0.02 } });
    const decodeContext = fleet.islands[1]!.contextSize;
    assert.ok(decodeContext < fleet.islands[0]!.contextSize, `decode context ${decodeContext}`);
    const r = simulate({ fleet, trace: tinyTrace([[0, decodeContext - 10, 11], [1, decodeContext - 20, 10]]) });
    assert.equal(r.rejected.context_length_exceeded, 1);
    assert.equal(r.requests.status[0], STATUS.rejected);
    assert.equal(r.requests.status[1], STATUS.done);
    assert.equal(r.replicas[0]!.counters.admissions, 1, "only the request that fits was prefilled");
  });

  it("a prefill replica failing mid-prefill: the request prefills on the other and decodes as usual", () => {
    const trace = tinyTrace([[0, 8000, 20]]);
    const alone = simulate({ fleet: split(2, 1), trace });
    const first = alone.requests.firstTokenMs[0]!;
    const victim = "p/0";
    const fleet = split(2, 1, { failures: { schedule: [{ replica: victim, at_s: first / 2000, down_s: 60 }] } });
    const r = simulate({ fleet, trace });
    assert.equal(r.requests.status[0], STATUS.done);
    assert.equal(r.retries, 1);
    assert.equal(r.lost, 0);
    assert.equal(r.replicas[1]!.counters.handoffs, 1, "p/1 prefilled it");
    assert.equal(r.kvTransfer!.transfers, 1);
    assert.ok(r.requests.firstTokenMs[0]! > first, "TTFT includes the lost half prefill");
  });

  it("a decode replica failing mid-decode: the KV is lost, the request prefills again and decodes elsewhere", () => {
    const trace = tinyTrace([[0, 4096, 400]]);
    const alone = simulate({ fleet: split(1, 2), trace });
    const d = alone.requests.replica[0]!;
    const atS = (alone.requests.firstTokenMs[0]! + alone.requests.finishMs[0]!) / 2000;
    const r = simulate({ fleet: split(1, 2, { failures: { schedule: [{ replica: d, at_s: atS, down_s: 60 }] } }), trace });
    assert.equal(r.requests.status[0], STATUS.done);
    assert.equal(r.retries, 1);
    assert.notEqual(r.requests.replica[0], d);
    const p = r.replicas[0]!.counters;
    assert.equal(p.handoffs, 2, "prefilled twice");
    assert.equal(r.kvTransfer!.transfers, 2);
    // The second prefill computes the prompt plus the tokens generated so far (no prefix blocks here).
    assert.ok(p.prefillTokens > 2 * 4096, `prefill tokens ${p.prefillTokens}`);
    assert.equal(r.replicas.reduce((s, x) => s + x.counters.outputTokens, 0), 400);
    close(r.requests.firstTokenMs[0]!, alone.requests.firstTokenMs[0]!, "the first token came before the failure");
  });

  it("a decode replica failing while the KV is on its way: the KV is lost, and the request prefills again", () => {
    const trace = tinyTrace([[0, 8000, 50]]);
    const alone = simulate({ fleet: split(1, 2), trace });
    const d = alone.requests.replica[0]!;
    const atS = (alone.requests.firstTokenMs[0]! + alone.kvTransfer!.ms[0]! / 2) / 1000;
    const r = simulate({ fleet: split(1, 2, { failures: { schedule: [{ replica: d, at_s: atS, down_s: 60 }] } }), trace });
    assert.equal(r.requests.status[0], STATUS.done);
    assert.equal(r.retries, 1);
    assert.equal(r.kvTransfer!.transfers, 2);
    assert.notEqual(r.requests.replica[0], d);
  });

  it("a loaded run finishes every request, with prefix affinity on the prefill side", () => {
    const trace = syntheticTrace({ requests: 400, ratePerS: 20, seed: 9, input: { mean: 3000, cv: 0.5 }, output: { mean: 64, cv: 0.5 }, prefix: { groups: 4, prefixTokens: 2048 } });
    const r = simulate({ fleet: split(2, 2, { router: { policy: "prefix-aware" } }), trace });
    assert.equal(r.unfinished + r.lost + r.rejected.overloaded + r.rejected.no_ready_replica, 0);
    const rep = buildReport(r);
    assert.ok(rep.cache.hitRate > 0.3, `prefill-side cache hit ${rep.cache.hitRate}`);
    assert.equal(rep.kvTransfer!.transfers, rep.requests.completed - countOneToken(trace.outputTokens));
  });
});

function countOneToken(out: Int32Array): number {
  let n = 0;
  for (const x of out) if (x === 1) n++;
  return n;
}
