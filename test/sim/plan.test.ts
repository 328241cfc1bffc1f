/**
 * `flotilla plan` and its search: each setup's replica count is the fewest
 * whose twin replay meets the objective (one fewer does not), the choice is
 * the objective's best, the frontier holds no dominated fleet, the fleet
 * file it writes replays in `flotilla sim` to the same result, and an
 * objective nothing meets, an unknown name and a setup that cannot fit are
 * each answered plainly.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { registerPlanCommand } from "../../src/cli/plan-command.js";
import { registerSimCommand } from "../../src/cli/sim-command.js";
import { buildReport, resolveSimFleet, simulate, syntheticTrace } from "../../src/sim/index.js";
import { HOST_POWER_PER_DEVICE_W, PlanUsageError, idleBound, paretoFrontier, plan, type PlanInput } from "../../src/sim/plan.js";
import { planOnThreads } from "../../src/sim/plan-threads.js";
import { runCli, type CliRun } from "../cli-run.js";

/** Runs `flotilla plan` or `flotilla sim` in-process with captured output. */
const cli = (args: readonly string[]): Promise<CliRun> =>
  runCli(args, (program, io) => {
    registerPlanCommand(program, io);
    registerSimCommand(program, io);
  });

const trace = syntheticTrace({ requests: 400, ratePerS: 8, input: { mean: 1024, cv: 1, min: 1, max: 32768 }, output: { mean: 128, cv: 1, min: 1, max: 4096 }, seed: 1 });
const input: PlanInput = {
  model: "llama-3.1-70b",
  hardware: ["h100", "h200"],
  precisions: ["fp8", "bf16"],
  tps: [1, 2, 4],
  trace,
  slo: { ttftMs: 1000, tpotMs: 60, share: 0.95 },
  objective: "cost",
  maxReplicas: 64,
  seed: 1,
};

describe("the plan's search", () => {
  const result = plan(input);

  it("gives each setup the fewest replicas that meet the objective: one fewer does not", () => {
    assert.ok(result.rows.length >= 6, `${result.rows.length} setups searched`);
    for (const row of result.rows.filter((r) => r.meets && r.replicas > 1)) {
      const fewer = resolveSimFleet({ islands: [{ name: "x", hardware: row.hardware, count: row.replicas - 1, model: input.model, precision: row.precision, tp: row.tp }], slo: { ttft_ms: 1000, tpot_ms: 60 }, seed: 1 });
      const share = buildReport(simulate({ fleet: fewer, trace })).goodput.share;
      assert.ok(share < 0.95, `${row.hardware} ${row.precision} tp${row.tp}: ${row.replicas - 1} replicas already meet it (${share})`);
      assert.ok(row.goodShare >= 0.95);
    }
  });

  it("rules out by the hardware model only setups the replays could not save: its bound is never below the share a fleet of the most replicas meets", () => {
    for (const [hardware, precision, tp] of [["h100", "fp8", 2], ["h200", "bf16", 4], ["lpddr-chip", "fp8", 8]] as const) {
      const fleet = resolveSimFleet({ islands: [{ name: "x", hardware, count: 64, model: input.model, precision, tp }], slo: { ttft_ms: 300, tpot_ms: 40 }, seed: 1 });
      const slo = { ttftMs: 300, tpotMs: 40, share: 0.9 };
      const bound = idleBound(fleet.islands[0]!, trace, slo);
      const share = buildReport(simulate({ fleet, trace })).goodput.share;
      assert.ok(bound.share >= share, `${hardware} ${precision} tp${tp}: bound ${bound.share} < ${share}`);
    }
  });

  it("chooses the cheapest fleet that meets the objective, keeps only undominated ones on the frontier, and names setups that cannot fit", () => {
    const met = result.rows.filter((r) => r.meets);
    assert.equal(result.best, met.reduce((a, r) => (r.usdPerMTok < a.usdPerMTok ? r : a)));
    assert.ok(result.frontier.includes(result.best!));
    assert.deepEqual(paretoFrontier(result.frontier), [...result.frontier], "no frontier fleet dominates another");
    for (const r of met.filter((m) => !result.frontier.includes(m))) {
      assert.ok(result.frontier.some((f) => f.usdPerMTok <= r.usdPerMTok && f.joulesPerToken <= r.joulesPerToken && f.devices <= r.devices), "every other fleet is dominated by one on the frontier");
    }
    const unfit = result.unfit.find((u) => u.hardware === "h100" && u.precision === "bf16" && u.tp === 1);
    assert.match(unfit?.reason ?? "", /does not fit on h100 with tp 1; tp 2 fits/);
    const byDevices = plan({ ...input, objective: "devices" }).best!;
    assert.equal(byDevices.devices, Math.min(...met.map((r) => r.devices)));
  });
});

describe("the plan on worker threads", () => {
  it("gives the same answer on 2 threads as on one, setups in the same order", async () => {
    const one = plan(input);
    const heard: string[] = [];
    const two = await planOnThreads({ ...input, onCandidate: (r, done, total) => heard.push(`${r.hardware} ${r.precision} tp${r.tp} ${done}/${total}`) }, 2);
    assert.deepEqual(two, one);
    assert.equal(heard.length, one.rows.length, "each searched setup is heard once");
    await assert.rejects(planOnThreads({ ...input, hardware: ["h100", "h1000"] }, 2), (err: Error) => err instanceof PlanUsageError && /unknown hardware "h1000"/.test(err.message));
  });
});

describe("the plan's limits: power, money, racks and users", () => {
  // 400 requests at 24/s need several 70B replicas; at most 2 fit the limits below.
  const busy = syntheticTrace({ requests: 400, ratePerS: 24, input: { mean: 1024, cv: 1, min: 1, max: 32768 }, output: { mean: 128, cv: 1, min: 1, max: 4096 }, seed: 1 });
  const space = { ...input, trace: busy, hardware: ["h100"], precisions: ["fp8"], tps: [2] };
  const itKw = (2 * 700 * (1 + HOST_POWER_PER_DEVICE_W)) / 1000;

  it("a power limit caps the replicas: under it nothing meets the objective, and the limit is named as what binds", () => {
    const free = plan({ ...space, userTokensPerMonth: 2_000_000 }).rows[0]!;
    assert.ok(free.meets && free.replicas > 2, `${free.replicas} replicas without a limit`);
    assert.equal(free.peakKw, itKw * 1.2 * free.replicas, "devices at TDP, their hosts' share, the PUE");
    assert.equal(free.racks, Math.ceil(free.replicas / Math.floor(30 / itKw)));
    assert.equal(free.usdPerUserMonth, (free.usdPerMTok * 2_000_000) / 1e6);
    const capped = plan({ ...space, limits: { facilityKw: itKw * 1.2 * 2 + 0.1 } });
    assert.equal(capped.best, undefined);
    assert.deepEqual([capped.rows[0]!.replicas, capped.rows[0]!.cappedBy], [2, "power"]);
    const money = plan({ ...space, limits: { usdPerHour: 0.01 } });
    assert.match(money.unfit[0]?.reason ?? "", /one replica costs [\d.]+ USD an hour, more than the 0.01 allowed/);
    const racks = plan({ ...space, rackKw: itKw * 3 }).rows[0]!;
    assert.equal(racks.racks, Math.ceil(racks.replicas / 3), "three replicas a rack");
    assert.match(plan({ ...space, rackKw: 1 }).unfit[0]?.reason ?? "", /more than a 1 kW rack holds/);
  });
});

describe("flotilla plan", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "flotilla-plan-"))));
  after(() => rm(dir, { recursive: true, force: true }));

  const workload = ["--synthetic", "--requests", "400", "--rate", "8", "--ttft-slo", "1000", "--tpot-slo", "60", "--slo-share", "0.95"];

  it("prints the table, writes the chosen fleet, and that fleet file replays in flotilla sim to the same result", async () => {
    const out = join(dir, "planned.yaml");
    const chart = join(dir, "cost.svg");
    const run = await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h100,h200", "--precision", "fp8", "--tp", "1,2,4", ...workload, "--out", out, "--chart", chart]);
    assert.equal(run.exitCode, undefined, run.stderr);
    assert.match(run.stdout, /\| setup \| replicas \| devices \| met \| \$\/M tok/);
    const chosen = /chosen by cost: (\S+) (\S+) tp(\d+) x (\d+)/.exec(run.stdout);
    assert.ok(chosen !== null, run.stdout);
    assert.match(await readFile(out, "utf8"), new RegExp(`hardware: ${chosen[1]}[\\s\\S]*count: ${chosen[4]}`));
    const svg = await readFile(chart, "utf8");
    assert.ok(svg.startsWith("<svg") && svg.includes(`${chosen[1]} ${chosen[2]} tp${chosen[3]} x ${chosen[4]}`), "the chart shows the chosen fleet");
    const json = JSON.parse((await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h100,h200", "--precision", "fp8", "--tp", "1,2,4", ...workload, "--json"])).stdout) as { best: { goodShare: number; usdPerMTok: number } };
    const replay = await cli(["sim", "--fleet", out, "--synthetic", "--requests", "400", "--rate", "8", "--json", "--no-progress"]);
    const report = JSON.parse(replay.stdout) as { goodput: { share: number }; cost: { usdPerMTok: number } };
    assert.equal(report.goodput.share, json.best.goodShare);
    assert.equal(report.cost.usdPerMTok, json.best.usdPerMTok);
  });

  it("an objective nothing meets is answered with the closest fleet and its binding limit, and exit status 1", async () => {
    // More load than 2 replicas take: the replays find it.
    const busy = await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h100", "--precision", "fp8", "--tp", "8", "--synthetic", "--requests", "400", "--rate", "200", "--max-replicas", "2"]);
    assert.equal(busy.exitCode, 1);
    assert.match(busy.stdout, /no setup met the objective within 2 replicas\. The closest: h100 fp8 tp8 x 2, [\d.]+% of requests within it; the binding limit is (TTFT|TPOT) \(p99/);
    // An output token faster than any decode step: the hardware model rules it out without a replay.
    const fast = await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h100", "--precision", "fp8", "--tp", "8", "--synthetic", "--requests", "200", "--rate", "8", "--tpot-slo", "2"]);
    assert.equal(fast.exitCode, 1);
    assert.match(fast.stdout, /The closest: h100 fp8 tp8, where at most 0\.0% of requests can meet the objective on it, even each alone on an idle replica \(first token up to \d+ ms, output tokens up to [\d.]+ ms\)/);
    assert.doesNotMatch(fast.stderr, /replays/, "no replay was spent on it");
    const power = await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h100", "--precision", "fp8", "--tp", "2", "--synthetic", "--requests", "400", "--rate", "24", "--max-power-kw", "8", "--user-tokens", "1000000"]);
    assert.equal(power.exitCode, 1);
    assert.match(power.stdout, /\$\/user-mo \| J\/tok \| \$\/h \| kW mean \| kW peak \| racks/);
    assert.match(power.stdout, /the binding limit is the power limit \(8 kW at peak\), which allows no more replicas/);
  });

  it("an unknown name is a usage error listing the known ones; bad lists are refused", async () => {
    const hw = await cli(["plan", "--model", "llama-3.1-70b", "--hw", "h1000", ...workload]);
    assert.equal(hw.exitCode, 2);
    assert.match(hw.stderr, /unknown hardware "h1000" \(did you mean h100, a100 or h200\?\); known: h100, h200/);
    const model = await cli(["plan", "--model", "llama-9", ...workload]);
    assert.match(model.stderr, /unknown model "llama-9"/);
    assert.match((await cli(["plan", ...workload])).stderr, /give --model NAME/);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", "--tp", "2,x", ...workload])).stderr, /--tp sizes must be positive integers, got "x"/);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--diurnal-period", "60"])).stderr, /--diurnal-period shapes the curve --peak-to-trough gives; give that too/);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--peak-to-trough", "0.5"])).stderr, /--peak-to-trough/);
  });
});
