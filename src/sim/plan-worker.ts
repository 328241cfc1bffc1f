/**
 * A worker thread of `flotilla plan` (plan-threads.ts): searches each
 * candidate it is sent and posts its row; exits when told it is done.
 */
import { parentPort } from "node:worker_threads";
import { PlanUsageError, type PlanInput, type PlanJob, type PlanRow } from "./plan.js";
import { searchCandidate } from "./plan-search.js";

export type WorkerJob = { readonly input: Omit<PlanInput, "onCandidate">; readonly job: PlanJob; readonly start: readonly number[] };
export type WorkerMessage = { readonly index: number; readonly row: PlanRow } | { readonly error: string; readonly usage: boolean };

parentPort?.on("message", (m: WorkerJob | { done: true }) => {
  if ("done" in m) return process.exit(0);
  try {
    parentPort!.postMessage({ index: m.job.index, row: searchCandidate(m.input, m.job, m.start) } satisfies WorkerMessage);
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).message, usage: err instanceof PlanUsageError } satisfies WorkerMessage);
  }
});
