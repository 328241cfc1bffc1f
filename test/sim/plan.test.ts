/**
 * `flotilla plan` and its search: each setup's replica count is the fewest
 * whose twin replay meets the objective (one fewer does not), the choice is
 * the objective's best, the frontier holds no dominated fleet, the fleet
 * file it writes replays in `flotilla sim` to the same result, and an
 * objective nothing meets, an unknown name and a setup that cannot fit are
 * each answered plainly.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { registerPlanCommand } from "../../src/cli/plan-command.js";
import { registerSimCommand } from "../../src/cli/sim-command.js";
import { FITTED_PARAMS } from "../../src/hardware/index.js";
import { serializeEngineProfile } from "../../src/hardware/profile-file.js";
import { buildReport, resolveSimFleet, simulate, syntheticTrace } from "../../src/sim/index.js";
import { HOST_POWER_PER_DEVICE_W, PlanUsageError, paretoFrontier, plan, planSpace, type PlanInput } from "../../src/sim/plan.js";
import { idleBound, workloadOf } from "../../src/sim/plan-bound.js";
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
  const result = plan({ ...input, exhaustive: true });

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
      const bound = idleBound(fleet.islands[0]!, fleet.islands[0]!, trace, workloadOf(trace, slo), slo);
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
  it("replays the same candidates on 2 threads as on one when exhaustive, and chooses the same fleet when pruning", async () => {
    const one = plan({ ...input, exhaustive: true });
    const heard: string[] = [];
    const two = await planOnThreads({ ...input, exhaustive: true, onCandidate: (r, done, total) => heard.push(`${r.hardware} ${r.precision} tp${r.tp} ${done}/${total}`) }, 2);
    assert.deepEqual(two, one);
    assert.equal(heard.length, one.rows.length, "each searched candidate is heard once");
    assert.deepEqual((await planOnThreads(input, 2)).best, plan(input).best);
    await assert.rejects(planOnThreads({ ...input, hardware: ["h100", "h1000"] }, 2), (err: Error) => err instanceof PlanUsageError && /unknown hardware "h1000"/.test(err.message));
  });
});

describe("disaggregated and mixed fleets in the plan", () => {
  const space: PlanInput = { ...input, hardware: ["h100", "lpddr-chip"], precisions: ["fp8"], tps: [1, 2, 4], shapes: ["aggregated", "disaggregated", "mixed"] };
  const all = plan({ ...space, exhaustive: true });
  const pruned = plan(space);

  it("searches every shape, and pruning by the capacity bound replays fewer candidates and chooses the fleet brute force chooses", () => {
    for (const shape of ["aggregated", "disaggregated", "mixed"] as const) assert.ok(all.rows.some((r) => r.shape === shape && r.meets), `some ${shape} fleet meets it`);
    assert.ok(pruned.rows.length < all.rows.length, `${pruned.rows.length} replayed against ${all.rows.length}`);
    assert.ok(pruned.ruledOut > all.ruledOut);
    assert.deepEqual(pruned.best, all.best);
    // By energy too: the estimate of joules per token ranks and prunes as money's does.
    const frugal = plan({ ...space, objective: "energy" });
    const frugalAll = plan({ ...space, objective: "energy", exhaustive: true });
    assert.ok(frugal.rows.length < frugalAll.rows.length, `${frugal.rows.length} replayed against ${frugalAll.rows.length}`);
    assert.deepEqual(frugal.best, frugalAll.best);
  });

  it("starts no search below a count a replay meets: each fleet found has at least its capacity bound on every island", () => {
    const jobs = planSpace({ ...space, exhaustive: true }).jobs;
    for (const row of all.rows.filter((r) => r.meets)) {
      const job = jobs.find((j) => j.candidate.shape === row.shape && j.candidate.setup.tp === row.tp && j.candidate.setup.hardware === row.hardware && j.candidate.prefill?.tp === row.prefill?.tp && j.candidate.prefill?.hardware === row.prefill?.hardware)!;
      const counts = row.prefill === undefined ? [row.replicas] : [row.prefill.replicas, row.replicas];
      counts.forEach((n, k) => assert.ok(job.lowest[k]! <= n, `${row.shape} ${row.hardware} tp${row.tp}: bound ${job.lowest.join("/")} above ${counts.join("/")}`));
    }
  });

  it("sizes each island of a disaggregated fleet to the fewest beside the other's count: one fewer of either misses the objective", () => {
    const row = all.rows.find((r) => r.meets && r.prefill !== undefined && r.prefill.replicas > 1 && r.replicas > 1) ?? all.rows.find((r) => r.meets && r.prefill !== undefined && r.prefill.replicas > 1)!;
    const share = (prefill: number, decode: number): number => {
      const islands = [
        { name: "p", role: "prefill", hardware: row.prefill!.hardware, count: prefill, model: input.model, precision: "fp8", tp: row.prefill!.tp },
        { name: "d", role: "decode", hardware: row.hardware, count: decode, model: input.model, precision: "fp8", tp: row.tp },
      ];
      return buildReport(simulate({ fleet: resolveSimFleet({ islands, slo: { ttft_ms: 1000, tpot_ms: 60 }, seed: 1 }), trace })).goodput.share;
    };
    assert.equal(share(row.prefill!.replicas, row.replicas), row.goodShare);
    assert.ok(share(row.prefill!.replicas - 1, row.replicas) < 0.95, "one prefill replica fewer misses it");
    if (row.replicas > 1) assert.ok(share(row.prefill!.replicas, row.replicas - 1) < 0.95, "one decode replica fewer misses it");
    assert.ok(row.kvTransfer !== undefined && row.kvTransfer.gb > 0, "the KV it moved is reported");
    assert.equal(row.devices, row.prefill!.replicas * row.prefill!.tp + row.replicas * row.tp);
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
    assert.match(run.stdout, /\| fleet \| shape \| devices \| met \| \$\/M tok/);
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

  it("--profile: every candidate runs the calibrated engine, a slower one needs more devices, and the fleet file it writes names the profile and replays to the same result", async () => {
    const args = ["plan", "--model", "llama-3.1-70b", "--hw", "h100,h200", "--precision", "fp8", "--tp", "1,2,4", ...workload, "--json"];
    const slow = join(dir, "slow-engine.json");
    // An engine with a quarter of the built-in kernels' efficiency and busier hosts.
    await writeFile(slow, serializeEngineProfile({ engine: { params: { ...FITTED_PARAMS, computeEfficiency: 0.25, bandwidthEfficiency: 0.3, stepOverheadMs: 2 }, overheadScale: {} } }));
    type Best = { best: { devices: number; goodShare: number; usdPerMTok: number } };
    const builtIn = JSON.parse((await cli(args)).stdout) as Best;
    const out = join(dir, "slow.yaml");
    const run = await cli([...args, "--profile", slow, "--out", out]);
    assert.equal(run.exitCode, undefined, run.stderr);
    const calibrated = JSON.parse(run.stdout) as Best;
    assert.ok(calibrated.best.devices > builtIn.best.devices, `${calibrated.best.devices} devices on the slow engine against ${builtIn.best.devices}`);
    assert.match(await readFile(out, "utf8"), new RegExp(`profile: ${slow.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    const replay = JSON.parse((await cli(["sim", "--fleet", out, "--synthetic", "--requests", "400", "--rate", "8", "--json", "--no-progress"])).stdout) as { goodput: { share: number }; cost: { usdPerMTok: number } };
    assert.deepEqual([replay.goodput.share, replay.cost.usdPerMTok], [calibrated.best.goodShare, calibrated.best.usdPerMTok]);
    const missing = await cli([...args, "--profile", join(dir, "none.json")]);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /--profile: cannot read profile .*none\.json: no such file/);
  });

  it("a disaggregated choice is written as prefill and decode islands with the KV link, and replays in flotilla sim to the same result", async () => {
    const out = join(dir, "split.yaml");
    const args = ["plan", "--model", "llama-3.1-70b", "--hw", "h100,lpddr-chip", "--precision", "fp8", "--tp", "1,2,4", ...workload, "--shapes", "disaggregated,mixed", "--kv-link", "ethernet-100g"];
    const run = await cli([...args, "--out", out]);
    assert.equal(run.exitCode, undefined, run.stderr);
    assert.match(run.stdout, /chosen by cost: prefill \S+ fp8 tp\d x \d+ \+ decode \S+ fp8 tp\d x \d+/);
    assert.match(run.stdout, /KV moved GB/);
    assert.match(run.stdout, /\d+ of \d+ candidates were ruled out by the hardware model without a replay/);
    const file = await readFile(out, "utf8");
    assert.match(file, /role: prefill[\s\S]*role: decode[\s\S]*kv_transfer:\s+link: ethernet-100g/);
    const json = JSON.parse((await cli([...args, "--json"])).stdout) as { best: { goodShare: number; usdPerMTok: number; shape: string } };
    assert.notEqual(json.best.shape, "aggregated");
    const replay = await cli(["sim", "--fleet", out, "--synthetic", "--requests", "400", "--rate", "8", "--json", "--no-progress"]);
    const report = JSON.parse(replay.stdout) as { goodput: { share: number }; cost: { usdPerMTok: number } };
    assert.deepEqual([report.goodput.share, report.cost.usdPerMTok], [json.best.goodShare, json.best.usdPerMTok]);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--shapes", "split"])).stderr, /--shapes: unknown shape "split"; known: aggregated, disaggregated, mixed/);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--hw", "h100", "--shapes", "mixed"])).stderr, /--shapes mixed pairs two kinds of hardware: name at least two in --hw/);
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--kv-link", "pcie"])).stderr, /--kv-link: unknown link "pcie"; known: nvlink, rdma-400g, ethernet-100g/);
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
    // The synthetic spec's prefix sharing reaches the workload.
    assert.match((await cli(["plan", "--model", "llama-3.1-70b", ...workload, "--prefix-groups", "8", "--prefix-share", "2"])).stderr, /--prefix-share must be between 0 and 1/);
  });
});
