/** Files and batches as OpenAI's API shows them (times in epoch seconds). */
import type { BatchRecord, FileRecord } from "../../store/index.js";

const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

export function fileObject(f: FileRecord): Record<string, unknown> {
  return {
    id: f.id,
    object: "file",
    bytes: f.bytes,
    created_at: seconds(f.createdAt),
    expires_at: null,
    filename: f.filename,
    purpose: f.purpose,
    status: "processed",
    status_details: null,
  };
}

export function batchObject(b: BatchRecord): Record<string, unknown> {
  const c = b.counts;
  const total = c.pending + c.running + c.completed + c.failed + c.cancelled + c.expired;
  return {
    id: b.id,
    object: "batch",
    endpoint: b.endpoint,
    errors: null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: b.status,
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    created_at: seconds(b.createdAt),
    in_progress_at: seconds(b.inProgressAt),
    expires_at: seconds(b.expiresAt),
    finalizing_at: seconds(b.finalizingAt),
    completed_at: seconds(b.completedAt),
    failed_at: null,
    expired_at: seconds(b.expiredAt),
    cancelling_at: seconds(b.cancellingAt),
    cancelled_at: seconds(b.cancelledAt),
    request_counts: { total, completed: c.completed, failed: c.failed },
    metadata: b.metadata,
    // Where every line stands, beyond OpenAI's counts: what `flotilla batches list` and /ui show.
    x_flotilla: { lines: c },
  };
}
