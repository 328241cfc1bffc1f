import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { EventQueue } from "../../src/sim/events.js";

describe("EventQueue", () => {
  it("pops in time order, and events at the same time in the order they were pushed", () => {
    const q = new EventQueue(2);
    q.push(5, 1, 50);
    q.push(1, 2, 10);
    q.push(5, 3, 51);
    q.push(3, 4, 30);
    q.push(1, 5, 11);
    const out: [number, number, number][] = [];
    while (q.size > 0) {
      const t = q.pop();
      out.push([t, q.kind, q.target]);
    }
    assert.deepEqual(out, [
      [1, 2, 10],
      [1, 5, 11],
      [3, 4, 30],
      [5, 1, 50],
      [5, 3, 51],
    ]);
  });

  it("agrees with a stable sort on any sequence of pushes and pops (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant(-1)), { maxLength: 300 }), (ops) => {
        const q = new EventQueue(1);
        const model: { t: number; id: number }[] = [];
        let id = 0;
        for (const op of ops) {
          if (op >= 0) {
            q.push(op, 0, id);
            model.push({ t: op, id: id++ });
          } else if (model.length > 0) {
            model.sort((a, b) => a.t - b.t || a.id - b.id);
            const want = model.shift()!;
            assert.equal(q.pop(), want.t);
            assert.equal(q.target, want.id);
          }
          assert.equal(q.size, model.length);
        }
      }),
    );
  });

  it("reports the earliest time without removing it, Infinity when empty", () => {
    const q = new EventQueue();
    assert.equal(q.peekTime(), Infinity);
    q.push(7.5, 0, 0);
    q.push(2.25, 0, 1);
    assert.equal(q.peekTime(), 2.25);
    assert.equal(q.size, 2);
  });

  it("refuses to pop when empty and to push NaN", () => {
    const q = new EventQueue();
    assert.throws(() => q.pop(), /empty/);
    assert.throws(() => q.push(NaN, 0, 0), /NaN/);
  });
});
