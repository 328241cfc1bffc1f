import type { Clock } from "../core/clock.js";
import { phaseAdmits, type ReplicaPhase } from "./replica-state.js";

export interface BreakerOptions {
  /** Consecutive failures that eject a replica. */
  readonly failureThreshold: number;
  /** How long an ejected replica gets no traffic before one trial request. */
  readonly cooldownMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failureThreshold: 3, cooldownMs: 5_000 };

export type HealthState = "healthy" | "ejected" | "half-open" | "draining" | "terminating" | "removed" | "not-ready";

/**
 * Passive health of one replica: a circuit breaker fed by the outcomes of
 * real requests (a replica can say "healthy" on /health and still fail every
 * request), plus the operator's drain switch. Time comes from the Clock so the
 * simulator runs the same breaker in virtual time.
 */
export class ReplicaHealth {
  readonly #clock: Clock;
  readonly #opts: BreakerOptions;
  #failures = 0;
  #open = false;
  #openedAt = 0;
  #trialInFlight = false;
  #phase: ReplicaPhase = "serving";
  #engineWasReady = true;
  #proven = false;

  constructor(clock: Clock, opts: BreakerOptions = DEFAULT_BREAKER) {
    this.#clock = clock;
    this.#opts = opts;
  }

  /**
   * Whether the router may send this replica a request now: its phase allows
   * it (a draining or terminating replica takes only the rest of an answer
   * another replica broke off, `resume`), and its breaker does.
   */
  admits(resume = false): boolean {
    if (!phaseAdmits(this.#phase, resume)) return false;
    if (!this.#open) return true;
    // After the cooldown exactly one trial goes through; its outcome decides.
    return this.#clock.now() - this.#openedAt >= this.#opts.cooldownMs && !this.#trialInFlight;
  }

  /**
   * Tells the breaker whether the engine itself says it is up. An engine
   * that comes back after being down is a new process: its old failures say
   * nothing about it, so the breaker closes.
   */
  observe(engineReady: boolean): void {
    if (engineReady && !this.#engineWasReady) {
      this.succeeded();
      this.#proven = false; // a new process has answered nothing yet
    }
    this.#engineWasReady = engineReady;
  }

  /** The router chose this replica. */
  dispatched(): void {
    if (this.#open) this.#trialInFlight = true;
  }

  /** The request ended in a way that says nothing of the replica (cancelled, refused as invalid). */
  released(): void {
    this.#trialInFlight = false;
  }

  /** Requests in a row this replica has failed. */
  get failures(): number {
    return this.#failures;
  }

  /** It has begun an answer (its first token came) since it last failed one. */
  get proven(): boolean {
    return this.#proven;
  }

  /** Its first token came: evidence it serves, before the answer is whole. */
  spoke(): void {
    this.#proven = true;
  }

  succeeded(): void {
    this.#proven = true;
    this.#failures = 0;
    this.#open = false;
    this.#trialInFlight = false;
  }

  failed(): void {
    this.#proven = false;
    this.#failures++;
    if (this.#open || this.#failures >= this.#opts.failureThreshold) {
      this.#open = true;
      this.#openedAt = this.#clock.now();
      this.#trialInFlight = false;
    }
  }

  get phase(): ReplicaPhase {
    return this.#phase;
  }

  set phase(phase: ReplicaPhase) {
    this.#phase = phase;
  }

  /** Draining is the operator's switch: serving again when turned off. */
  get draining(): boolean {
    return this.#phase === "draining";
  }

  set draining(on: boolean) {
    if (on && this.#phase === "serving") this.#phase = "draining";
    if (!on && this.#phase === "draining") this.#phase = "serving";
  }

  state(engineReady: boolean): HealthState {
    if (this.#phase !== "serving") return this.#phase;
    if (!engineReady) return "not-ready";
    if (!this.#open) return "healthy";
    return this.#clock.now() - this.#openedAt >= this.#opts.cooldownMs ? "half-open" : "ejected";
  }
}
