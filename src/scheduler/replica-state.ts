/**
 * Where a replica is in its life, and what that allows: the one definition
 * the candidate rules, admin drain, shutdown and (next) live membership and
 * discovery share. Pure, so the live dispatcher and the simulator read the
 * same table.
 *
 * | phase       | new requests | resumes (the rest of an answer begun elsewhere) |
 * |-------------|--------------|-------------------------------------------------|
 * | serving     | yes          | yes                                             |
 * | draining    | no           | yes                                             |
 * | terminating | no           | yes, while its engine still serves              |
 * | removed     | no           | no, not even when nothing else is left          |
 *
 * A draining replica is one an operator is emptying; a terminating one is
 * going away on its own (a Kubernetes endpoint marked terminating, a process
 * on its way down), so it is used only while its engine answers. Its
 * breaker and its engine's readiness come on top: a replica admits a request
 * only if its phase allows it, its engine is ready and its breaker agrees.
 */
export type ReplicaPhase = "serving" | "draining" | "terminating" | "removed";

export const REPLICA_PHASES: readonly ReplicaPhase[] = ["serving", "draining", "terminating", "removed"];

/** Whether a replica in `phase` may take a request; `resume` for the rest of an answer already begun. */
export function phaseAdmits(phase: ReplicaPhase, resume: boolean): boolean {
  switch (phase) {
    case "serving":
      return true;
    case "draining":
    case "terminating":
      return resume;
    case "removed":
      return false;
  }
}
