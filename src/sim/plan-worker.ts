/**
 * A worker thread of `flotilla plan` (plan-threads.ts): searches the setups
 * it is given, one at a time, and posts each one's outcome as it ends.
 */
import { parentPort } from "node:worker_threads";
import { PlanUsageError, planSetup, type PlanInput, type Setup } from "./plan.js";

export type WorkerJob = { readonly input: Omit<PlanInput, "onCandidate">; readonly setups: readonly { readonly index: number; readonly setup: Setup }[] };
export type WorkerMessage =
  | { readonly index: number; readonly found: ReturnType<typeof planSetup> }
  | { readonly error: string; readonly usage: boolean }
  | { readonly done: true };

parentPort?.once("message", (job: WorkerJob) => {
  try {
    for (const { index, setup } of job.setups) parentPort!.postMessage({ index, found: planSetup(job.input, setup) } satisfies WorkerMessage);
    parentPort!.postMessage({ done: true } satisfies WorkerMessage);
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).message, usage: err instanceof PlanUsageError } satisfies WorkerMessage);
  }
});
