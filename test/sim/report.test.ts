import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { barChart, formatTick, histogram, lineChart, niceTicks, renderCharts, rowChart } from "../../src/sim/charts.js";
import { renderMarkdown, renderSummary } from "../../src/sim/markdown.js";
import { buildReport, distribution, percentile, reportJson, requestsCsv } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { fleetOf, tinyTrace } from "./fixtures.js";

/** Tags open and closed in order, and nothing but whitespace outside the root: enough to catch broken markup. */
function assertWellFormed(svg: string): void {
  assert.ok(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.ok(!/<script|href=|@import|url\(/i.test(svg), "self-contained");
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self === "/") continue;
    if (close === "/") assert.equal(stack.pop(), name, `closing </${name}>`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, []);
}

describe("percentiles", () => {
  it("interpolate between closest ranks, as numpy's default", () => {
    const xs = Float64Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    assert.equal(percentile(xs, 0.5), 50.5);
    assert.ok(Math.abs(percentile(xs, 0.9) - 90.1) < 1e-9);
    assert.ok(Math.abs(percentile(xs, 0.99) - 99.01) < 1e-9);
    assert.equal(percentile(xs, 0), 1);
    assert.equal(percentile(xs, 1), 100);
    assert.equal(percentile([7], 0.99), 7);
    assert.ok(Number.isNaN(percentile([], 0.5)));
    assert.throws(() => percentile(xs, 1.5), /quantile/);
  });

  it("summarize unsorted samples", () => {
    const d = distribution(Float64Array.from([5, 1, 4, 2, 3]));
    assert.deepEqual(d, { count: 5, mean: 3, min: 1, p50: 3, p90: 4.6, p99: 4.96, max: 5 });
    assert.equal(distribution(new Float64Array(0)).count, 0);
  });
});

describe("report", () => {
  it("aggregates a hand-checkable run: latencies, goodput, cache, energy and cost", () => {
    // One replica; two requests far apart, so each runs alone: the second repeats the first's prefix.
    const fleet = fleetOf(1, {}, { slo: { ttft_ms: 100, tpot_ms: 50 } });
    const trace = tinyTrace([
      [0, 4096, 11, [1, 2, 3, 4, 5, 6, 7, 8]],
      [60_000, 4096, 11, [1, 2, 3, 4, 5, 6, 7, 8]],
    ]);
    const result = simulate({ fleet, trace });
    const r = buildReport(result);
    const ttft0 = result.requests.firstTokenMs[0]!;
    const ttft1 = result.requests.firstTokenMs[1]! - 60_000;
    assert.equal(r.latency.ttftMs.count, 2);
    assert.equal(r.latency.ttftMs.max, ttft0);
    assert.equal(r.latency.ttftMs.min, ttft1);
    assert.equal(r.latency.ttftMs.p50, (ttft0 + ttft1) / 2);
    const tpot0 = (result.requests.finishMs[0]! - ttft0) / 10;
    assert.ok(Math.abs(r.latency.tpotMs.max - tpot0) < 1e-9 || Math.abs(r.latency.tpotMs.min - tpot0) < 1e-9);
    // The cold prefill of 4,096 tokens of an 8B on an H100 takes over 100 ms; the warm one does not.
    assert.ok(ttft0 > 100 && ttft1 < 100);
    assert.deepEqual(r.goodput, { requests: 1, share: 0.5, requestsPerS: 1 / r.throughput.spanS });
    assert.deepEqual([r.cache.blockRefs, r.cache.blockHits, r.cache.hitRate], [16, 8, 0.5]);
    assert.equal(r.cache.cachedPromptTokens, 4095);
    assert.equal(r.throughput.spanS, result.endMs / 1000);
    assert.equal(r.throughput.outputTokensPerS, 22 / r.throughput.spanS);
    // Energy: passes plus idle draw (most of the 60 s), x PUE; cost: 1 H100 for the span plus electricity.
    const isl = fleet.islands[0]!;
    const busy = result.replicas[0]!.counters.busyMs;
    const idleJ = ((result.endMs - busy) / 1000) * isl.hardware.idleW * fleet.pue;
    assert.ok(Math.abs(r.energy.idleJoules - idleJ) < 1e-6);
    assert.ok(Math.abs(r.energy.busyJoules - result.replicas[0]!.counters.joulesPerDevice * fleet.pue) < 1e-6);
    assert.equal(r.energy.joulesPerToken, r.energy.joules / 22);
    const deviceUsd = (isl.usdPerHour * result.endMs) / 3.6e6;
    assert.ok(Math.abs(r.cost.deviceUsd - deviceUsd) < 1e-12);
    assert.ok(Math.abs(r.cost.usd - (deviceUsd + (r.energy.joules / 3.6e6) * fleet.usdPerKwh)) < 1e-12);
    assert.ok(Math.abs(r.cost.usdPerMTok - (r.cost.usd / 22) * 1e6) < 1e-9);
    assert.equal(r.replicas[0]!.completed, 2);
    assert.ok(r.replicas[0]!.utilization > 0 && r.replicas[0]!.utilization < 0.05);
    // Efficiency: the passes at the physical limit take less than the engine's passes, over the 60 s up,
    // x always up, x one of the two served within the SLO.
    const { busyMs: passesMs, rooflineMs } = result.replicas[0]!.counters;
    assert.ok(rooflineMs > 0 && rooflineMs < passesMs, `${rooflineMs} ms at the limit against ${passesMs} ms of passes`);
    const e = r.efficiency;
    assert.ok(Math.abs(e.roofline - rooflineMs / result.endMs) < 1e-12);
    assert.deepEqual([e.availability, e.goodput, e.value], [1, 0.5, e.roofline * 0.5]);
    assert.deepEqual(r.replicas[0]!.efficiency, e, "one replica: the fleet's figure is its own");
  });

  it("counts time down against efficiency, replica by replica and for the fleet", () => {
    const fleet = fleetOf(2, {}, { failures: { mtbf_s: 5, repair_s: 2 } });
    const r = buildReport(simulate({ fleet, trace: syntheticTrace({ requests: 400, ratePerS: 20, seed: 2 }) }));
    assert.ok(r.availability.failures > 0);
    assert.ok(Math.abs(r.efficiency.availability - r.availability.share) < 1e-12, "time up over time in the fleet");
    for (const x of r.replicas) {
      assert.ok(Math.abs(x.efficiency.availability - (1 - x.downS / x.memberS)) < 1e-9);
      assert.ok(x.efficiency.roofline > 0 && x.efficiency.roofline <= x.utilization, `${x.name}: at the limit ${x.efficiency.roofline}, busy ${x.utilization}`);
      assert.ok(Math.abs(x.efficiency.value - x.efficiency.roofline * x.efficiency.availability * x.efficiency.goodput) < 1e-12);
    }
  });

  it("writes JSON without NaN, Markdown with every section, and per-request CSV", () => {
    const result = simulate({ fleet: fleetOf(2), trace: syntheticTrace({ requests: 50, ratePerS: 10, seed: 1 }) });
    const report = buildReport(result);
    const back = JSON.parse(reportJson(report)) as typeof report;
    assert.equal(back.requests.completed, 50);
    const md = renderMarkdown(report, { charts: { ttft: "ttft.svg" } });
    for (const h of ["# Flotilla simulation", "## Fleet", "## Latency (ms)", "## Throughput and goodput", "## Efficiency against the physical limit", "## Prefix cache", "## Energy and cost", "## Replicas", "## Simulation", "![TTFT distribution](ttft.svg)"]) {
      assert.ok(md.includes(h), `markdown has ${h}`);
    }
    assert.match(renderSummary(report), /50\/50 completed/);
    const csv = requestsCsv(result).trimEnd().split("\n");
    assert.equal(csv.length, 51);
    assert.match(csv[1]!, /^0,0\.000,\d+,\d+,done,[\d.]+,[\d.]*,[\d.]+,pool\/[01],0,\d+$/);
  });

  it("summarizes big fleets instead of listing every replica", () => {
    const result = simulate({ fleet: fleetOf(40), trace: syntheticTrace({ requests: 100, ratePerS: 50, seed: 1 }) });
    const md = renderMarkdown(buildReport(result));
    assert.match(md, /Utilization over 40 replicas: min .*The ten busiest/s);
  });
});

describe("charts", () => {
  it("pick round ticks and compact labels", () => {
    assert.deepEqual(niceTicks(0, 97), [0, 20, 40, 60, 80, 100]);
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(5, 5), [2, 3, 4, 5, 6, 7, 8]);
    assert.equal(formatTick(15_000), "15k");
    assert.equal(formatTick(2_500_000), "2.5M");
    assert.equal(formatTick(0.25), "0.25");
  });

  it("draw well-formed, self-contained SVG with titles, axes and labels", () => {
    const line = lineChart({ title: "T <&>", xLabel: "time (s)", yLabel: "tokens/s", series: [{ name: "a", x: [0, 1, 2], y: [1, 3, 2] }, { name: "b", x: [0, 1, 2], y: [0, 1, NaN] }] });
    assertWellFormed(line);
    assert.ok(line.includes("T &lt;&amp;&gt;"));
    assert.ok(line.includes(">time (s)</text>") && line.includes(">tokens/s</text>"));
    assert.ok(line.includes("<polyline"));
    const bars = barChart({ title: "B", xLabel: "replica", yLabel: "%", labels: ["a", "b"], values: [10, 90], yMax: 100 });
    assertWellFormed(bars);
    assert.equal(bars.match(/<rect x=/g)?.length, 2);
    const rows = rowChart({ title: "R", xLabel: "req/s", labels: ["MC spread prefix-aware (feasible)", "MC round-robin"], values: [3.55, 0], colors: [1, 0] });
    assertWellFormed(rows);
    assert.ok(rows.includes(">MC spread prefix-aware (feasible)</text>") && rows.includes(">3.55</text>"));
    const widths = [...rows.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]));
    assert.equal(widths.length, 2);
    assert.ok(widths[0]! > 0 && widths[1] === 0, "a bar as long as its value, none for zero");
    const hist = histogram({ title: "H", xLabel: "ms", values: Float64Array.from({ length: 1000 }, (_, i) => i), marker: { at: 500, label: "SLO" } });
    assertWellFormed(hist);
    assert.ok(hist.includes(">SLO</text>") && hist.includes("cumulative share"));
    assertWellFormed(histogram({ title: "empty", xLabel: "ms", values: [] }));
  });

  it("renders the three report charts, with a distribution of load for big fleets", () => {
    const small = simulate({ fleet: fleetOf(3, {}, { failures: { schedule: [{ replica: 1, at_s: 1, down_s: 2 }] } }), trace: syntheticTrace({ requests: 60, ratePerS: 20, seed: 1 }) });
    const charts = renderCharts(small, buildReport(small));
    for (const svg of Object.values(charts)) assertWellFormed(svg);
    assert.match(charts["timeline.svg"], /Replicas down/);
    assert.equal(charts["replicas.svg"].match(/<rect x=/g)?.length, 3);
    const big = simulate({ fleet: fleetOf(100), trace: syntheticTrace({ requests: 200, ratePerS: 100, seed: 1 }) });
    const bigCharts = renderCharts(big, buildReport(big));
    assert.match(bigCharts["replicas.svg"], /100 replicas by utilization/);
  });
});
