import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import type { EngineLoad } from "../../src/engines/engine.js";
import { readReport, withReport, type EngineReport } from "../../src/engines/engine-metrics.js";
import { parseExposition } from "../../src/engines/prometheus-text.js";
import { repoPath } from "../paths.js";

const fixture = (name: string): string => readFileSync(repoPath("test/engines/fixtures", name), "utf8");
const report = (name: string, model: string): EngineReport | undefined => readReport(parseExposition(fixture(name)), model);

describe("an engine's report, read from its /metrics", () => {
  it("reads each engine's names, across their renames (table)", () => {
    const cases: [string, string, EngineReport][] = [
      // V0: swapped requests wait too; the old KV name.
      ["vllm-v0.txt", "meta-llama/Meta-Llama-3-8B", { dialect: "vllm", running: 3, waiting: 6, kvUsage: 0.42 }],
      // Two data-parallel engines add up; KV is their mean.
      ["vllm-v1-dp2.txt", "Qwen/Qwen3-8B", { dialect: "vllm", running: 6, waiting: 10, kvUsage: 0.4 }],
      ["vllm-v1-kv-only.txt", "meta-llama/Llama-3.1-8B-Instruct", { dialect: "vllm", running: 8, waiting: 30, kvUsage: 0.9731 }],
      // Tensor-parallel ranks repeat their dp rank's batch: counted once; dp ranks add up.
      ["sglang.txt", "deepseek-ai/DeepSeek-V3", { dialect: "sglang", running: 8, waiting: 8, kvUsage: 0.405 }],
      ["llama-server-kv-ratio.txt", "any", { dialect: "llama.cpp", running: 2, waiting: 3, kvUsage: 0.0986328 }],
      // Recent llama-server exports no KV gauge: unknown, not 0.
      ["llama-server.txt", "any", { dialect: "llama.cpp", running: 1, waiting: 0, kvUsage: undefined }],
      // Only the model asked for: replicas' slots and the admission queue, both priority classes.
      ["flotilla.txt", "tiny", { dialect: "flotilla", running: 4, waiting: 7, kvUsage: 0.5 }],
      ["flotilla.txt", "other", { dialect: "flotilla", running: 2, waiting: 12, kvUsage: 0.9 }],
    ];
    for (const [file, model, expected] of cases) {
      const got = report(file, model);
      assert.ok(got !== undefined, file);
      assert.deepEqual({ ...got, kvUsage: got.kvUsage === undefined ? undefined : Number(got.kvUsage.toFixed(7)) }, expected, `${file} for ${model}`);
    }
  });

  it("reads a one-model server whatever name it labels its model with, but no other model of a Flotilla", () => {
    assert.equal(report("vllm-v1-dp2.txt", "qwen-alias")?.running, 6);
    assert.equal(report("sglang.txt", "dsv3")?.waiting, 8);
    assert.equal(report("flotilla.txt", "llama-70b"), undefined);
  });

  it("prefers the new name of a renamed gauge, and says nothing of a text with no load gauge", () => {
    const both = 'vllm:num_requests_running{model_name="m"} 1\nvllm:gpu_cache_usage_perc{model_name="m"} 0.9\nvllm:kv_cache_usage_perc{model_name="m"} 0.2\n';
    assert.equal(readReport(parseExposition(both), "m")?.kvUsage, 0.2);
    assert.equal(readReport(parseExposition("# HELP up Whether up.\n# TYPE up gauge\nup 1\n"), "m"), undefined);
    assert.equal(readReport(parseExposition('vllm:num_requests_running{model_name="m"} NaN\n'), "m"), undefined);
  });
});

describe("own load joined by the engine's report (withReport)", () => {
  const own = (active: number, queued = 0): EngineLoad => ({ active, queued, slots: 4, maxQueue: 8 });
  const vllm = (running: number, waiting: number): EngineReport => ({ dialect: "vllm", running, waiting, kvUsage: 0.5 });

  it("adds what others run and queue there, less this gateway's own share", () => {
    // Another client queued 30: ranked as queued here, and our own 2 are not counted twice.
    const load = withReport(own(2), vllm(2, 30), 2, 120);
    assert.deepEqual(load, { active: 2, queued: 9, slots: 4, maxQueue: 8, own: { active: 2, queued: 0 }, reported: { running: 2, waiting: 30, kvUsage: 0.5, ageMs: 120 } });
    // 4 running and 2 waiting there hold our 3 and 3 of others': the total is exact, and ours are taken to run first.
    const mixed = withReport(own(3), vllm(4, 2), 3, 0);
    assert.deepEqual([mixed.active, mixed.queued], [4, 2]);
  });

  it("follows this gateway's own requests at once, between reports", () => {
    // The report counted 3 of ours; they have finished since: nothing is left of them.
    assert.deepEqual([withReport(own(0), vllm(3, 0), 3, 500).active, withReport(own(0), vllm(3, 0), 3, 500).queued], [0, 0]);
    // Two new ones since a report of 5 others: 7.
    assert.equal(withReport(own(2), vllm(5, 0), 0, 500).active, 7);
  });

  it("never makes the has-capacity bound refuse what this gateway's own slots and queue would take", () => {
    for (const [active, queued] of [[0, 0], [3, 0], [4, 6], [4, 7]]) {
      const load = withReport(own(active!, queued!), vllm(500, 5000), 0, 0);
      assert.ok(load.active + load.queued < load.slots + load.maxQueue, `own ${active}+${queued}`);
      assert.ok(load.active + load.queued >= active! + queued!);
    }
    const full = withReport(own(4, 8), vllm(500, 0), 0, 0);
    assert.deepEqual([full.active, full.queued], [4, 8], "a full gateway stays exactly as full");
  });
});
