import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  TraceError,
  blockReuse,
  limitDuration,
  loadTrace,
  parseAzureCsv,
  parseAzureTimestamp,
  parseMooncake,
  scaleRate,
  traceStats,
  truncateTrace,
  withDiurnalRate,
} from "../../src/sim/traces.js";
import { syntheticTrace, withSyntheticPrefixes } from "../../src/sim/synthetic.js";
import { AZURE, MOONCAKE, TRACES_ABSENT } from "./fixtures.js";

describe("Mooncake JSONL", () => {
  it("reads the conversation trace: 12,031 requests over an hour, 36.64% block reuse with an infinite cache", { skip: TRACES_ABSENT }, async () => {
    const t = await loadTrace(MOONCAKE);
    assert.equal(t.count, 12_031);
    assert.equal(t.blockTokens, 512);
    assert.equal(t.arrivalMs[0], 0);
    assert.equal(t.arrivalMs[t.count - 1], 3_536_999);
    assert.equal(t.inputTokens[0], 6758);
    assert.equal(t.outputTokens[0], 500);
    const reuse = blockReuse(t);
    assert.deepEqual({ hits: reuse.hits, refs: reuse.refs }, { hits: 105_710, refs: 288_500 });
    assert.equal(reuse.rate.toFixed(4), "0.3664");
  });

  it("parses good lines, skips blank ones and ignores unknown fields", () => {
    const t = parseMooncake('{"timestamp": 5, "input_length": 700, "output_length": 3, "hash_ids": [0, 1]}\n\n{"timestamp": 9, "input_length": 10, "output_length": 2, "hash_ids": [0], "extra": true}\n');
    assert.equal(t.count, 2);
    assert.deepEqual([...t.blockIds], [0, 1, 0]);
    assert.deepEqual([...t.blockOffsets], [0, 2, 3]);
  });

  it("sorts rows that arrive out of order, keeping each row's blocks", () => {
    const t = parseMooncake('{"timestamp": 9, "input_length": 10, "output_length": 2, "hash_ids": [7]}\n{"timestamp": 1, "input_length": 20, "output_length": 2, "hash_ids": [3, 4]}\n');
    assert.deepEqual([...t.arrivalMs], [1, 9]);
    assert.deepEqual([...t.inputTokens], [20, 10]);
    assert.deepEqual([...t.blockIds], [3, 4, 7]);
  });

  it("names the line of malformed input", () => {
    const good = '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [0]}';
    assert.throws(() => parseMooncake(`${good}\n{"timestamp": 1, "input_length": 5`, "t.jsonl"), (e: Error) => e instanceof TraceError && /^t\.jsonl:2: not valid JSON/.test(e.message));
    assert.throws(() => parseMooncake(`${good}\n${good}\n{"timestamp": -1, "input_length": 5, "output_length": 1}`, "t.jsonl"), /t\.jsonl:3: "timestamp"/);
    assert.throws(() => parseMooncake('{"timestamp": 0, "input_length": "5", "output_length": 1}', "t"), /t:1: "input_length" must be a non-negative integer, got "5"/);
    assert.throws(() => parseMooncake('{"timestamp": 0, "input_length": 5, "output_length": 1.5}', "t"), /t:1: "output_length"/);
    assert.throws(() => parseMooncake('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, "x"]}', "t"), /t:1: "hash_ids" must hold integers/);
    assert.throws(() => parseMooncake("[1, 2]", "t"), /t:1: expected a JSON object/);
    assert.throws(() => parseMooncake("\n\n", "t"), /t: no requests/);
  });
});

describe("Azure CSV", () => {
  it("reads the 2023 conversation trace with arrivals relative to the first row", { skip: TRACES_ABSENT }, async () => {
    const t = await loadTrace(AZURE);
    assert.equal(t.count, 19_366);
    assert.equal(t.arrivalMs[0], 0);
    assert.equal(t.blockTokens, 0, "no prefix information");
    assert.equal(t.inputTokens[0], 374);
    assert.equal(t.outputTokens[0], 44);
    // 18:15:46.6805900 to 18:15:50.9951690
    assert.ok(Math.abs(t.arrivalMs[1]! - 4314.579) < 1e-6);
    const span = traceStats(t).durationMs / 1000;
    assert.ok(span > 3400 && span < 3700, `span ${span} s`);
  });

  it("parses timestamps to the tenth of a microsecond", () => {
    assert.equal(parseAzureTimestamp("1970-01-01 00:00:01.5000000"), 1500);
    assert.ok(Number.isNaN(parseAzureTimestamp("yesterday")));
  });

  it("accepts any column order and CRLF, and names the line of malformed rows", () => {
    const t = parseAzureCsv("GeneratedTokens,TIMESTAMP,ContextTokens\r\n5,2023-11-16 18:15:46.0,100\r\n7,2023-11-16 18:15:47.0,200\r\n");
    assert.deepEqual([...t.arrivalMs], [0, 1000]);
    assert.deepEqual([...t.inputTokens], [100, 200]);
    assert.deepEqual([...t.outputTokens], [5, 7]);
    const head = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
    assert.throws(() => parseAzureCsv(`${head}2023-11-16 18:15:46.0,100,5\n2023-11-16 18:15:47.0,abc,5\n`, "a.csv"), /a\.csv:3: ContextTokens must be a non-negative integer, got "abc"/);
    assert.throws(() => parseAzureCsv(`${head}soon,100,5\n`, "a.csv"), /a\.csv:2: TIMESTAMP "soon"/);
    assert.throws(() => parseAzureCsv(`${head}2023-11-16 18:15:46.0,100\n`, "a.csv"), /a\.csv:2: expected 3 columns, got 2/);
    assert.throws(() => parseAzureCsv("time,in,out\n1,2,3\n", "a.csv"), /a\.csv:1: header must name the columns/);
  });

  it("says so when the file is missing", async () => {
    await assert.rejects(loadTrace("/nonexistent/trace.csv"), /cannot read trace \/nonexistent\/trace\.csv: no such file/);
  });
});

describe("transforms", () => {
  const t = parseMooncake(
    [0, 1000, 2000, 3000].map((ts, i) => JSON.stringify({ timestamp: ts, input_length: 100 + i, output_length: 10, hash_ids: [i] })).join("\n"),
  );

  it("scales the rate, truncates and limits the duration", () => {
    assert.deepEqual([...scaleRate(t, 2).arrivalMs], [0, 500, 1000, 1500]);
    const first = truncateTrace(t, 2);
    assert.equal(first.count, 2);
    assert.deepEqual(blockReuse(first), { hits: 0, refs: 2, rate: 0 });
    assert.equal(limitDuration(t, 2500).count, 3);
    assert.equal(limitDuration(scaleRate(t, 2), 1200).count, 3);
    assert.throws(() => scaleRate(t, 0), /rate scale/);
    assert.throws(() => truncateTrace(t, 0), /truncate/);
  });
});

describe("synthetic load", () => {
  it("is deterministic for a seed and has the asked-for rate and lengths", () => {
    const opts = { requests: 20_000, ratePerS: 50, input: { mean: 1000, cv: 0.5 }, output: { mean: 100, cv: 0 }, seed: 4 } as const;
    const a = syntheticTrace(opts);
    const b = syntheticTrace(opts);
    assert.deepEqual(a.arrivalMs, b.arrivalMs);
    const s = traceStats(a);
    const rate = (a.count - 1) / (s.durationMs / 1000);
    assert.ok(Math.abs(rate - 50) < 2.5, `rate ${rate}`);
    assert.ok(Math.abs(s.inputTokens / a.count - 1000) < 30, `mean input ${s.inputTokens / a.count}`);
    assert.equal(s.outputTokens, 100 * a.count);
    assert.equal(a.blockTokens, 0);
  });

  it("bursty arrivals keep the mean rate with more spread", () => {
    const cvOf = (arrival: "poisson" | "bursty"): number => {
      const t = syntheticTrace({ requests: 20_000, ratePerS: 10, arrival, burstiness: 4, seed: 2 });
      const gaps: number[] = [];
      for (let i = 1; i < t.count; i++) gaps.push(t.arrivalMs[i]! - t.arrivalMs[i - 1]!);
      const mean = gaps.reduce((x, y) => x + y, 0) / gaps.length;
      assert.ok(Math.abs(mean - 100) < 10, `${arrival} mean gap ${mean}`);
      return Math.sqrt(gaps.reduce((x, g) => x + (g - mean) ** 2, 0) / gaps.length) / mean;
    };
    assert.ok(Math.abs(cvOf("poisson") - 1) < 0.1);
    assert.ok(cvOf("bursty") > 3);
  });

  it("shared-prefix groups give whole shared blocks and unique rest", () => {
    const base = syntheticTrace({ requests: 1000, ratePerS: 10, input: { mean: 3000, cv: 0 }, seed: 1 });
    const t = withSyntheticPrefixes(base, { groups: 4, prefixTokens: 1100, seed: 9 });
    assert.equal(t.blockTokens, 512);
    // 3000 tokens = 6 blocks; the first 2 (1024 tokens of the 1100) shared by a group.
    assert.equal(t.blockOffsets[1], 6);
    const reuse = blockReuse(t);
    assert.equal(reuse.refs, 6000);
    assert.equal(reuse.hits, 2000 - 8, "every shared block after each group's first use");
  });
});

describe("a diurnal rate curve", () => {
  // Evenly spaced arrivals over exactly two periods of 1,000 s, at 5 a second.
  const flat = syntheticTrace({ requests: 10_000, ratePerS: 5, arrival: "uniform", input: { mean: 10 }, output: { mean: 10 }, seed: 1 });
  const day = withDiurnalRate(flat, { peakToTrough: 3, periodS: 1000, peakAtS: 500 });
  const within = (fromS: number, toS: number): number => day.arrivalMs.filter((t) => t >= fromS * 1000 && t < toS * 1000).length;

  it("makes the busiest moment r times the quietest, keeps every request, their order and the mean over whole periods", () => {
    assert.equal(day.count, flat.count);
    assert.deepEqual(day.inputTokens, flat.inputTokens);
    for (let i = 1; i < day.count; i++) assert.ok(day.arrivalMs[i]! >= day.arrivalMs[i - 1]!, "in order");
    // 20 s around the peak (500 s) and around the trough (0 s, 1000 s): rates 1.5x and 0.5x the mean.
    const peak = within(490, 510);
    const trough = within(990, 1010);
    assert.ok(Math.abs(peak / trough - 3) < 0.1, `peak ${peak} vs trough ${trough}`);
    assert.ok(Math.abs(within(0, 1000) - 5000) <= 1, `${within(0, 1000)} in the first period`);
    assert.ok(Math.abs(day.arrivalMs[day.count - 1]! - flat.arrivalMs[flat.count - 1]!) < 1000, "two whole periods end where they began");
  });

  it("is the trace itself at 1:1, and refuses a ratio below 1", () => {
    assert.equal(withDiurnalRate(flat, { peakToTrough: 1 }), flat);
    assert.throws(() => withDiurnalRate(flat, { peakToTrough: 0.5 }), /peak-to-trough ratio must be a number >= 1/);
  });
});
