/**
 * `flotilla plan` on several threads: every setup's search is independent
 * (plan.ts planSetup), so setups are dealt to worker threads, each with its
 * own copy of the workload, and the outcomes are put back in setup order
 * before the ranking, so the answer is the one plan() gives on one thread.
 */
import { Worker } from "node:worker_threads";
import { PlanUsageError, conclude, plan, setupsOf, type PlanInput, type PlanResult, type planSetup } from "./plan.js";
import type { WorkerJob, WorkerMessage } from "./plan-worker.js";

/** Runs the plan on up to `threads` worker threads (1: on this one). */
export async function planOnThreads(input: PlanInput, threads: number): Promise<PlanResult> {
  const setups = setupsOf(input);
  const n = Math.max(1, Math.min(threads, setups.length));
  if (n === 1) return plan(input);
  const found: ReturnType<typeof planSetup>[] = new Array(setups.length);
  let done = 0;
  const { onCandidate: _, ...shared } = input;
  // Dealt round-robin: neighbouring setups (one hardware's TP sizes) take alike, so each thread gets a mix.
  const shares = Array.from({ length: n }, (_, t) => setups.flatMap((setup, index) => (index % n === t ? [{ index, setup }] : [])));
  await Promise.all(shares.map((share) => runWorker({ input: shared, setups: share }, (index, f) => (found[index] = report(input, setups.length, f, ++done)))));
  return conclude(input, found);
}

function report(input: PlanInput, total: number, f: ReturnType<typeof planSetup>, done: number): ReturnType<typeof planSetup> {
  if (f.row !== undefined) input.onCandidate?.(f.row, done, total);
  return f;
}

function runWorker(job: WorkerJob, each: (index: number, found: ReturnType<typeof planSetup>) => void): Promise<void> {
  const worker = workerThread();
  return new Promise<void>((resolve, reject) => {
    worker.on("message", (m: WorkerMessage) => {
      if ("index" in m) each(m.index, m.found);
      else if ("error" in m) reject(m.usage ? new PlanUsageError(m.error) : new Error(m.error));
      else resolve();
    });
    worker.once("error", reject);
    worker.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`a plan worker thread exited with code ${code}`))));
    worker.postMessage(job);
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
