/**
 * `flotilla calibrate` end to end, in-process: the profile it writes is what
 * `estimate --profile` and a fleet file's `profile:` run with, and every
 * mistake in the measurements exits with code 2, names the row and column,
 * and writes nothing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { registerCalibrateCommand } from "../../src/cli/calibrate-command.js";
import { registerHardwareCommands } from "../../src/cli/hardware-commands.js";
import { estimate, median, paramsOn } from "../../src/hardware/index.js";
import type { EngineParams } from "../../src/hardware/index.js";
import { parseMeasurementsCsv } from "../../src/hardware/measurements.js";
import { parseEngineProfile } from "../../src/hardware/profile-file.js";
import { parseSimFleetYaml } from "../../src/sim/fleet-file.js";
import { runCli, type CliRun } from "../cli-run.js";
import { repoPath } from "../paths.js";

const SPLITWISE = repoPath("test/hardware/fixtures/splitwise-llama2-70b.csv");
const HEADER = "hardware,model,precision,tp,batch,input_tokens,output_tokens,ttft_ms,tpot_ms";

/** Runs `flotilla <args>` (calibrate and estimate registered) with captured output. */
const flotilla = (args: readonly string[]): Promise<CliRun> =>
  runCli(args, (program, io) => {
    registerCalibrateCommand(program, io);
    registerHardwareCommands(program);
  });

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe("flotilla calibrate", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-calibrate-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("fits Splitwise's measurements, reports the fit and each tp held out, and writes a profile estimate runs with", async () => {
    const out = join(dir, "profiles", "splitwise.json");
    const r = await flotilla(["calibrate", "--measurements", SPLITWISE, "--out", out]);
    assert.equal(r.exitCode, undefined, r.stderr);
    assert.match(r.stdout, /560 rows, 112 setups \(repeats merged into their median\) on a100, h100, tp 2, 4, 8/);
    assert.match(r.stdout, /sequenceOverheadUs +0 +\d/);
    assert.match(r.stdout, /overhead factor by device \(x the overheads above\): a100 [\d.]+, h100 [\d.]+/);
    assert.match(r.stdout, /Fit: median \|error\| TTFT [\d.]+%, TPOT [\d.]+%, all [\d.]+%/);
    assert.match(r.stdout, /Leave one tp out/);
    assert.match(r.stdout, /^tp 8 +38 /m);
    assert.match(r.stdout, /profile written to /);
    assert.equal(r.stderr, "", "source is a known column: nothing ignored");

    const profile = parseEngineProfile(await readFile(out, "utf8"), out);
    assert.equal(profile.name, "splitwise");
    const fit = profile.fit as { rows: number; leaveOneOut: { by: string; medianError: { all: number } } };
    assert.equal(fit.rows, 560);
    assert.equal(fit.leaveOneOut.by, "tp");
    assert.ok(fit.leaveOneOut.medianError.all < 0.1);

    // the same H100 TP8 setup, built-in and calibrated: measured 32.5 ms per token at batch 8 (Splitwise)
    const args = ["estimate", "--model", "llama-2-70b", "--hw", "h100", "--tp", "8", "--precision", "fp16", "--batch", "8", "--input", "512", "--output", "128", "--json"];
    const plain = JSON.parse((await flotilla(args)).stdout) as { tpotMs: number };
    const tuned = JSON.parse((await flotilla([...args, "--profile", out])).stdout) as { tpotMs: number };
    assert.ok(Math.abs(tuned.tpotMs / 32.5 - 1) < 0.1, `calibrated ${tuned.tpotMs}`);
    assert.ok(plain.tpotMs < 32.5 * 0.6, `built-in ${plain.tpotMs}`);

    // a fleet file's island runs with it too, the path relative to the fleet file
    const fleet = parseSimFleetYaml("islands:\n  - { hardware: h100, count: 1, model: llama-2-70b, tp: 8, profile: profiles/splitwise.json }\n", "fleet.yaml", {
      loadProfile: (p) => parseEngineProfile(readFileSync(join(dir, p), "utf8"), p).engine,
    });
    assert.equal(fleet.islands[0]!.params.sequenceOverheadUs, profile.engine.params.sequenceOverheadUs * (profile.engine.overheadScale.h100 ?? 1));
  });

  it("calibrated at tp 2 and 4 through the command, the profile predicts tp 8 as estimate does (bound 10%, measured 9.0%; built-in 45%)", async () => {
    const lines = (await readFile(SPLITWISE, "utf8")).split("\n");
    const header = lines.findIndex((l) => l.startsWith("hardware,"));
    const tpOf = (l: string): string => l.split(",")[3] ?? "";
    const train = join(dir, "tp2-tp4.csv");
    await writeFile(train, [lines[header], ...lines.slice(header + 1).filter((l) => l !== "" && tpOf(l) !== "8")].join("\n"));
    const out = join(dir, "tp2-tp4.json");
    const r = await flotilla(["calibrate", "--measurements", train, "--out", out, "--hold-out-by", "none"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    const engine = parseEngineProfile(await readFile(out, "utf8"), out).engine;
    const held = parseMeasurementsCsv(await readFile(SPLITWISE, "utf8"), "splitwise").rows.filter((m) => m.tp === 8);
    // what `estimate --profile` runs with on each row's device, or the built-in parameters
    const errors = (profile?: EngineParams): number[] =>
      held.flatMap((m) => {
        const params = profile !== undefined ? { params: paramsOn(profile, m.hardware.id) } : {};
        const e = estimate({ model: m.model, hardware: m.hardware, precision: m.precision, tp: 8, batch: m.batch, inputTokens: m.inputTokens, outputTokens: m.outputTokens, ...params });
        return [Math.abs(e.batchTtftMs / m.ttftMs! - 1), Math.abs(e.tpotMs / m.tpotMs! - 1)];
      });
    const calibrated = median(errors(engine));
    const builtIn = median(errors());
    assert.ok(calibrated <= 0.1, `tp 8 rows, calibrated on tp 2 and 4: ${calibrated}`);
    assert.ok(builtIn >= 0.4 && calibrated < builtIn / 2.5, `${calibrated} against the built-in ${builtIn}`);
  });

  it("prints JSON with --json, and writes nothing without --out", async () => {
    const csv = join(dir, "small.csv");
    await writeFile(csv, `${HEADER}\nh100,llama-2-70b,fp16,4,1,512,128,59.6,29.7\nh100,llama-2-70b,fp16,4,16,512,128,874,32.8\nh100,llama-2-70b,fp16,4,1,4096,128,463,29.6\n`);
    const r = await flotilla(["calibrate", "--measurements", csv, "--json"]);
    assert.equal(r.exitCode, undefined, r.stderr);
    const report = JSON.parse(r.stdout) as { profile: { kind: string; params: Record<string, number> }; setups: { tpotError: number }[] };
    assert.equal(report.profile.kind, "flotilla-engine-profile");
    assert.equal(report.setups.length, 3);
    assert.ok(report.setups.every((s) => Math.abs(s.tpotError) < 0.2));
  });

  const bad: [string, string, RegExp][] = [
    ["a missing column", "hardware,model,precision,batch,input_tokens,output_tokens,tpot_ms\nh100,llama-2-70b,fp16,1,512,128,30\n", /bad\.csv:1: missing column "tp"/],
    ["an unknown hardware id", `${HEADER}\nh900,llama-2-70b,fp16,2,1,512,128,80,37\n`, /bad\.csv:2: column "hardware": unknown hardware "h900" \(did you mean h100, h200 or a100\?\); known: /],
    ["an unknown model id", `${HEADER}\nh100,llama-2-700b,fp16,2,1,512,128,80,37\n`, /bad\.csv:2: column "model": unknown model "llama-2-700b" \(did you mean llama-2-70b, llama-2-7b or llama-3.1-70b\?\); known: /],
    ["a value that is not a number", `${HEADER}\nh100,llama-2-70b,fp16,2,1,512,128,80,3O\n`, /bad\.csv:2: column "tpot_ms": "3O" is not a number/],
    ["an empty file", "", /bad\.csv is empty: expected a header line/],
  ];
  for (const [what, text, message] of bad) {
    it(`${what}: exit code 2, the row and column named, no profile written`, async () => {
      const csv = join(dir, "bad.csv");
      await writeFile(csv, text);
      const out = join(dir, `never-${what.replace(/\W+/g, "-")}.json`);
      const r = await flotilla(["calibrate", "--measurements", csv, "--out", out]);
      assert.equal(r.exitCode, 2);
      assert.match(r.stderr, message);
      assert.equal(await exists(out), false);
    });
  }

  it("a measurements file that is not there, or a bad --from profile: exit code 2, nothing written", async () => {
    const out = join(dir, "never.json");
    const missing = await flotilla(["calibrate", "--measurements", join(dir, "nope.csv"), "--out", out]);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /cannot read measurements .*nope\.csv: no such file/);
    const from = join(dir, "from.json");
    await writeFile(from, JSON.stringify({ kind: "flotilla-engine-profile", version: 1, params: { computeEfficiency: 2 } }));
    const badFrom = await flotilla(["calibrate", "--measurements", SPLITWISE, "--from", from, "--out", out]);
    assert.equal(badFrom.exitCode, 2);
    assert.match(badFrom.stderr, /params\.computeEfficiency/);
    assert.equal(await exists(out), false);
    const badKey = await flotilla(["calibrate", "--measurements", SPLITWISE, "--hold-out-by", "colour"]);
    assert.equal(badKey.exitCode, 1);
    assert.match(badKey.stderr, /expected one of tp, hardware, batch, input_tokens, output_tokens, none/);
  });

  it("estimate --profile with a file that is not a profile exits with code 2", async () => {
    const p = join(dir, "not-a-profile.json");
    await writeFile(p, "{}");
    const r = await flotilla(["estimate", "--model", "llama-2-70b", "--hw", "h100", "--tp", "4", "--profile", p]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /not-a-profile\.json is not a valid engine profile/);
  });
});
