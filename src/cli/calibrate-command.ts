/**
 * `flotilla calibrate`: fit an engine profile to a table of measurements, or
 * to the requests the live fleet served (its usage ledger).
 *
 *   flotilla calibrate --measurements bench.csv --out profiles/my-vllm.json
 *   flotilla calibrate --measurements bench.csv --hold-out-by hardware --json
 *   flotilla calibrate --from-ledger --config fleet.yaml --since 2025-06-01 --out profiles/
 *
 * Only the command's definition lives here; the fit and its report load
 * when the command runs (calibrate-run.ts), so `flotilla --help` does not
 * pay for them.
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";

export interface CalibrateOptions {
  measurements?: string;
  fromLedger?: boolean;
  store?: string;
  config?: string;
  since?: number;
  replica?: string;
  hardware?: string;
  out?: string;
  name?: string;
  from?: string;
  holdOutBy: string;
  json?: boolean;
}

export interface CalibrateIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

/** The same list as hardware/calibrate.ts's HOLD_OUT_KEYS (kept here so the definition loads nothing), plus "none". */
const HOLD_OUT = ["tp", "hardware", "batch", "input_tokens", "output_tokens", "none"] as const;

function sinceDate(value: string): number {
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new InvalidArgumentError("expected a date, e.g. 2025-06-01 or 2025-06-01T12:00:00Z");
  return at;
}

function holdOut(value: string): string {
  if (!(HOLD_OUT as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${HOLD_OUT.join(", ")}`);
  return value;
}

export function registerCalibrateCommand(program: Command, io: CalibrateIo = { stdout: process.stdout, stderr: process.stderr }): void {
  program
    .command("calibrate")
    .description("fit an engine profile (efficiencies and overheads) to measured TTFT and time per output token")
    .option("--measurements <file>", "CSV: hardware, model, precision, tp, batch, input_tokens, output_tokens, ttft_ms and/or tpot_ms [, power_w, source]")
    .option("--from-ledger", "fit to the requests the fleet served, as its usage ledger timed them: one profile per hardware/model/precision/tp")
    .option("--store <url>", "--from-ledger: the ledger (sqlite:PATH or postgres://…; default: --config's server.store, else the default SQLite file)")
    .option("--config <file>", "--from-ledger: the fleet file (its store, and the shapes of its local GGUF models)")
    .option("--since <date>", "--from-ledger: requests started at or after this date (ISO 8601, e.g. 2025-06-01 or 2025-06-01T12:00Z)", sinceDate)
    .option("--replica <id>", "--from-ledger: only this replica's requests")
    .option("--hardware <id>", "--from-ledger: only requests served on this hardware")
    .option("--out <file>", "write the profile here (JSON), for estimate/sim --profile and a fleet file's profile:; --from-ledger with several setups: a folder (one file each)")
    .option("--name <name>", "the profile's name (default: the --out file's name)")
    .option("--from <profile>", "start from this profile instead of the built-in parameters")
    .option("--hold-out-by <key>", `leave-one-group-out check: ${HOLD_OUT.join(", ")}`, holdOut, "tp")
    .option("--json", "print the report as JSON")
    .action(async (opts: CalibrateOptions, cmd: Command) => {
      const { runCalibrate, isCalibrateUsageError } = await import("./calibrate-run.js");
      try {
        if (opts.fromLedger === true) await (await import("./calibrate-ledger.js")).runLedgerCalibrate(opts, io);
        else await runCalibrate(opts, io);
      } catch (err) {
        if (isCalibrateUsageError(err)) cmd.error(`flotilla calibrate: ${err.message}`, { exitCode: 2, code: "flotilla.calibrate.usage" });
        throw err;
      }
    });
}
