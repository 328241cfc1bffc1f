/**
 * Reports of `flotilla sim --out DIR`, opened in the dashboard. Only the
 * folders named when the server started are read, and in them only
 * report.json and requests.csv: no path ever comes from a request.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import type { SimReport } from "../sim/report.js";
import { TTFT_BUCKETS_S } from "./observatory.js";

export interface TtftHistogram {
  /** Upper bounds in seconds; counts has one more entry, for +Inf. */
  readonly boundsS: readonly number[];
  readonly counts: readonly number[];
}

export interface LoadedSimReport {
  readonly name: string;
  readonly report: SimReport;
  /** From requests.csv, in the live view's TTFT buckets; null without that file. */
  readonly ttft: TtftHistogram | null;
}

/** requests.csv above this is not read for the histogram (the report's percentiles still show). */
const MAX_CSV_BYTES = 256 * 1024 * 1024;

export class SimReports {
  readonly #dirs: readonly string[];
  readonly #cache = new Map<number, { key: string; value: LoadedSimReport }>();

  constructor(dirs: readonly string[]) {
    this.#dirs = dirs.map((d) => resolve(d));
  }

  list(): { index: number; name: string }[] {
    return this.#dirs.map((d, index) => ({ index, name: basename(d) }));
  }

  /** Reads report `index` (again when its files changed); undefined for an index not configured. */
  async load(index: number): Promise<LoadedSimReport | undefined> {
    const dir = this.#dirs[index];
    if (dir === undefined) return undefined;
    const reportPath = resolve(dir, "report.json");
    const csvPath = resolve(dir, "requests.csv");
    const [rs, cs] = await Promise.all([stat(reportPath), stat(csvPath).catch(() => undefined)]);
    const key = `${rs.mtimeMs}:${rs.size}:${cs?.mtimeMs ?? 0}:${cs?.size ?? 0}`;
    const cached = this.#cache.get(index);
    if (cached !== undefined && cached.key === key) return cached.value;
    const report = checkReport(JSON.parse(await readFile(reportPath, "utf8")) as unknown, reportPath);
    const ttft = cs !== undefined && cs.size <= MAX_CSV_BYTES ? ttftHistogram(await readFile(csvPath, "utf8")) : null;
    const value = { name: basename(dir), report, ttft };
    this.#cache.set(index, { key, value });
    return value;
  }
}

/** The parts of a report the dashboard draws must be there; the rest it shows when present. */
function checkReport(raw: unknown, path: string): SimReport {
  const r = raw as Partial<Record<keyof SimReport, unknown>> | null;
  const missing = ["latency", "throughput", "timeline", "replicas", "fleet"].filter((k) => r === null || typeof r !== "object" || typeof r[k as keyof SimReport] !== "object");
  if (missing.length > 0) throw new Error(`${path} is not a flotilla sim report (missing ${missing.join(", ")})`);
  return raw as SimReport;
}

/** Counts the ttft_ms column of requests.csv into TTFT_BUCKETS_S. */
export function ttftHistogram(csv: string): TtftHistogram | null {
  const firstNewline = csv.indexOf("\n");
  if (firstNewline < 0) return null;
  const column = csv.slice(0, firstNewline).trim().split(",").indexOf("ttft_ms");
  if (column < 0) return null;
  const counts = new Array<number>(TTFT_BUCKETS_S.length + 1).fill(0);
  let start = firstNewline + 1;
  while (start < csv.length) {
    let end = csv.indexOf("\n", start);
    if (end < 0) end = csv.length;
    // Find the column without splitting the whole row.
    let from = start;
    for (let c = 0; c < column && from <= end; c++) {
      const comma = csv.indexOf(",", from);
      from = comma < 0 || comma > end ? end + 1 : comma + 1;
    }
    if (from <= end) {
      let to = csv.indexOf(",", from);
      if (to < 0 || to > end) to = end;
      const field = csv.slice(from, to).trim();
      if (field.length > 0) {
        const s = Number(field) / 1000;
        if (Number.isFinite(s)) {
          let b = 0;
          while (b < TTFT_BUCKETS_S.length && s > TTFT_BUCKETS_S[b]!) b++;
          counts[b]!++;
        }
      }
    }
    start = end + 1;
  }
  return { boundsS: [...TTFT_BUCKETS_S], counts };
}
