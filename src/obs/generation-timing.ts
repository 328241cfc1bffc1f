/**
 * What the gateway measures of a generation on the replica that answers it,
 * for the usage ledger (GenerationTiming) and the twin error metric: when
 * the replica took the request, its first and last tokens, and how many
 * requests the replica had running meanwhile. Counting costs a few additions
 * at each attempt and at finish, and a clock reading per piece of text.
 */
import type { Settlement } from "../metering/tenancy.js";
import type { GenerationTiming } from "../store/types.js";

/**
 * Requests this gateway has running on one replica, and their integral over
 * time (request-milliseconds), so the mean between any two moments is a
 * difference of two readings.
 */
export class RunningCount {
  count = 0;
  #integral = 0;
  #at = 0;

  /** `delta` requests start (or, negative, end) at `now`. */
  add(delta: number, now: number): void {
    this.#integral = this.integral(now);
    this.#at = now;
    this.count += delta;
  }

  integral(now: number): number {
    return this.#integral + this.count * (now - this.#at);
  }
}

/** One request's readings, taken as it runs. */
export class TimingProbe {
  /** Replicas that took the request on (attempts the gateway heard of), and generations beyond the first (a cascade's heavy leg). */
  #attempts = 0;
  #legs = 0;
  #startedAt = NaN;
  #batch = 0;
  #firstAt = NaN;
  #integralAtFirst = 0;
  #lastAt = NaN;
  #integralAtLast = 0;
  /** Tokens that came after the first piece of text, up to the last. */
  #after = 0;

  /** A replica took the request at `now`, with `running` requests on it, this one included. */
  attempt(now: number, running: number): void {
    this.#attempts++;
    this.#startedAt = now;
    this.#batch = running;
  }

  nextLeg(): void {
    this.#legs++;
  }

  /**
   * A piece of `tokens` tokens arrived at `now`. Decoding is timed from the
   * first piece to the last, not to the end of the request, so what the
   * gateway does after the last token (the response, the ledger) is no
   * part of the time per token.
   */
  piece(now: number, tokens: number, running: RunningCount | undefined): void {
    if (tokens === 0 && !Number.isNaN(this.#firstAt)) return; // held-back text of tokens already counted
    const integral = running?.integral(now) ?? 0;
    if (Number.isNaN(this.#firstAt)) {
      this.#firstAt = now;
      this.#integralAtFirst = integral;
    } else {
      this.#after += tokens;
    }
    this.#lastAt = now;
    this.#integralAtLast = integral;
  }

  /**
   * The timing of a request that ended as `s` says; undefined without a
   * first token, or when more than one generation or replica answered it
   * (SettleInput.timing says why).
   */
  timing(s: Settlement, running: RunningCount | undefined): GenerationTiming | undefined {
    const single = this.#attempts === 1 && this.#legs === 0 && s.attempts === 1 && s.continuations === 0 && (s.earlier ?? []).length === 0;
    if (!single || Number.isNaN(this.#firstAt) || running === undefined) return undefined;
    const decodedMs = this.#lastAt - this.#firstAt;
    const decoded = this.#after >= 1 && decodedMs > 0;
    return {
      batch: this.#batch,
      batchMean: decoded ? (this.#integralAtLast - this.#integralAtFirst) / decodedMs : null,
      ttftMs: this.#firstAt - this.#startedAt,
      tpotMs: decoded && s.status === "ok" ? decodedMs / this.#after : null,
    };
  }
}
