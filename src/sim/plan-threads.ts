/**
 * `flotilla plan` on several threads: every candidate's search is
 * independent (plan-search.ts), so each worker thread, with its own copy of
 * the workload, takes the next candidate in search order as it finishes
 * one. Whether a candidate is pruned is decided when it is dealt, against
 * the fleets found so far: which fleets are replayed may differ from one
 * thread's run, the choice does not (a pruned candidate's bound is past a
 * fleet found, so past the best).
 */
import { Worker } from "node:worker_threads";
import { PlanUsageError, conclude, foundOf, plan, planSpace, prunes, startOf, type PlanFound, type PlanInput, type PlanJob, type PlanResult, type PlanRow } from "./plan.js";
import type { WorkerJob, WorkerMessage } from "./plan-worker.js";

/** Runs the plan on up to `threads` worker threads (1: on this one). */
export async function planOnThreads(input: PlanInput, threads: number): Promise<PlanResult> {
  const space = planSpace(input);
  const n = Math.max(1, Math.min(threads, space.jobs.length));
  if (n === 1) return plan(input);
  const found: PlanFound[] = [];
  const { onCandidate: _, ...shared } = input;
  let next = 0;
  let done = space.candidates - space.jobs.length;
  /** The next job to replay, skipping those the fleets found so far prune. */
  const deal = (): { job: PlanJob; start: number[] } | undefined => {
    while (next < space.jobs.length) {
      const job = space.jobs[next++]!;
      done++;
      if (!prunes(input, job, found)) return { job, start: startOf(input, job, found) };
    }
    return undefined;
  };
  const byIndex = new Map(space.jobs.map((j) => [j.index, j]));
  await Promise.all(
    Array.from({ length: n }, () =>
      runWorker(shared, deal, (index, row) => {
        const f = foundOf(input, byIndex.get(index)!, row);
        found.push(f);
        input.onCandidate?.(f.row, done, space.candidates);
      }),
    ),
  );
  return conclude(input, space, found);
}

function runWorker(input: WorkerJob["input"], deal: () => { job: PlanJob; start: number[] } | undefined, each: (index: number, row: PlanRow) => void): Promise<void> {
  const worker = workerThread();
  const send = (): void => {
    const dealt = deal();
    worker.postMessage((dealt === undefined ? { done: true } : { input, ...dealt }) satisfies WorkerJob | { done: true });
  };
  return new Promise<void>((resolve, reject) => {
    worker.on("message", (m: WorkerMessage) => {
      if ("error" in m) return reject(m.usage ? new PlanUsageError(m.error) : new Error(m.error));
      each(m.index, m.row);
      send();
    });
    worker.once("error", reject);
    worker.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`a plan worker thread exited with code ${code}`))));
    send();
  }).finally(() => void worker.terminate());
}

/**
 * The built package's worker is its .js file. Run from the sources (tests,
 * a checkout under tsx), the worker registers tsx's loader first and then
 * imports the .ts file: a worker does not inherit the loader its parent was
 * started with.
 */
function workerThread(): Worker {
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./plan-worker.js", import.meta.url));
  const api = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./plan-worker.ts", import.meta.url).href;
  return new Worker(`import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`, { eval: true });
}
