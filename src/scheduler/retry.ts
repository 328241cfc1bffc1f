/**
 * The retry rules of one request, pure so the live dispatcher and the
 * simulator can share them: which failures another replica may not share,
 * which replicas a retry may go to, and how long it waits first.
 *
 * The budget counts attempts, not distinct replicas. A replica that failed
 * this request is avoided while another ready replica has not failed it;
 * once every ready replica has, the retry goes back to one that is ready
 * again (its engine answers and its breaker admits it), after a backoff.
 * So a replica that failed once and recovered can take the answer back when
 * the others fail too, instead of the request failing with budget left.
 *
 * Among the replicas a retry may go to, the best record wins: one that has
 * answered since its last failure, then one with no failures counted, then
 * the rest. With one good replica among many bad, a retry lands on the good
 * one instead of on the next bad one.
 */
import type { Candidate } from "./pipeline.js";

export interface RetryPolicy {
  /** Attempts a request may make in all, the first included. */
  readonly maxAttempts: number;
  /** The wait before going back to a replica that already failed this request, doubling each time up to maxBackoffMs. */
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /**
   * With no replica ready (an outage, a restart under way), how long a pick
   * waits for one to come back before the request fails, looking again every
   * readyPollMs.
   */
  readonly readyWaitMs: number;
  readonly readyPollMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 3, backoffMs: 50, maxBackoffMs: 1_000, readyWaitMs: 1_000, readyPollMs: 25 };

/** The most attempts a request makes however many replicas it could try. */
const MAX_BUDGET = 6;

/**
 * The attempts one request may make over `replicas` replicas: the policy's
 * budget, or one per replica where there are more (up to 6), so that on a
 * cold start, before any replica has a record, one good replica among many
 * bad ones is still reached.
 */
export function attemptBudget(policy: RetryPolicy, replicas: number): number {
  return Math.max(policy.maxAttempts, Math.min(replicas, MAX_BUDGET));
}

/** Failures another replica may not share: before any output, these are retried elsewhere. */
const RETRYABLE_BEFORE_OUTPUT: ReadonlySet<string> = new Set(["engine_unavailable", "engine_error", "overloaded"]);
/** After output, only a replica that broke is replaced: the answer resumes after what was sent. */
const RESUMABLE_AFTER_OUTPUT: ReadonlySet<string> = new Set(["engine_unavailable", "engine_error"]);

/** Whether a failure with `code` is worth another attempt, given whether the caller has received text. */
export function isRetryable(code: string, afterOutput: boolean): boolean {
  return (afterOutput ? RESUMABLE_AFTER_OUTPUT : RETRYABLE_BEFORE_OUTPUT).has(code);
}

/**
 * Why an answer the caller has begun to receive cannot go on on another
 * replica, or undefined where it can (resumed after what was sent). An
 * engine holds an answer to a format, and writes tool calls, from the
 * answer's first token: none can pick up one half-written.
 */
export function unresumable(answer: { readonly format: boolean; readonly tools: boolean }): string | undefined {
  if (answer.format) return "held to response_format";
  if (answer.tools) return "that may call tools";
  return undefined;
}

export interface RetryChoice {
  readonly candidates: Candidate[];
  /** Only replicas that already failed this request are left: the retry waits `backoffMs` first. */
  readonly revisiting: boolean;
}

/**
 * The candidates a retry routes over: the replicas that failed this request
 * are held back while a ready one that has not exists; otherwise they are
 * offered again as they are (ready only if they recovered).
 */
export function retryCandidates(candidates: readonly Candidate[], failed: ReadonlySet<number>): RetryChoice {
  if (failed.size === 0) return { candidates: [...candidates], revisiting: false };
  const fresh = candidates.some((c) => c.ready && !failed.has(c.index));
  if (fresh) return { candidates: bestRecord(candidates.map((c) => (failed.has(c.index) ? { ...c, ready: false } : c))), revisiting: false };
  return { candidates: [...candidates], revisiting: true };
}

/** 2: answered since its last failure; 1: no failures counted; 0: failing. */
function record(c: Candidate): number {
  if ((c.failures ?? 0) > 0) return 0;
  return c.proven === true ? 2 : 1;
}

/** Only the ready candidates with the best record stay ready. */
export function bestRecord(candidates: readonly Candidate[]): Candidate[] {
  let best = -1;
  for (const c of candidates) if (c.ready) best = Math.max(best, record(c));
  return candidates.map((c) => (c.ready && record(c) < best ? { ...c, ready: false } : c));
}

/** The wait before attempt `attempt` (2 for the first retry) when it revisits a replica that failed. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** Math.max(0, attempt - 2));
}
