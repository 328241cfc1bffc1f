/**
 * How many Batch API lines may start now. Batch work fills capacity the
 * interactive traffic leaves idle and yields to it: no line starts while an
 * interactive request waits for a slot, `headroom` slots stay free for the
 * next interactive arrivals (a line, once on a slot, runs to its end), and
 * lines waiting for a slot count as occupying one, so the batch never queues
 * more than it could run.
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
  return Math.max(0, c.slots - c.headroom - occupied);
}
