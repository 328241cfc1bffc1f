/**
 * Which replicas a request may be offered: the candidate rule the live
 * dispatcher and the simulator share. A replica is ready when its engine
 * is up, its phase admits the request (replica-state.ts: a draining or
 * terminating replica only takes the rest of an answer begun elsewhere, a
 * removed one nothing) and its breaker admits it (health.ts).
 *
 * Panic mode: a replica the breaker has ejected is still better than none.
 * When no candidate passes (a burst of failures during an outage trips
 * every breaker), those whose engine is up and whose phase admits the
 * request are offered anyway, as Envoy's panic threshold does, rather than
 * failing every request with 503. The rule is applied to the candidates
 * given: the whole model live, the sampled candidates in the simulator.
 */
import type { ReplicaHealth } from "./health.js";
import type { Candidate } from "./pipeline.js";
import { phaseAdmits } from "./replica-state.js";

/** What the rule reads of one replica; read at once, so a caller may hand out one object refilled per call. */
export interface ReplicaStatus {
  readonly engineReady: boolean;
  readonly health: ReplicaHealth;
}

export type ReadinessCandidate = { -readonly [K in keyof Candidate]: Candidate[K] };

/** Sets each candidate's `ready`, `failures` and `proven` from its replica's status; `resume` for the rest of an answer. */
export type Readiness = (candidates: readonly ReadinessCandidate[], statusOf: (index: number) => ReplicaStatus, resume: boolean) => void;

export const markReady: Readiness = (candidates, statusOf, resume) => {
  let any = false;
  for (const c of candidates) {
    const { engineReady, health } = statusOf(c.index);
    // An engine that comes back is a new process: observing it closes the breaker.
    health.observe(engineReady);
    c.ready = engineReady && health.admits(resume);
    c.failures = health.failures;
    c.proven = health.proven;
    any ||= c.ready;
  }
  if (any) return;
  for (const c of candidates) {
    const { engineReady, health } = statusOf(c.index);
    c.ready = engineReady && phaseAdmits(health.phase, resume);
  }
};

/** Sequences the replicas that take new traffic can run at once: the admission lane's capacity. */
export function servingSlots(n: number, statusOf: (index: number) => ReplicaStatus, slotsOf: (index: number) => number): number {
  let slots = 0;
  for (let r = 0; r < n; r++) {
    const { engineReady, health } = statusOf(r);
    health.observe(engineReady);
    if (engineReady && health.admits()) slots += slotsOf(r);
  }
  return slots;
}
