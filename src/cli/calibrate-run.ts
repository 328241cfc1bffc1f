/**
 * What `flotilla calibrate` does once its options are parsed: read the
 * measurements, fit, check by leaving groups out, write the profile, print
 * the report. Loaded on demand by calibrate-command.ts.
 *
 * The profile is written only after everything else succeeded, through a
 * temporary file renamed into place, so a failed run leaves no file (and
 * never half of one).
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { CalibrationReport, HoldOutKey } from "../hardware/calibrate.js";
import { calibrateEngine } from "../hardware/calibrate.js";
import { FITTED_PARAMS } from "../hardware/index.js";
import type { EngineParams } from "../hardware/index.js";
import { MeasurementsError, parseMeasurementsCsv } from "../hardware/measurements.js";
import { serializeEngineProfile } from "../hardware/profile-file.js";
import type { CalibrateIo, CalibrateOptions } from "./calibrate-command.js";
import { fitRecord, formatCalibration, setupsJson } from "./calibrate-report.js";
import { ProfileReadError, readProfile } from "./hardware-commands.js";

/** A mistake in what the user gave (a file, a value): exit code 2. */
export class CalibrateUsageError extends Error {
  override readonly name = "CalibrateUsageError";
}

export function isCalibrateUsageError(err: unknown): err is Error {
  return err instanceof CalibrateUsageError || err instanceof MeasurementsError || err instanceof ProfileReadError;
}

async function readMeasurements(path: string): Promise<string> {
  return readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new CalibrateUsageError(`cannot read measurements ${path}: ${err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "a directory, not a file" : err.message}`);
  });
}

/** Writes `text` to `path` whole or not at all. */
export async function writeAtomically(path: string, text: string): Promise<void> {
  const target = resolve(path);
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, target);
}

/** Where the fit starts (and what it is pulled towards): --from's profile, else the built-in parameters. */
export async function startParams(opts: CalibrateOptions): Promise<EngineParams> {
  return opts.from !== undefined ? readProfile(opts.from) : { params: FITTED_PARAMS, overheadScale: {} };
}

export function holdOutOf(opts: CalibrateOptions): HoldOutKey | undefined {
  return opts.holdOutBy === "none" ? undefined : (opts.holdOutBy as HoldOutKey);
}

/** Runs the command; returns the report (for tests and callers that want the numbers). */
export async function runCalibrate(opts: CalibrateOptions, io: CalibrateIo): Promise<CalibrationReport> {
  const source = opts.measurements;
  if (source === undefined) throw new CalibrateUsageError("give the measurements: --measurements FILE (a CSV), or --from-ledger (the requests the fleet served)");
  const ledgerOnly = (["store", "config", "since", "replica", "hardware"] as const).filter((k) => opts[k] !== undefined);
  if (ledgerOnly.length > 0) throw new CalibrateUsageError(`${ledgerOnly.map((k) => `--${k}`).join(", ")} ${ledgerOnly.length > 1 ? "go" : "goes"} with --from-ledger`);
  const text = await readMeasurements(source);
  const { rows, ignoredColumns } = parseMeasurementsCsv(text, source);
  if (ignoredColumns.length > 0) io.stderr.write(`flotilla calibrate: ignoring column${ignoredColumns.length > 1 ? "s" : ""} ${ignoredColumns.map((c) => `"${c}"`).join(", ")} (not a measurement column)\n`);
  const start = await startParams(opts);
  const report = calibrateEngine(rows, start, holdOutOf(opts));
  const name = opts.name ?? basename(opts.out ?? source).replace(/\.(json|csv)$/i, "");
  const fit = fitRecord(report, source);
  const profileText = serializeEngineProfile({ name, engine: report.engine, fit });
  if (opts.out !== undefined) await writeAtomically(opts.out, profileText);
  if (opts.json === true) {
    io.stdout.write(`${JSON.stringify({ profile: JSON.parse(profileText) as unknown, setups: setupsJson(report.setups) }, null, 2)}\n`);
  } else {
    io.stdout.write(`${formatCalibration(report, start, source)}\n`);
    if (opts.out !== undefined) io.stdout.write(`\nprofile written to ${resolve(opts.out)}\n`);
  }
  return report;
}
