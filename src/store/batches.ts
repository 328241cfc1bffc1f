/**
 * The Batch API's storage: files (uploads in pieces of whole lines, and the
 * output and error files a batch ends with), batches and their lines.
 *
 * Each operation is a plan: a generator that yields SQL statements and gets
 * their rows back. SQLite runs a plan synchronously inside one transaction,
 * Postgres awaits each statement inside one; the logic is written once for
 * both (Store.transact). A line's result can also ride on a ledger
 * settlement (SettleInput.batchLine): `finishLine` then runs inside the
 * settlement's transaction.
 */
import { num, numOrNull, strOrNull } from "./sql.js";
import type { BatchLine, BatchLineResult, BatchLineState, BatchRecord, BatchStatus, FileKind, FileRecord, NewBatch } from "./types.js";

type Row = Record<string, unknown>;
export interface Step {
  readonly sql: string;
  readonly params: readonly unknown[];
}
export interface StepResult {
  readonly rows: readonly Row[];
  readonly changes: number;
}
/** Statements to run in one transaction, each seeing what the earlier ones returned. */
export type Plan<T> = Generator<Step, T, StepResult>;

function* sql(text: string, ...params: unknown[]): Generator<Step, StepResult, StepResult> {
  return yield { sql: text, params };
}

/** Lines the runner holds at once never get near this; it bounds one multi-row insert's parameters. */
const INSERT_ROWS = 200;
const LINE_STATES: readonly BatchLineState[] = ["pending", "running", "completed", "failed", "cancelled", "expired"];

// Files.

/** An upload's record, invisible until finishUpload; a batch's result files are whole when written (`processed`). */
export function* createFile(f: FileRecord, status: "uploading" | "processed" = "uploading"): Plan<void> {
  yield* sql(
    `INSERT INTO files (id, owner, tenant_id, purpose, filename, kind, status, bytes, lines, endpoint, batch_id, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    f.id, f.owner, f.tenantId, f.purpose, f.filename, f.kind, status, f.bytes, f.lines, f.endpoint, f.batchId, f.createdAt,
  );
}

export function* addChunk(fileId: string, seq: number, data: string): Plan<void> {
  yield* sql("INSERT INTO file_chunks (file_id, seq, data) VALUES (?, ?, ?)", fileId, seq, data);
}

/** An upload is visible once whole. */
export function* finishUpload(id: string, bytes: number, lines: number, endpoint: string | null): Plan<void> {
  yield* sql("UPDATE files SET status = 'processed', bytes = ?, lines = ?, endpoint = ? WHERE id = ?", bytes, lines, endpoint, id);
}

/** Removes a file and its content; false when the owner has no such file. */
export function* deleteFile(owner: string, id: string): Plan<boolean> {
  const gone = yield* sql("DELETE FROM files WHERE id = ? AND owner = ?", id, owner);
  if (gone.changes === 0) return false;
  yield* sql("DELETE FROM file_chunks WHERE file_id = ?", id);
  return true;
}

/** An upload a crash left half-written: never visible, removed when found. */
export function* discardUploads(before: number): Plan<number> {
  const stale = yield* sql("SELECT id FROM files WHERE status = 'uploading' AND created_at < ?", before);
  for (const r of stale.rows) {
    yield* sql("DELETE FROM file_chunks WHERE file_id = ?", r.id);
    yield* sql("DELETE FROM files WHERE id = ?", r.id);
  }
  return stale.rows.length;
}

function fileFrom(r: Row): FileRecord {
  return {
    id: String(r.id),
    owner: String(r.owner),
    tenantId: String(r.tenant_id),
    purpose: String(r.purpose),
    filename: String(r.filename),
    kind: String(r.kind) as FileKind,
    bytes: num(r.bytes),
    lines: num(r.lines),
    endpoint: strOrNull(r.endpoint),
    batchId: strOrNull(r.batch_id),
    createdAt: num(r.created_at),
  };
}

export function* getFile(owner: string, id: string): Plan<FileRecord | undefined> {
  const { rows } = yield* sql("SELECT * FROM files WHERE id = ? AND owner = ? AND status = 'processed'", id, owner);
  return rows[0] === undefined ? undefined : fileFrom(rows[0]);
}

/** Newest first, after the file `after` where given (OpenAI's cursor). */
export function* listFiles(owner: string, opts: { readonly purpose?: string; readonly limit: number; readonly after?: string }): Plan<FileRecord[]> {
  const where = ["owner = ?", "status = 'processed'"];
  const params: unknown[] = [owner];
  if (opts.purpose !== undefined) {
    where.push("purpose = ?");
    params.push(opts.purpose);
  }
  if (opts.after !== undefined) {
    where.push(olderThan("files"));
    params.push(opts.after, opts.after, opts.after);
  }
  const { rows } = yield* sql(`SELECT * FROM files WHERE ${where.join(" AND ")} ORDER BY created_at DESC, id DESC LIMIT ?`, ...params, opts.limit);
  return rows.map(fileFrom);
}

/** OpenAI's `after` cursor on a newest-first list: rows older than the row with that id (three parameters, the id each time). */
function olderThan(table: "files" | "batches"): string {
  const at = `(SELECT created_at FROM ${table} WHERE id = ?)`;
  return `(created_at < ${at} OR (created_at = ${at} AND id < ?))`;
}

/** The `seq`th piece of an upload's content. */
export function* fileChunk(id: string, seq: number): Plan<string | undefined> {
  const { rows } = yield* sql("SELECT data FROM file_chunks WHERE file_id = ? AND seq = ?", id, seq);
  return rows[0] === undefined ? undefined : String(rows[0].data);
}

/** The id of a batch line's request: its x-request-id, its ledger row's request id, and its result's `id`. */
export function lineRequestId(batchId: string, line: number): string {
  return `${batchId}-${line}`;
}

/** The error file's line for a line that never ran: cancelled with its batch, or expired with it. */
export function unrunResult(batchId: string, line: number, customId: string, state: BatchLineState): string {
  const error =
    state === "expired"
      ? { code: "batch_expired", message: "This request could not be executed before the completion window expired." }
      : { code: "batch_cancelled", message: "This request was not executed because the batch was cancelled." };
  return JSON.stringify({ id: lineRequestId(batchId, line), custom_id: customId, response: null, error });
}

const RESULT_STATES = { output: "state = 'completed'", errors: "state IN ('failed', 'cancelled', 'expired')" } as const;

/** The lines of a batch's output file (completed) or error file (the rest), in input order, after `afterLine`. */
export function* resultLines(batchId: string, kind: "output" | "errors", afterLine: number, limit: number): Plan<{ line: number; text: string }[]> {
  const { rows } = yield* sql(`SELECT line, custom_id, state, result FROM batch_lines WHERE batch_id = ? AND ${RESULT_STATES[kind]} AND line > ? ORDER BY line LIMIT ?`, batchId, afterLine, limit);
  return rows.map((r) => ({ line: num(r.line), text: resultText(batchId, r) }));
}

function resultText(batchId: string, r: Row): string {
  return r.result === null || r.result === undefined ? unrunResult(batchId, num(r.line), String(r.custom_id), String(r.state) as BatchLineState) : String(r.result);
}

// Batches.

/** A line of an input file, as upload validation left it: its custom_id and request body. */
export interface InputLine {
  readonly customId: string;
  readonly body: string;
}

/** Creates the batch, in progress, with one pending line per input line (`lines` reads the input file's content). */
export function* createBatch(b: NewBatch, lines: (chunk: string) => InputLine[]): Plan<void> {
  yield* sql(
    `INSERT INTO batches (id, owner, tenant_id, key_id, endpoint, input_file_id, completion_window, metadata, status, created_at, expires_at, in_progress_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'in_progress', ?, ?, ?)`,
    b.id, b.owner, b.tenantId, b.keyId, b.endpoint, b.inputFileId, b.completionWindow, b.metadata === null ? null : JSON.stringify(b.metadata), b.createdAt, b.expiresAt, b.createdAt,
  );
  let n = 0;
  for (let seq = 0; ; seq++) {
    const { rows } = yield* sql("SELECT data FROM file_chunks WHERE file_id = ? AND seq = ?", b.inputFileId, seq);
    if (rows[0] === undefined) break;
    const parsed = lines(String(rows[0].data));
    for (let i = 0; i < parsed.length; i += INSERT_ROWS) {
      const part = parsed.slice(i, i + INSERT_ROWS);
      const values = part.map(() => "(?, ?, ?, ?, 'pending')").join(", ");
      yield* sql(`INSERT INTO batch_lines (batch_id, line, custom_id, body, state) VALUES ${values}`, ...part.flatMap((l) => [b.id, ++n, l.customId, l.body]));
    }
  }
}

function batchFrom(r: Row, counts: Record<BatchLineState, number>): BatchRecord {
  return {
    id: String(r.id),
    owner: String(r.owner),
    tenantId: String(r.tenant_id),
    keyId: strOrNull(r.key_id),
    endpoint: String(r.endpoint),
    inputFileId: String(r.input_file_id),
    completionWindow: String(r.completion_window),
    metadata: r.metadata === null || r.metadata === undefined ? null : (JSON.parse(String(r.metadata)) as Record<string, string>),
    status: String(r.status) as BatchStatus,
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    inProgressAt: numOrNull(r.in_progress_at),
    finalizingAt: numOrNull(r.finalizing_at),
    completedAt: numOrNull(r.completed_at),
    expiredAt: numOrNull(r.expired_at),
    cancellingAt: numOrNull(r.cancelling_at),
    cancelledAt: numOrNull(r.cancelled_at),
    outputFileId: strOrNull(r.output_file_id),
    errorFileId: strOrNull(r.error_file_id),
    counts,
  };
}

function* withCounts(rows: readonly Row[]): Plan<BatchRecord[]> {
  const out: BatchRecord[] = [];
  for (const r of rows) {
    const counts = Object.fromEntries(LINE_STATES.map((s) => [s, 0])) as Record<BatchLineState, number>;
    const c = yield* sql("SELECT state, COUNT(*) AS n FROM batch_lines WHERE batch_id = ? GROUP BY state", r.id);
    for (const s of c.rows) counts[String(s.state) as BatchLineState] = num(s.n);
    out.push(batchFrom(r, counts));
  }
  return out;
}

/** The batch, if `owner` (any owner when undefined: the operator) has it. */
export function* getBatch(id: string, owner?: string): Plan<BatchRecord | undefined> {
  const { rows } = owner === undefined ? yield* sql("SELECT * FROM batches WHERE id = ?", id) : yield* sql("SELECT * FROM batches WHERE id = ? AND owner = ?", id, owner);
  return (yield* withCounts(rows))[0];
}

/** Newest first; every owner's when `owner` is undefined. */
export function* listBatches(owner: string | undefined, limit: number, after?: string): Plan<BatchRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (owner !== undefined) {
    where.push("owner = ?");
    params.push(owner);
  }
  if (after !== undefined) {
    where.push(olderThan("batches"));
    params.push(after, after, after);
  }
  const filter = where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "";
  const { rows } = yield* sql(`SELECT * FROM batches${filter} ORDER BY created_at DESC, id DESC LIMIT ?`, ...params, limit);
  return yield* withCounts(rows);
}

/** Stops a batch: its pending lines are cancelled now, running ones by their runner. Undefined when the owner has no such batch. */
export function* cancelBatch(owner: string, id: string, at: number): Plan<BatchRecord | undefined> {
  const moved = yield* sql("UPDATE batches SET status = 'cancelling', cancelling_at = ? WHERE id = ? AND owner = ? AND status IN ('validating', 'in_progress')", at, id, owner);
  if (moved.changes > 0) yield* sql("UPDATE batch_lines SET state = 'cancelled' WHERE batch_id = ? AND state = 'pending'", id);
  return yield* getBatch(id, owner);
}

/** Of these batches, those no longer in progress (cancelled, expired): their running lines are to stop. */
export function* stoppedBatches(ids: readonly string[]): Plan<string[]> {
  if (ids.length === 0) return [];
  const { rows } = yield* sql(`SELECT id FROM batches WHERE id IN (${ids.map(() => "?").join(", ")}) AND status <> 'in_progress'`, ...ids);
  return rows.map((r) => String(r.id));
}

/**
 * Claims up to `limit` pending lines of batches in progress, oldest batch
 * first, none of the batches in `skip` (waiting out a refusal): each is
 * `running` under a new attempt. One batch at a time, each read through its
 * (batch, state, line) index: a claim costs the lines it takes, not the
 * lines every batch ever had.
 */
export function* claimLines(limit: number, skip: readonly string[] = []): Plan<BatchLine[]> {
  const claimed: BatchLine[] = [];
  const passed = [...skip];
  while (claimed.length < limit) {
    const skipped = passed.length === 0 ? "" : ` AND id NOT IN (${passed.map(() => "?").join(", ")})`;
    const { rows: batches } = yield* sql(
      `SELECT id, owner, tenant_id, key_id, endpoint FROM batches b WHERE status = 'in_progress'${skipped}
       AND EXISTS (SELECT 1 FROM batch_lines l WHERE l.batch_id = b.id AND l.state = 'pending') ORDER BY created_at, id LIMIT 1`,
      ...passed,
    );
    const b = batches[0];
    if (b === undefined) break;
    passed.push(String(b.id));
    const { rows } = yield* sql("SELECT line, custom_id, body, attempt FROM batch_lines WHERE batch_id = ? AND state = 'pending' ORDER BY line LIMIT ?", b.id, limit - claimed.length);
    for (const r of rows) {
      const attempt = num(r.attempt) + 1;
      const ok = yield* sql("UPDATE batch_lines SET state = 'running', attempt = ? WHERE batch_id = ? AND line = ? AND state = 'pending'", attempt, b.id, r.line);
      if (ok.changes === 0) continue;
      claimed.push({
        batchId: String(b.id),
        line: num(r.line),
        customId: String(r.custom_id),
        body: String(r.body),
        attempt,
        owner: String(b.owner),
        tenantId: String(b.tenant_id),
        keyId: strOrNull(b.key_id),
        endpoint: String(b.endpoint),
      });
    }
  }
  return claimed;
}

/** Writes a line's result if the line is still running under that attempt; false when it is not (its result is another attempt's). */
export function* finishLine(r: BatchLineResult): Plan<boolean> {
  const done = yield* sql(
    "UPDATE batch_lines SET state = ?, result = ?, result_bytes = ? WHERE batch_id = ? AND line = ? AND attempt = ? AND state = 'running'",
    r.state, r.result, Buffer.byteLength(r.result) + 1, r.batchId, r.line, r.attempt,
  );
  return done.changes > 0;
}

/** Gives a claimed line back to run again later (the fleet was full, or its runner is stopping); false when it was not running under that attempt. */
export function* releaseLine(batchId: string, line: number, attempt: number): Plan<boolean> {
  const back = yield* sql("UPDATE batch_lines SET state = 'pending' WHERE batch_id = ? AND line = ? AND attempt = ? AND state = 'running'", batchId, line, attempt);
  return back.changes > 0;
}

/**
 * Lines left running by a runner that is gone (the runner that takes the
 * lease calls it first): they run again. A late result of the old attempt
 * is refused by finishLine, and its ledger row charged nothing.
 */
export function* requeueRunning(): Plan<number> {
  return (yield* sql("UPDATE batch_lines SET state = 'pending' WHERE state = 'running'")).changes;
}

/**
 * Moves batches on: one past its window has its pending lines expired; a
 * batch with nothing pending or running is finished (completed, cancelled
 * or expired), with an output file for its completed lines and an error
 * file for the rest. Returns the batches finished.
 */
export function* sweepBatches(at: number, newFileId: () => string): Plan<string[]> {
  const overdue = yield* sql("SELECT id FROM batches WHERE status = 'in_progress' AND expires_at <= ?", at);
  for (const r of overdue.rows) {
    yield* sql("UPDATE batches SET status = 'expired', expired_at = ? WHERE id = ? AND status = 'in_progress'", at, r.id);
    yield* sql("UPDATE batch_lines SET state = 'expired' WHERE batch_id = ? AND state = 'pending'", r.id);
  }
  const open = yield* sql(
    `SELECT * FROM batches b WHERE (status IN ('in_progress', 'cancelling') OR (status = 'expired' AND completed_at IS NULL))
     AND NOT EXISTS (SELECT 1 FROM batch_lines l WHERE l.batch_id = b.id AND l.state IN ('pending', 'running'))`,
  );
  const finished: string[] = [];
  for (const b of open.rows) {
    const output = yield* resultFile(b, "output", at, newFileId);
    const errors = yield* resultFile(b, "errors", at, newFileId);
    const final = b.status === "cancelling" ? "cancelled" : b.status === "expired" ? "expired" : "completed";
    // An expired batch keeps its expired_at; completed_at says it has been finished either way.
    const ended = final === "cancelled" ? "cancelled_at" : "completed_at";
    yield* sql(`UPDATE batches SET status = ?, finalizing_at = ?, ${ended} = ?, output_file_id = ?, error_file_id = ? WHERE id = ?`, final, at, at, output, errors, b.id);
    finished.push(String(b.id));
  }
  return finished;
}

/** The file record of a finished batch's output or error lines; null when it has none. */
function* resultFile(b: Row, kind: "output" | "errors", at: number, newFileId: () => string): Plan<string | null> {
  const { rows } = yield* sql(`SELECT COUNT(*) AS n, COALESCE(SUM(result_bytes), 0) AS bytes FROM batch_lines WHERE batch_id = ? AND ${RESULT_STATES[kind]}`, b.id);
  const n = num(rows[0]?.n ?? 0);
  if (n === 0) return null;
  let bytes = num(rows[0]!.bytes);
  if (kind === "errors") {
    const unrun = yield* sql("SELECT line, custom_id, state, result FROM batch_lines WHERE batch_id = ? AND state IN ('cancelled', 'expired') AND result IS NULL", b.id);
    for (const r of unrun.rows) bytes += Buffer.byteLength(resultText(String(b.id), r)) + 1;
  }
  const id = newFileId();
  const filename = `${String(b.id)}_${kind === "output" ? "output" : "error"}.jsonl`;
  const file: FileRecord = { id, owner: String(b.owner), tenantId: String(b.tenant_id), purpose: "batch_output", filename, kind, bytes, lines: n, endpoint: String(b.endpoint), batchId: String(b.id), createdAt: at };
  yield* createFile(file, "processed");
  return id;
}
