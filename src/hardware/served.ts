/**
 * A served request's timings as the hardware model predicts them: what the
 * twin error metric compares the live fleet with, and what a profile fitted
 * from the usage ledger is fitted to (profile-fit.ts, rows with `served`).
 *
 * They describe one replica under continuous batching with chunked prefill,
 * as the simulator runs it (sim/replica.ts): every pass carries one token of
 * each decoding sequence, and a new prompt rides along in the passes after
 * its arrival.
 *
 * - TTFT: the request arrives while `batch - 1` others decode, waits for the
 *   pass under way (half a decode step on average; none on an idle
 *   replica), then its uncached prompt runs in passes beside their decode
 *   tokens; its first token comes out of the pass that finishes the prompt.
 * - TPOT: one decode step of `batch` sequences at the mean context
 *   (prompt + output / 2 each, as `servingPoint` has it), plus the prompts
 *   of the others that arrive meanwhile: in steady state each of the other
 *   `batch - 1` is replaced about once while this request decodes (their
 *   lengths taken as this request's), and each new prompt makes one of its
 *   passes longer.
 *
 * The others' contexts are unknown to a single request: each is taken to be
 * as long as this request's prompt.
 */
import type { PerfProfile } from "./perf.js";
import { decodeStepMs, passMs } from "./perf.js";

export interface ServedRequest {
  readonly promptTokens: number;
  /** Prompt tokens the engine found in its prefix cache. */
  readonly cachedTokens: number;
  /** Requests running on the replica, this one included: when it arrived (TTFT), on average while it decoded (TPOT). */
  readonly batch: number;
  readonly outputTokens: number;
}

/**
 * The passes that prefill `fresh` prompt tokens after `cached` ones while
 * `decoders` sequences of `context` cached tokens in all decode beside them:
 * chunks of what the pass's token budget leaves, as sim/replica.ts plans them.
 */
function joinedPassesMs(p: PerfProfile, decoders: number, context: number, fresh: number, cached: number): { ms: number; passes: number } {
  const budget = Math.max(1, p.maxTokensPerPass - decoders);
  let done = cached;
  let ms = 0;
  let passes = 0;
  for (let left = fresh; left > 0; passes++) {
    const chunk = Math.min(left, budget);
    const attn = context * p.attnFlopsPerPairDecode + chunk * (done + chunk / 2) * p.attnFlopsPerPairPrefill;
    const kv = (context + done + chunk) * p.kvBytesPerToken;
    ms += passMs(p, decoders + chunk, attn, kv, decoders + 1);
    done += chunk;
    left -= chunk;
  }
  return { ms, passes };
}

/** Time to first token of a request that joins `batch - 1` decoding sequences, from its arrival at the replica. */
export function servedTtftMs(p: PerfProfile, r: Omit<ServedRequest, "outputTokens">): number {
  const others = Math.max(0, r.batch - 1);
  const context = others * r.promptTokens;
  const cached = Math.min(Math.max(0, r.cachedTokens), r.promptTokens - 1);
  const wait = others > 0 ? decodeStepMs(p, others, context) / 2 : 0;
  return wait + joinedPassesMs(p, others, context, Math.max(1, r.promptTokens - cached), cached).ms;
}

/** Mean time per output token of a request decoding among `batch` sequences (itself included) whose prompts come and go. */
export function servedTpotMs(p: PerfProfile, r: Omit<ServedRequest, "cachedTokens">): number {
  const batch = Math.max(1, r.batch);
  const context = batch * (r.promptTokens + r.outputTokens / 2);
  const step = decodeStepMs(p, batch, context);
  const others = batch - 1;
  if (others <= 0 || r.outputTokens < 2) return step;
  const joined = joinedPassesMs(p, batch, context, Math.max(1, r.promptTokens), 0);
  // What a prompt adds to the passes it rides in, beyond the decode steps they are anyway.
  const extra = Math.max(0, joined.ms - joined.passes * step);
  return step + (others * extra) / (r.outputTokens - 1);
}
