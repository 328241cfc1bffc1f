/**
 * How many Batch API lines may start now. Batch work fills capacity the
 * interactive traffic leaves idle and yields to it: no line starts while an
 * interactive request waits for a slot; `headroom` slots stay free for the
 * next interactive arrival (a line, once on a slot, runs to its end); and
 * each interactive request running keeps one more slot free, so the more
 * interactive traffic there is, the fewer lines share the replicas with it
 * (on a CPU or a saturated accelerator, a line on a slot slows every other
 * sequence's steps). Lines waiting for a slot count as occupying one, so the
 * batch never queues more than it could run.
 */
export interface BatchCapacity {
  /** Slots of the ready replicas. */
  readonly slots: number;
  /** Of them, generating or waiting in the engines now (interactive and batch). */
  readonly busy: number;
  /** Interactive requests waiting at the front door for a slot. */
  readonly interactiveWaiting: number;
  /** Batch lines started and not finished (waiting for a slot or running). */
  readonly linesInFlight: number;
  /** Slots kept free for interactive arrivals. */
  readonly headroom: number;
}

export function batchRoom(c: BatchCapacity): number {
  if (c.interactiveWaiting > 0) return 0;
  const occupied = Math.max(c.busy, c.linesInFlight);
  const interactiveRunning = Math.max(0, c.busy - c.linesInFlight);
  return Math.max(0, c.slots - c.headroom - occupied - interactiveRunning);
}
