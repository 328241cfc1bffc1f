/**
 * The simulator's event queue: a min-heap over (time, sequence number) in one
 * flat Float64Array, three numbers per event (time, sequence, payload), so
 * pushing and popping allocate nothing once the array has grown and a sift
 * touches one contiguous run of memory per level. The heap is 4-ary: half
 * the levels of a binary heap, and a node's children sit side by side.
 * Events at the same time pop in the order they were pushed, which keeps a
 * run deterministic.
 *
 * An event is a kind (0-15) and a target (a non-negative integer: a replica or
 * request index); the loop that pops it knows what they mean.
 */
const STRIDE = 3;
const ARITY = 4;
const KINDS = 16;

export class EventQueue {
  #heap: Float64Array;
  #size = 0;
  #nextSeq = 0;
  /** Kind of the event `pop` returned last. */
  kind = 0;
  /** Target of the event `pop` returned last. */
  target = 0;

  constructor(initialCapacity = 1024) {
    this.#heap = new Float64Array(Math.max(16, initialCapacity) * STRIDE);
  }

  get size(): number {
    return this.#size;
  }

  /** Time of the earliest event; Infinity when empty. */
  peekTime(): number {
    return this.#size === 0 ? Infinity : this.#heap[0]!;
  }

  push(time: number, kind: number, target: number): void {
    if (Number.isNaN(time)) throw new RangeError("event time is NaN");
    if (!Number.isInteger(kind) || kind < 0 || kind >= KINDS) throw new RangeError(`event kind must be an integer in [0, ${KINDS}), got ${kind}`);
    if (!Number.isInteger(target) || target < 0) throw new RangeError(`event target must be a non-negative integer, got ${target}`);
    if ((this.#size + 1) * STRIDE > this.#heap.length) this.#grow();
    const h = this.#heap;
    const seq = this.#nextSeq++;
    const payload = target * KINDS + kind;
    let i = this.#size++;
    // Sift up: move parents down until the slot fits.
    while (i > 0) {
      const parent = ((i - 1) / ARITY) | 0;
      const p = parent * STRIDE;
      const pt = h[p]!;
      if (pt < time || (pt === time && h[p + 1]! < seq)) break;
      const d = i * STRIDE;
      h[d] = pt;
      h[d + 1] = h[p + 1]!;
      h[d + 2] = h[p + 2]!;
      i = parent;
    }
    const d = i * STRIDE;
    h[d] = time;
    h[d + 1] = seq;
    h[d + 2] = payload;
  }

  /**
   * Removes the earliest event and returns its time; its kind and target are
   * then in `kind` and `target`. Throws when empty.
   */
  pop(): number {
    if (this.#size === 0) throw new RangeError("pop from an empty event queue");
    const h = this.#heap;
    const time = h[0]!;
    const payload = h[2]!;
    this.kind = payload % KINDS;
    this.target = (payload - this.kind) / KINDS;
    const last = --this.#size;
    if (last > 0) {
      const l = last * STRIDE;
      const t = h[l]!;
      const s = h[l + 1]!;
      const g = h[l + 2]!;
      let i = 0;
      for (;;) {
        const first = i * ARITY + 1;
        if (first >= last) break;
        // The smallest of up to four children.
        let c = first;
        let ct = h[first * STRIDE]!;
        let cs = h[first * STRIDE + 1]!;
        const end = Math.min(first + ARITY, last);
        for (let k = first + 1; k < end; k++) {
          const kt = h[k * STRIDE]!;
          if (kt < ct || (kt === ct && h[k * STRIDE + 1]! < cs)) {
            c = k;
            ct = kt;
            cs = h[k * STRIDE + 1]!;
          }
        }
        if (t < ct || (t === ct && s < cs)) break;
        const d = i * STRIDE;
        const src = c * STRIDE;
        h[d] = ct;
        h[d + 1] = cs;
        h[d + 2] = h[src + 2]!;
        i = c;
      }
      const d = i * STRIDE;
      h[d] = t;
      h[d + 1] = s;
      h[d + 2] = g;
    }
    return time;
  }

  clear(): void {
    this.#size = 0;
  }

  #grow(): void {
    const heap = new Float64Array(this.#heap.length * 2);
    heap.set(this.#heap);
    this.#heap = heap;
  }
}
