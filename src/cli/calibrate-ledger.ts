/**
 * `flotilla calibrate --from-ledger`: fit an engine profile to the requests
 * the live fleet served, as the usage ledger timed them, one profile per
 * setup (hardware, model shape, precision, tp) the rows were served on.
 * Loaded on demand by calibrate-command.ts.
 *
 *   flotilla calibrate --from-ledger --config fleet.yaml [--since 2025-06-01] [--replica m/0 | --hardware h100] --out profiles/
 *   flotilla calibrate --from-ledger --store postgres://… --hardware h100 --out profiles/h100.json
 */
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { CalibrationReport } from "../hardware/calibrate.js";
import { calibrateEngine } from "../hardware/calibrate.js";
import type { EngineParams } from "../hardware/index.js";
import { serializeEngineProfile } from "../hardware/profile-file.js";
import { readFleetFile } from "../fleet/load.js";
import { DEFAULT_STORE_FILE, storeUrl } from "../metering/config.js";
import { ggufShapes, measurementsFromLedger, recordedSetup, type LedgerGroup } from "../metering/ledger-calibration.js";
import { defaultCacheDir } from "../gguf/default-model.js";
import { openStore } from "../store/index.js";
import type { LedgerRow } from "../store/types.js";
import type { CalibrateIo, CalibrateOptions } from "./calibrate-command.js";
import { fitRecord, formatCalibration, setupsJson } from "./calibrate-report.js";
import { CalibrateUsageError, holdOutOf, startParams, writeAtomically } from "./calibrate-run.js";

/** One setup's fit: the group it was fitted to, its report, and where its profile went. */
export interface LedgerCalibration {
  readonly group: LedgerGroup;
  readonly report: CalibrationReport;
  readonly profile: string;
  readonly path: string | undefined;
}

/** The ledger's URL, and the fleet file's shapes of its local models where --config is given. */
async function ledgerSource(opts: CalibrateOptions): Promise<{ url: string; config: Awaited<ReturnType<typeof readFleetFile>> | undefined }> {
  const config = opts.config === undefined ? undefined : await readFleetFile(opts.config).catch((err: Error) => {
    throw new CalibrateUsageError(`cannot read --config ${opts.config}: ${err.message}`);
  });
  const url = opts.store ?? (config === undefined ? `sqlite:${join(defaultCacheDir(), DEFAULT_STORE_FILE)}` : storeUrl(config.config, { baseDir: config.baseDir, env: process.env }));
  if (url === undefined) throw new CalibrateUsageError(`${opts.config} says server.store: none, so there is no ledger; give --store URL`);
  return { url, config };
}

/** The timed rows the options select. */
async function readRows(url: string, opts: CalibrateOptions): Promise<{ rows: LedgerRow[]; where: string }> {
  const store = await openStore(url).catch((err: Error) => {
    throw new CalibrateUsageError(err.message);
  });
  try {
    const rows = await store.ledger({
      timed: true,
      ...(opts.since === undefined ? {} : { since: opts.since }),
      ...(opts.replica === undefined ? {} : { replica: opts.replica }),
      ...(opts.hardware === undefined ? {} : { hardware: opts.hardware }),
    });
    return { rows, where: store.where };
  } finally {
    await store.close();
  }
}

/** What was asked for, for messages and the profile's `fit` record. */
function describe(where: string, opts: CalibrateOptions): string {
  const filters = [
    opts.since === undefined ? "" : ` since ${new Date(opts.since).toISOString()}`,
    opts.replica === undefined ? "" : ` replica ${opts.replica}`,
    opts.hardware === undefined ? "" : ` hardware ${opts.hardware}`,
  ];
  return `ledger ${where}${filters.join("")}`;
}

/** Where each group's profile goes: --out itself for one group, a file per group in --out as a folder. */
async function outPaths(out: string | undefined, groups: readonly LedgerGroup[]): Promise<(string | undefined)[]> {
  if (out === undefined) return groups.map(() => undefined);
  const folder = out.endsWith("/") || (await stat(out).then((s) => s.isDirectory(), () => false));
  if (folder) return groups.map((g) => resolve(out, `${g.key.replace(/[^\w.-]+/g, "-")}.json`));
  if (groups.length === 1) return [resolve(out)];
  throw new CalibrateUsageError(`the ledger holds ${groups.length} setups (${groups.map((g) => g.key).join(", ")}): pick one with --hardware or --replica, or give --out a folder (ending in /) for a profile each`);
}

function fitOne(group: LedgerGroup, start: EngineParams, source: string, opts: CalibrateOptions, path: string | undefined): LedgerCalibration {
  const report = calibrateEngine(group.measurements, start, holdOutOf(opts));
  const name = opts.name ?? group.key.replace(/\//g, "-");
  const fit = { ...fitRecord(report, source), group: group.key, requests: group.requests };
  return { group, report, profile: serializeEngineProfile({ name, engine: report.engine, fit }), path };
}

/** Runs the command; returns each setup's fit (for tests and callers that want the numbers). */
export async function runLedgerCalibrate(opts: CalibrateOptions, io: CalibrateIo): Promise<LedgerCalibration[]> {
  if (opts.measurements !== undefined) throw new CalibrateUsageError("--measurements and --from-ledger are two sources of measurements; give one");
  const { url, config } = await ledgerSource(opts);
  const { rows, where } = await readRows(url, opts);
  const source = describe(where, opts);
  const shapes = config === undefined ? new Map() : await ggufShapes(config.config, config.baseDir);
  const { groups, skipped } = measurementsFromLedger(rows, recordedSetup(shapes));
  for (const [why, n] of skipped) io.stderr.write(`flotilla calibrate: left out ${n} request${n > 1 ? "s" : ""}: ${why}\n`);
  if (groups.length === 0) throw new CalibrateUsageError(`${source}: no timed requests on a replica with hardware to fit to (${rows.length} timed rows read)`);
  const start = await startParams(opts);
  const paths = await outPaths(opts.out, groups);
  const fits = groups.map((g, i) => fitOne(g, start, source, opts, paths[i]));
  for (const f of fits) if (f.path !== undefined) await writeAtomically(f.path, f.profile);
  if (opts.json === true) {
    const out = fits.map((f) => ({ group: f.group.key, requests: f.group.requests, profile: JSON.parse(f.profile) as unknown, setups: setupsJson(f.report.setups) }));
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return fits;
  }
  for (const f of fits) {
    io.stdout.write(`${formatCalibration(f.report, start, `${source}, ${f.group.key} (${f.group.requests} requests)`)}\n`);
    if (f.path !== undefined) io.stdout.write(`\nprofile written to ${f.path}\n`);
    io.stdout.write("\n");
  }
  return fits;
}
