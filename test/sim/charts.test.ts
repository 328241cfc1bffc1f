import assert from "node:assert/strict";
import { test } from "node:test";
import { barChart, renderCharts, sharedPrefix } from "../../src/sim/charts.js";
import { buildReport } from "../../src/sim/report.js";
import { simulate } from "../../src/sim/simulator.js";
import { syntheticTrace } from "../../src/sim/synthetic.js";
import { fleetOf } from "./fixtures.js";

/** The x axis labels of a bar chart (their group is the one centred at font-size 11), with their x positions. */
function axisLabels(svg: string): { x: number; text: string }[] {
  const group = /<g fill="#333" font-size="11" text-anchor="middle">([\s\S]*?)<\/g>/.exec(svg);
  assert.ok(group, "a group of axis labels");
  return [...group[1]!.matchAll(/<text x="([\d.]+)"[^>]*>([^<]*)<\/text>/g)].map((m) => ({ x: Number(m[1]), text: m[2]! }));
}

/** Shown labels no closer than their estimated width (6.2 px a character at 11 px), the first one among them. */
function assertReadable(labels: readonly string[]): { x: number; text: string }[] {
  const svg = barChart({ title: "B", xLabel: "replica", yLabel: "%", labels, values: labels.map((_, i) => i), yMax: 100 });
  const shown = axisLabels(svg);
  assert.equal(shown[0]?.text, labels[0], "the first label is shown");
  const widest = Math.max(...labels.map((l) => l.length)) * 6.2;
  for (let i = 1; i < shown.length; i++) {
    assert.ok(shown[i]!.x - shown[i - 1]!.x >= widest, `${shown[i - 1]!.text} at ${shown[i - 1]!.x} and ${shown[i]!.text} at ${shown[i]!.x} overlap`);
  }
  assert.equal(svg.match(/<rect x=/g)?.length, labels.length, "a bar for every label, shown or not");
  return shown;
}

test("bar chart labels never overlap, however long or many", () => {
  for (const n of [16, 64]) {
    const shown = assertReadable(Array.from({ length: n }, (_, i) => `llama-3.1-70b/${i}`));
    assert.ok(shown.length > 1 && shown.length < n, `${n} long labels thinned to ${shown.length}`);
  }
});

test("short bar chart labels are all shown", () => {
  const labels = Array.from({ length: 16 }, (_, i) => String(i));
  assert.deepEqual(
    assertReadable(labels).map((l) => l.text),
    labels,
    "every label shown",
  );
});

test("labels less a shared prefix, cut at a separator", () => {
  assert.deepEqual(sharedPrefix(["island/0", "island/1", "island/15"]), { prefix: "island/", rest: ["0", "1", "15"] });
  assert.deepEqual(sharedPrefix(["island/10", "island/11"]), { prefix: "island/", rest: ["10", "11"] });
  assert.deepEqual(sharedPrefix(["a100/0", "h100/0"]), { prefix: "", rest: ["a100/0", "h100/0"] });
  assert.deepEqual(sharedPrefix(["pool/0"]), { prefix: "", rest: ["pool/0"] });
  assert.deepEqual(sharedPrefix(["pool", "pool/1"]), { prefix: "", rest: ["pool", "pool/1"] });
});

test("per-replica chart labels by index within the island, tooltips by full name", () => {
  const result = simulate({ fleet: fleetOf(16), trace: syntheticTrace({ requests: 60, ratePerS: 20, seed: 1 }) });
  const svg = renderCharts(result, buildReport(result))["replicas.svg"];
  const shown = axisLabels(svg);
  assert.deepEqual(
    shown.map((l) => l.text),
    Array.from({ length: 16 }, (_, i) => String(i)),
    "short enough for all sixteen to show",
  );
  assert.ok(svg.includes(">replica (pool/…)</text>"));
  assert.match(svg, /<title>pool\/15: [\d.]+<\/title>/);
});
