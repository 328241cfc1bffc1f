import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Pool } from "undici";

/**
 * A small HTTP load generator with sub-millisecond timing: autocannon and wrk
 * report whole milliseconds, too coarse for a gateway that must add well
 * under one. Runs open-loop at a fixed rate (latency under a set load) or
 * closed-loop with a fixed number of requests in flight (maximum rate).
 */
export interface LoadSpec {
  readonly url: string;
  readonly path: string;
  readonly body: string;
  /** Headers besides content-type (a peer's routing headers). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Requests per second for open-loop; omit for closed-loop at `concurrency`. */
  readonly rate?: number;
  readonly concurrency: number;
  readonly durationMs: number;
  /** Run the same load this long first, unrecorded: JIT, connections, caches. */
  readonly warmupMs?: number;
  /** Drain the whole body (streams) before counting a request done. */
  readonly readBody: boolean;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** Requests sent during warm-up, so a caller measuring server CPU can count them. */
  readonly warmupRequests: number;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  let warmupRequests = 0;
  if (spec.warmupMs !== undefined && spec.warmupMs > 0) {
    const w = await runLoad({ ...spec, durationMs: spec.warmupMs, warmupMs: 0 });
    warmupRequests = w.requests + w.errors;
  }
  const pool = new Pool(spec.url, { connections: spec.concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const one = async (): Promise<void> => {
    const start = performance.now();
    try {
      const res = await pool.request({ method: "POST", path: spec.path, headers: { "content-type": "application/json", ...spec.headers }, body: spec.body });
      if (spec.readBody) await res.body.arrayBuffer();
      else await res.body.dump();
      if (res.statusCode !== 200) errors++;
      else latencies.push(performance.now() - start);
    } catch {
      errors++;
    }
  };
  const started = performance.now();
  const end = started + spec.durationMs;
  if (spec.rate === undefined) {
    const worker = async (): Promise<void> => {
      while (performance.now() < end) await one();
    };
    await Promise.all(Array.from({ length: spec.concurrency }, worker));
  } else {
    const interval = 1000 / spec.rate;
    const inflight = new Set<Promise<void>>();
    for (let next = started; next < end; next += interval) {
      const wait = next - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const p = one().finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  }
  const elapsed = performance.now() - started;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { requests: latencies.length, errors, rps: (latencies.length / elapsed) * 1000, p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99), warmupRequests };
}

/**
 * `runLoad` in a process of its own (load-child.ts), so the generator never
 * shares an event loop, or a CPU count, with what it measures. Asynchronous,
 * never execFileSync: a server under test may live on the caller's loop.
 */
export async function loadInChild(spec: LoadSpec): Promise<LoadResult> {
  const child = fileURLToPath(new URL("./load-child.ts", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", child, JSON.stringify(spec)], { encoding: "utf8", maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as LoadResult;
}
