import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command, CommanderError } from "commander";
import { OUTPUT_FILES, registerSimCommand } from "../../src/cli/sim-command.js";
import { knownHardware } from "../../src/hardware/index.js";
import { progressBar, renderBar } from "../../src/sim/progress.js";
import type { SimReport } from "../../src/sim/report.js";
import { MOONCAKE, TRACES_ABSENT } from "./fixtures.js";
import { repoPath } from "../paths.js";

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

/** Runs `flotilla sim ...` in-process with captured output. */
async function sim(args: readonly string[], opts: { tty?: boolean } = {}): Promise<Run> {
  const run: Run = { stdout: "", stderr: "", exitCode: undefined };
  const program = new Command()
    .name("flotilla")
    .exitOverride()
    .configureOutput({ writeOut: (s) => (run.stdout += s), writeErr: (s) => (run.stderr += s) });
  registerSimCommand(program, {
    stdout: { write: (s: string) => (run.stdout += s) },
    stderr: { write: (s: string) => (run.stderr += s), isTTY: opts.tty === true, columns: 120 },
  });
  try {
    await program.parseAsync(["node", "flotilla", "sim", ...args]);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    run.exitCode = err.exitCode;
  }
  return run;
}

describe("flotilla sim", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-sim-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("replays a trace with the shortcuts and writes the report, charts and per-request rows", { skip: TRACES_ABSENT }, async () => {
    const out = join(dir, "run1");
    const r = await sim(["--trace", MOONCAKE, "--truncate", "400", "--hw", "h100", "--replicas", "4", "--model", "llama-3.1-70b", "--precision", "fp8", "--tp", "2", "--out", out]);
    assert.equal(r.exitCode, undefined, r.stderr);
    assert.match(r.stdout, /mooncake_conversation\.jsonl: 400\/400 completed, 0 rejected, 0 lost, 0 retries on 4 replicas \(least-loaded\)/);
    assert.match(r.stdout, /TTFT p50\/p90\/p99 /);
    assert.deepEqual((await readdir(out)).sort(), [...OUTPUT_FILES].sort());
    const report = JSON.parse(await readFile(join(out, "report.json"), "utf8")) as SimReport;
    assert.equal(report.requests.completed, 400);
    assert.equal(report.fleet.islands[0]!.tp, 2);
    assert.equal(report.fleet.devices, 8);
    assert.ok(report.cache.blockRefs > 0);
    const md = await readFile(join(out, "report.md"), "utf8");
    assert.match(md, /!\[TTFT distribution\]\(ttft\.svg\)/);
    for (const f of ["ttft.svg", "timeline.svg", "replicas.svg"]) assert.match(await readFile(join(out, f), "utf8"), /^<svg xmlns/);
    const csv = (await readFile(join(out, "requests.csv"), "utf8")).trimEnd().split("\n");
    assert.equal(csv.length, 401);
    // Not a terminal: one final progress line, no bar.
    assert.match(r.stderr, /^sim: done, 400\/400 requests/);
    assert.equal(r.stderr.split("\n").filter(Boolean).length, 1);
  });

  it("the README's example runs as written on the shipped examples/fleet-sim.yaml", async () => {
    const fleet = repoPath("examples/fleet-sim.yaml");
    const r = await sim(["--fleet", fleet, "--synthetic", "--requests", "2000", "--rate", "200", "--mtbf", "3600", "--repair", "600"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    assert.match(r.stdout, /2,000\/2,000 completed, 0 rejected, 0 lost, \d+ retries on 16 replicas \(prefix-aware\)/);
  });

  it("runs synthetic load over a fleet file, with command-line overrides, and prints JSON", async () => {
    const fleet = join(dir, "fleet.yaml");
    await writeFile(fleet, "islands:\n  - name: a\n    hardware: h100\n    count: 3\n    model: llama-3.1-8b\nslo: { ttft_ms: 500 }\n");
    const r = await sim(["--fleet", fleet, "--synthetic", "--requests", "300", "--rate", "20", "--prefix-groups", "4", "--prefix-tokens", "1024", "--tpot-slo", "40", "--mtbf", "5", "--repair", "2", "--json", "--no-progress"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    assert.equal(r.stderr, "");
    const report = JSON.parse(r.stdout) as SimReport;
    assert.equal(report.requests.total, 300);
    assert.deepEqual(report.slo, { ttftMs: 500, tpotMs: 40 });
    // Three replicas each down 2 s in 7: the few requests displaced while all three were down, past the gateway's ready wait, are lost.
    assert.equal(report.requests.completed + report.requests.rejected + report.requests.lost, 300);
    assert.ok(report.requests.lost < 15, `${report.requests.lost} lost`);
    assert.ok(report.cache.hitRate > 0.3, `hit rate ${report.cache.hitRate}`);
    assert.ok(report.replicas.some((x) => x.failures > 0));
  });

  it("--profile runs every island without its own profile: with an engine profile; a fleet file's profile: is relative to it", async () => {
    const profile = join(dir, "slow.json");
    await writeFile(profile, JSON.stringify({ kind: "flotilla-engine-profile", version: 1, params: { sequenceOverheadUs: 2000 } }));
    const args = ["--synthetic", "--requests", "60", "--rate", "5", "--model", "llama-3.1-8b", "--input-tokens", "256", "--output-tokens", "64", "--json", "--no-progress"];
    const plain = JSON.parse((await sim(args)).stdout) as SimReport;
    const slow = await sim([...args, "--profile", profile]);
    assert.equal(slow.exitCode, undefined, slow.stderr);
    const slowReport = JSON.parse(slow.stdout) as SimReport;
    // 2 ms of host time per sequence per pass: every token comes at least 2 ms later
    assert.ok(slowReport.latency.tpotMs.p50 > plain.latency.tpotMs.p50 + 2, `${slowReport.latency.tpotMs.p50} vs ${plain.latency.tpotMs.p50}`);
    const fleet = join(dir, "profiled.yaml");
    await writeFile(fleet, "islands:\n  - { hardware: h100, count: 1, model: llama-3.1-8b, profile: slow.json }\n");
    const viaFleet = JSON.parse((await sim(["--fleet", fleet, ...args.slice(0, 5), ...args.slice(7)])).stdout) as SimReport;
    assert.equal(viaFleet.latency.tpotMs.p50, slowReport.latency.tpotMs.p50);
    const missing = await sim([...args, "--profile", join(dir, "nope.json")]);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /islands\.0\.profile: cannot read profile .*nope\.json: no such file/);
  });

  it("--explain N prints the first N decisions: candidates, each scorer's score, the choice, each plugin's time", async () => {
    const r = await sim(["--synthetic", "--requests", "30", "--rate", "10", "--model", "llama-3.1-8b", "--replicas", "3", "--policy", "cost-aware", "--explain", "2", "--json", "--no-progress"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    JSON.parse(r.stdout); // the report stays the only thing on stdout
    const lines = r.stderr.trimEnd().split("\n").map((l) => JSON.parse(l) as { decision: number; chosen: string; scores: { replica: string; by: Record<string, number> }[]; plugins_us: Record<string, number> });
    assert.deepEqual(lines.map((l) => l.decision), [1, 2]);
    assert.match(lines[0]!.chosen, /^replicas\/[0-2]$/);
    assert.equal(lines[0]!.scores.length, 3);
    assert.ok(Object.keys(lines[0]!.scores[0]!.by).length >= 2, "cost-aware has several scorers");
    assert.ok(Object.keys(lines[0]!.plugins_us).some((p) => p.startsWith("scorer:")));
  });

  it("--host-kv-gb sets every island's host tier; 0 turns it off", { skip: TRACES_ABSENT }, async () => {
    const args = ["--trace", MOONCAKE, "--truncate", "300", "--model", "llama-3.1-70b", "--precision", "fp8", "--tp", "2", "--replicas", "2", "--json", "--no-progress"];
    const on = JSON.parse((await sim(args)).stdout) as SimReport;
    const off = await sim([...args, "--host-kv-gb", "0"]);
    assert.equal(off.exitCode, undefined, off.stderr);
    const offReport = JSON.parse(off.stdout) as SimReport;
    assert.equal(offReport.cache.hostBlockHits, 0);
    assert.ok(on.cache.blockHits >= offReport.cache.blockHits);
    assert.equal((await sim([...args, "--host-kv-gb", "-1"])).exitCode, 1);
  });

  it("draws a progress bar on a terminal", async () => {
    const r = await sim(["--synthetic", "--requests", "20", "--model", "llama-3.1-8b", "--json"], { tty: true });
    assert.equal(r.exitCode, undefined, r.stderr);
    assert.match(r.stderr, /sim: done, 20\/20 requests/);
    const line = renderBar({ resolved: 5, total: 10, simMs: 1000, events: 10, wallMs: 100 }, 100);
    assert.match(line, /^\[#+\.+\] {2}50% 5\/10 requests/);
    assert.ok(line.length <= 100);
    let written = "";
    const bar = progressBar({ write: (s: string) => (written += s), isTTY: true, columns: 80 });
    bar.update({ resolved: 1, total: 2, simMs: 0, events: 1, wallMs: 1 });
    assert.match(written, /^\rsim: \[/);
  });

  it("exits with 2 and names the known ones for an unknown hardware or model", async () => {
    const r = await sim(["--synthetic", "--hw", "h1000", "--model", "llama-3.1-8b"]);
    assert.equal(r.exitCode, 2);
    assert.ok(r.stderr.includes(`unknown hardware "h1000" (did you mean h100, a100 or h200?); known: ${knownHardware().join(", ")}`), r.stderr);
    const m = await sim(["--synthetic", "--model", "gpt-9"]);
    assert.equal(m.exitCode, 2);
    assert.match(m.stderr, /unknown model "gpt-9"; known: .*llama-3\.1-8b/);
    const p = await sim(["--synthetic", "--model", "llama-3.1-8b", "--policy", "psychic"]);
    assert.equal(p.exitCode, 2);
    assert.match(p.stderr, /unknown policy "psychic"; known: least-loaded/);
  });

  it("exits with 2 on missing or conflicting inputs and malformed traces", { skip: TRACES_ABSENT }, async () => {
    const cases: [string[], RegExp][] = [
      [["--model", "llama-3.1-8b"], /give --trace PATH/],
      [["--synthetic"], /give --fleet FILE, or --model NAME/],
      [["--fleet", "f.yaml", "--model", "llama-3.1-8b", "--synthetic"], /either --fleet or the shortcuts/],
      [["--fleet", join(dir, "missing.yaml"), "--synthetic"], /cannot read fleet file .*missing\.yaml: no such file/],
      [["--synthetic", "--trace", MOONCAKE, "--model", "llama-3.1-8b"], /either --trace or --synthetic/],
      [["--trace", MOONCAKE, "--model", "llama-3.1-8b", "--block-tokens", "256"], /prefix blocks are 512 tokens but the cache's are 256/],
    ];
    for (const [args, message] of cases) {
      const r = await sim(args);
      assert.equal(r.exitCode, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    // A malformed option value is commander's own error (exit code 1).
    const rate = await sim(["--synthetic", "--model", "llama-3.1-8b", "--rate", "0"]);
    assert.equal(rate.exitCode, 1);
    assert.match(rate.stderr, /--rate must be > 0/);
    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, '{"timestamp": 0, "input_length": 10, "output_length": 1}\n{"timestamp": 1}\n');
    const r = await sim(["--trace", bad, "--model", "llama-3.1-8b"]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /bad\.jsonl:2: "input_length" must be a non-negative integer/);
  });
});
