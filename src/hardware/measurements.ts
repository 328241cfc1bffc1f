/**
 * An engine's measurements, from CSV text: what `flotilla calibrate` fits a
 * profile to. Pure (text in, rows out); the CLI reads the file.
 *
 * Columns, by header name (any order, case-insensitive):
 *
 *   hardware, model, precision       catalog ids or aliases (`flotilla catalog`)
 *   tp, batch                        devices per replica; sequences run together
 *   input_tokens, output_tokens      prompt and generated tokens per sequence
 *   ttft_ms                          time to first token with all `batch` prompts prefilled together
 *   tpot_ms                          time per output token while the batch decodes
 *   power_w    (optional)            average power per device over the run (reported, not fitted)
 *   source     (optional)            free text: where the row came from
 *
 * At least one of ttft_ms and tpot_ms must be a column, and every row needs a
 * value in one of them. Lines starting with # are comments. Other columns are
 * ignored (and named, so a misspelt one is noticed).
 */
import type { HardwareSpec } from "./accelerators.js";
import { findHardware } from "./accelerators.js";
import { UnknownNameError } from "./errors.js";
import type { ModelSpec } from "./models.js";
import { findModel } from "./models.js";
import type { PrecisionSpec } from "./precision.js";
import { findPrecision } from "./precision.js";

/** What one measurement was taken of. */
export interface MeasuredSetup {
  readonly hardware: HardwareSpec;
  readonly model: ModelSpec;
  readonly precision: PrecisionSpec;
  readonly tp: number;
  readonly batch: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /**
   * Present for a request served by a live replica (a usage-ledger row),
   * absent for a benchmark's setup. A benchmark's TTFT is `batch` prompts
   * arriving and prefilled together; a served request's is its prompt
   * joining `batch - 1` running sequences, and its TPOT a decode among
   * `batch` whose prompts come and go (served.ts).
   */
  readonly served?: { readonly cachedTokens: number };
}

export interface Measurement extends MeasuredSetup {
  /** 1-based line of the CSV text. */
  readonly line: number;
  readonly ttftMs?: number;
  readonly tpotMs?: number;
  readonly powerW?: number;
}

export interface ParsedMeasurements {
  readonly rows: readonly Measurement[];
  /** Header names that are not measurement columns. */
  readonly ignoredColumns: readonly string[];
}

export class MeasurementsError extends Error {
  override readonly name = "MeasurementsError";
}

export const REQUIRED_COLUMNS = ["hardware", "model", "precision", "tp", "batch", "input_tokens", "output_tokens"] as const;
export const MEASURED_COLUMNS = ["ttft_ms", "tpot_ms"] as const;
const OPTIONAL_COLUMNS = ["power_w", "source"] as const;
const KNOWN: ReadonlySet<string> = new Set([...REQUIRED_COLUMNS, ...MEASURED_COLUMNS, ...OPTIONAL_COLUMNS]);
/** Problems listed before the rest are summarised as a count. */
const MAX_ISSUES = 12;

/** Fields of one CSV line; double quotes may enclose a field ("" is a quote inside one). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      fields.push(field);
      field = "";
    } else field += c;
  }
  fields.push(field);
  return fields.map((f) => f.trim());
}

/**
 * Collects problems, one entry per distinct message: the same mistake on 500
 * rows is one line naming the first row and the count, not 500 lines.
 */
class Issues {
  readonly #byMessage = new Map<string, number[]>();

  add(line: number, message: string): void {
    const lines = this.#byMessage.get(message);
    if (lines === undefined) this.#byMessage.set(message, [line]);
    else lines.push(line);
  }

  get size(): number {
    return this.#byMessage.size;
  }

  error(source: string): MeasurementsError {
    const all = [...this.#byMessage].sort((a, b) => (a[1][0] ?? 0) - (b[1][0] ?? 0));
    const lines = all.slice(0, MAX_ISSUES).map(([message, at]) => `  ${source}:${at[0]}${at.length > 1 ? ` (and ${at.length - 1} more rows)` : ""}: ${message}`);
    if (all.length > MAX_ISSUES) lines.push(`  ... and ${all.length - MAX_ISSUES} more problems`);
    return new MeasurementsError(`${source} has ${all.length === 1 ? "a problem" : "problems"}:\n${lines.join("\n")}`);
  }
}

/** The header's column positions; throws naming what is missing or doubled. */
function readHeader(fields: readonly string[], line: number, source: string): Map<string, number> {
  const columns = new Map<string, number>();
  const issues = new Issues();
  fields.forEach((raw, i) => {
    const name = raw.toLowerCase();
    if (name === "") issues.add(line, `column ${i + 1} of the header has no name`);
    else if (columns.has(name)) issues.add(line, `column "${name}" appears twice`);
    else columns.set(name, i);
  });
  const missing = REQUIRED_COLUMNS.filter((c) => !columns.has(c));
  if (missing.length > 0) issues.add(line, `missing column${missing.length > 1 ? "s" : ""} ${missing.map((c) => `"${c}"`).join(", ")}; the header has: ${fields.join(", ")}`);
  if (!MEASURED_COLUMNS.some((c) => columns.has(c))) issues.add(line, `no measured column: give "ttft_ms", "tpot_ms" or both`);
  if (issues.size > 0) throw issues.error(source);
  return columns;
}

type Cell = (column: string) => string | undefined;

/** A whole number of at least `min`, or undefined with the problem recorded. */
function wholeNumber(cell: Cell, column: string, min: number, report: (m: string) => void): number | undefined {
  const raw = cell(column) ?? "";
  const x = Number(raw);
  if (raw === "") report(`column "${column}" is empty`);
  else if (!Number.isFinite(x)) report(`column "${column}": "${raw}" is not a number`);
  else if (!Number.isInteger(x) || x < min) report(`column "${column}": ${raw} must be a whole number of at least ${min}`);
  else return x;
  return undefined;
}

/** A positive number, or undefined when the cell is empty or absent (a problem is recorded when it is not a positive number). */
function optionalPositive(cell: Cell, column: string, report: (m: string) => void): number | undefined {
  const raw = cell(column) ?? "";
  if (raw === "") return undefined;
  const x = Number(raw);
  if (!Number.isFinite(x)) report(`column "${column}": "${raw}" is not a number`);
  else if (x <= 0) report(`column "${column}": ${raw} must be greater than 0`);
  else return x;
  return undefined;
}

/** A catalog entry by name, or undefined with the problem recorded. */
function catalog<T>(cell: Cell, column: string, find: (name: string) => T, report: (m: string) => void): T | undefined {
  const raw = cell(column) ?? "";
  if (raw === "") {
    report(`column "${column}" is empty`);
    return undefined;
  }
  try {
    return find(raw);
  } catch (err) {
    if (err instanceof UnknownNameError) {
      report(`column "${column}": ${err.message}`);
      return undefined;
    }
    throw err;
  }
}

/** One data line as a measurement; undefined when any of its cells is wrong (each recorded). */
function readRow(cell: Cell, line: number, issues: Issues): Measurement | undefined {
  const report = (m: string): void => issues.add(line, m);
  const before = issues.size;
  const hardware = catalog(cell, "hardware", findHardware, report);
  const model = catalog(cell, "model", findModel, report);
  const precision = catalog(cell, "precision", findPrecision, report);
  const tp = wholeNumber(cell, "tp", 1, report);
  const batch = wholeNumber(cell, "batch", 1, report);
  const inputTokens = wholeNumber(cell, "input_tokens", 1, report);
  const outputTokens = wholeNumber(cell, "output_tokens", 1, report);
  const ttftMs = optionalPositive(cell, "ttft_ms", report);
  const tpotMs = optionalPositive(cell, "tpot_ms", report);
  const powerW = optionalPositive(cell, "power_w", report);
  if (ttftMs === undefined && tpotMs === undefined && (cell("ttft_ms") ?? "") === "" && (cell("tpot_ms") ?? "") === "") {
    report(`no measurement: both "ttft_ms" and "tpot_ms" are empty`);
  }
  if (issues.size > before || hardware === undefined || model === undefined || precision === undefined) return undefined;
  if (tp === undefined || batch === undefined || inputTokens === undefined || outputTokens === undefined) return undefined;
  return {
    line,
    hardware,
    model,
    precision,
    tp,
    batch,
    inputTokens,
    outputTokens,
    ...(ttftMs !== undefined ? { ttftMs } : {}),
    ...(tpotMs !== undefined ? { tpotMs } : {}),
    ...(powerW !== undefined ? { powerW } : {}),
  };
}

/**
 * Parses measurement CSV text. Throws a MeasurementsError naming the line and
 * column of every problem (every one, so a file is fixed in one pass).
 */
export function parseMeasurementsCsv(text: string, source = "measurements"): ParsedMeasurements {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const data = lines.map((l, i) => ({ text: l, line: i + 1 })).filter((l) => l.text.trim() !== "" && !l.text.trimStart().startsWith("#"));
  const head = data[0];
  if (head === undefined) {
    throw new MeasurementsError(`${source} is empty: expected a header line naming the columns ${[...REQUIRED_COLUMNS, ...MEASURED_COLUMNS].join(", ")}, then one row per measurement`);
  }
  const headerFields = splitCsvLine(head.text);
  const columns = readHeader(headerFields, head.line, source);
  if (data.length === 1) throw new MeasurementsError(`${source}:${head.line}: the header is there but no measurement rows follow it`);
  const issues = new Issues();
  const rows: Measurement[] = [];
  for (const { text: t, line } of data.slice(1)) {
    const fields = splitCsvLine(t);
    if (fields.length !== headerFields.length) {
      issues.add(line, `${fields.length} fields, but the header has ${headerFields.length}`);
      continue;
    }
    const row = readRow((c) => {
      const i = columns.get(c);
      return i === undefined ? undefined : fields[i];
    }, line, issues);
    if (row !== undefined) rows.push(row);
  }
  if (issues.size > 0) throw issues.error(source);
  return { rows, ignoredColumns: [...columns.keys()].filter((c) => !KNOWN.has(c)) };
}
