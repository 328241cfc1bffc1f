/**
 * Calibrating from the live fleet: the usage ledger's timed rows as the
 * measurements `flotilla calibrate` fits an engine profile to
 * (hardware/measurements.ts), grouped by the setup that served them.
 *
 * A row's setup is what it recorded when it was settled (ReplicaSetup: the
 * hardware, the model's shape, precision and tensor parallelism of its
 * replica's fleet-file entry), never looked up later: replica ids are
 * positions in the fleet file, so an edited file would give old rows another
 * replica's setup. A model shape read from a GGUF file is not in the
 * catalog; the fleet file's local replicas give those (ggufShapes).
 *
 * Each row gives two measurements of a served request (`served`): its TTFT
 * at the batch it joined, and its TPOT at the mean batch it decoded among.
 * Requests of about the same lengths at the same batch share a bucket (see
 * `bucket`), and each bucket is one measurement: the
 * median of what its requests measured, at the median of their lengths. So
 * a request stalled by something else on the host (a garbage collection,
 * another process) does not pull the fit, and the fit stays fast however
 * large the ledger.
 */
import { isAbsolute, resolve } from "node:path";
import { readGgufSpec } from "../engines/gguf-spec.js";
import type { FleetConfig } from "../fleet/config.js";
import type { HardwareSpec, ModelSpec, PrecisionSpec } from "../hardware/index.js";
import { findHardware, findModel, findPrecision, UnknownNameError } from "../hardware/index.js";
import type { Measurement } from "../hardware/measurements.js";
import type { GenerationTiming, LedgerRow } from "../store/types.js";
import { UNKNOWN_HARDWARE } from "./pricing.js";

/** What served a group of rows, resolved against the catalogs. */
export interface LedgerSetup {
  readonly hardware: HardwareSpec;
  readonly model: ModelSpec;
  readonly precision: PrecisionSpec;
  readonly tp: number;
}

export interface LedgerGroup {
  /** hardware/model/precision/tp: names the group in reports and profile files. */
  readonly key: string;
  readonly setup: LedgerSetup;
  /** Ledger rows in the group. */
  readonly requests: number;
  readonly measurements: readonly Measurement[];
}

export interface LedgerMeasurements {
  readonly groups: readonly LedgerGroup[];
  /** Rows left out, by why. */
  readonly skipped: ReadonlyMap<string, number>;
}

/** A row's setup, or why it has none the hardware model can use. */
export type SetupOf = (row: LedgerRow) => LedgerSetup | string;

/**
 * The setup a row recorded, resolved against the catalogs; `shapes` are
 * model shapes by id beyond the catalog's (ggufShapes).
 */
export function recordedSetup(shapes: ReadonlyMap<string, ModelSpec> = new Map()): SetupOf {
  return (row) => {
    if (row.setup === null || row.hardware === null || row.hardware === UNKNOWN_HARDWARE) return "its replica has no hardware in the fleet file";
    const { spec, precision, tp } = row.setup;
    try {
      return { hardware: findHardware(row.hardware), model: shapes.get(spec) ?? findModel(spec), precision: findPrecision(precision), tp };
    } catch (err) {
      if (!(err instanceof UnknownNameError)) throw err;
      return err.kind === "model" ? `model shape "${spec}" is neither in the catalog nor a local replica's GGUF file in --config` : err.message;
    }
  };
}

/** The model shapes of the fleet file's local replicas (read from their GGUF files), by id: what rows served by them recorded as `spec`. */
export async function ggufShapes(config: FleetConfig, baseDir: string): Promise<Map<string, ModelSpec>> {
  const shapes = new Map<string, ModelSpec>();
  for (const m of config.models) {
    for (const rc of m.replicas) {
      if (rc.engine !== "local" || rc.spec !== undefined) continue;
      const { spec } = await readGgufSpec(isAbsolute(rc.path) ? rc.path : resolve(baseDir, rc.path));
      shapes.set(spec.id, spec);
    }
  }
  return shapes;
}

/**
 * Geometric buckets, `perDoubling` to a doubling of the length: requests of
 * about the same length share one. Two to a doubling (41% wide) for prompts,
 * whose length TTFT follows; one for outputs, which move TPOT only through
 * the context a decode step reads.
 */
function bucket(n: number, perDoubling: number): number {
  return n <= 0 ? -1 : Math.round(perDoubling * Math.log2(n));
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Requests of one setup that measured one metric at about the same batch, prompt and output. */
interface Bucket {
  readonly metric: "ttftMs" | "tpotMs";
  readonly batch: number;
  readonly line: number;
  readonly input: number[];
  readonly cached: number[];
  readonly output: number[];
  readonly values: number[];
}

/**
 * Where a row's two measurements go: its TTFT by the batch it joined, its
 * prompt and cached tokens; its TPOT by the mean batch it decoded among
 * (to the nearest whole request), its prompt and output tokens.
 */
function bucketKeys(row: LedgerRow, timing: GenerationTiming): { readonly metric: Bucket["metric"]; readonly batch: number; readonly key: string; readonly value: number }[] {
  const keys = [{ metric: "ttftMs" as const, batch: timing.batch, key: `ttft|${timing.batch}|${bucket(row.inputTokens, 2)}|${bucket(row.cachedTokens, 2)}`, value: timing.ttftMs }];
  if (timing.tpotMs === null || timing.tpotMs <= 0) return keys;
  const batch = Math.max(1, Math.round(timing.batchMean ?? timing.batch));
  return [...keys, { metric: "tpotMs" as const, batch, key: `tpot|${batch}|${bucket(row.inputTokens, 2)}|${bucket(row.outputTokens, 1)}`, value: timing.tpotMs }];
}

/** One measurement per bucket: the median of what its requests measured, at the median of their lengths. */
function bucketMeasurement(b: Bucket, setup: LedgerSetup): Measurement {
  const inputTokens = Math.max(1, Math.round(median(b.input)));
  return {
    ...setup,
    line: b.line,
    batch: b.batch,
    inputTokens,
    outputTokens: Math.max(1, Math.round(median(b.output))),
    served: { cachedTokens: Math.min(inputTokens - 1, Math.round(median(b.cached))) },
    [b.metric]: median(b.values),
  };
}

/** The timed rows as measurements, one group per setup (in the order groups first appear). */
export function measurementsFromLedger(rows: readonly LedgerRow[], setupOf: SetupOf): LedgerMeasurements {
  const groups = new Map<string, { setup: LedgerSetup; requests: number; buckets: Map<string, Bucket> }>();
  const skipped = new Map<string, number>();
  const skip = (why: string): void => void skipped.set(why, (skipped.get(why) ?? 0) + 1);
  rows.forEach((row, i) => {
    if (row.timing === null || row.timing.ttftMs <= 0) return skip("no timing (no first token, or answered by more than one replica or generation)");
    if (row.inputTokens < 1 || row.outputTokens < 1) return skip("no token counts");
    const setup = setupOf(row);
    if (typeof setup === "string") return skip(setup);
    const key = `${setup.hardware.id}/${setup.model.id}/${setup.precision.id}/tp${setup.tp}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = { setup, requests: 0, buckets: new Map() };
      groups.set(key, g);
    }
    g.requests++;
    for (const k of bucketKeys(row, row.timing)) {
      let b = g.buckets.get(k.key);
      if (b === undefined) {
        b = { metric: k.metric, batch: k.batch, line: i + 1, input: [], cached: [], output: [], values: [] };
        g.buckets.set(k.key, b);
      }
      b.input.push(row.inputTokens);
      b.cached.push(row.cachedTokens);
      b.output.push(row.outputTokens);
      b.values.push(k.value);
    }
  });
  const out = [...groups].map(([key, g]) => ({ key, setup: g.setup, requests: g.requests, measurements: [...g.buckets.values()].map((b) => bucketMeasurement(b, g.setup)) }));
  return { groups: out, skipped };
}
