/**
 * The twin against the live engine, small (bench/twin-vs-live.ts is the full
 * form): the real local llama.cpp engine serves the built-in tiny model (no
 * file from ../shared needed); its profile is fitted to one run's ledger
 * rows; a run of other prompts and answers is replayed through the
 * simulator on that profile, and its median TTFT and TPOT must come within
 * a factor of 2.5 of the live ones. Loose, since the live figures move with
 * whatever else the machine runs (the tiny model decodes a token in under
 * a millisecond, so its TPOT is mostly the host's overhead: in one CI run,
 * with three other test files beside it, a profile fitted on the first run
 * predicted 1.75 ms where the second measured 0.93); it catches a broken
 * twin (a calibration that does not reach the simulator, predictions off
 * by multiples), not a drift of tens of percent. One request at a time,
 * the regime whose medians the full benchmark puts closest
 * (docs/hardware-model.md, "Calibrating from the live fleet").
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "../helpers.js";
import { calibrate, driveAlternating, errors, liveLatencies, rowsOf, startLive, traceOf, twinFleet, twinLatencies, type LiveGateway } from "../../bench/lib/twin-live.js";

const PARALLEL = 4;
let live: LiveGateway;

before(async () => {
  live = await startLive({ parallel: PARALLEL });
});
after(async () => {
  await live?.close();
});

test("a profile calibrated from one run's ledger rows replays another run within a factor of 2.5 (medians)", async () => {
  const { a, b } = await driveAlternating(
    live.url,
    [{ concurrency: 1, requests: 48, prompt: [200, 480], output: [16, 96], thinkMs: [20, 80] }],
    [{ concurrency: 1, requests: 24, prompt: [250, 450], output: [32, 96], thinkMs: [20, 80] }],
    4,
    1,
  );
  // A response reaches its client just before its row is settled: wait for every row.
  await eventually(async () => (await rowsOf(live.store, [...a, ...b])).length === a.length + b.length, "every request's ledger row", 10_000);
  const rowsA = await rowsOf(live.store, a);
  const rowsB = await rowsOf(live.store, b);
  const report = calibrate(rowsA);
  const twin = twinLatencies(twinFleet(report.engine, PARALLEL), traceOf(b, rowsB));
  for (const e of errors(liveLatencies(rowsB), twin).filter((x) => x.metric.endsWith("p50"))) {
    assert.ok(Math.abs(Math.log(e.twin / e.live)) <= Math.log(2.5), `${e.metric}: live ${e.live.toFixed(2)} ms, twin ${e.twin.toFixed(2)} ms (${(e.error * 100).toFixed(0)}%)`);
  }
});
