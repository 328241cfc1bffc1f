import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PeerHints, placementOf } from "../../src/scheduler/peer-hints.js";
import { PrefixIndex } from "../../src/scheduler/prefix-index.js";

/** A chain of `n` block hashes; two chains with the same `seed` share every block. */
const chain = (seed: number, n: number): number[] => Array.from({ length: n }, (_, i) => seed * 1000 + i);

function matched(index: PrefixIndex, blocks: readonly number[], replica: number): number {
  index.resolve(blocks);
  return index.leadingResolved(replica);
}

describe("peer hints: other gateways' placements in this one's prefix index", () => {
  it("tells a placement at depths 1, 2, 4, … and at its last two blocks", () => {
    const points = placementOf(7, chain(1, 12));
    assert.deepEqual(points.map((p) => p.depth), [1, 2, 4, 8, 11, 12]);
    assert.ok(points.every((p) => p.replica === 7 && p.tail === 1000 + p.depth - 1));
    assert.deepEqual(placementOf(7, chain(1, 1)).map((p) => p.depth), [1]);
    assert.deepEqual(placementOf(7, []), []);
  });

  it("the next turn of a conversation placed elsewhere finds it on the replica, whole", () => {
    const index = new PrefixIndex();
    const hints = new PeerHints();
    const turn1 = chain(3, 10);
    for (const p of placementOf(2, turn1)) hints.add(p);
    const turn2 = [...turn1, 3100, 3101, 3102];
    assert.equal(matched(index, turn2, 2), 0, "the index knows nothing before the hints are applied");
    assert.ok(hints.apply(turn2, index) > 0);
    assert.equal(matched(index, turn2, 2), 10);
    assert.equal(hints.size, 0, "applied hints are dropped");
  });

  it("a prompt sharing only part of a placed chain is credited with at least half of the shared run", () => {
    const index = new PrefixIndex();
    const hints = new PeerHints();
    const placed = chain(4, 40);
    for (const p of placementOf(1, placed)) hints.add(p);
    const other = [...placed.slice(0, 21), 9999, 9998];
    hints.apply(other, index);
    const got = matched(index, other, 1);
    assert.ok(got >= 11 && got <= 21, `credited ${got} of 21 shared blocks`);
  });

  it("drops hints for replicas this gateway does not know, and hints whose depth disagrees", () => {
    const index = new PrefixIndex();
    const hints = new PeerHints();
    const blocks = chain(5, 4);
    hints.add({ replica: 9, depth: 4, tail: blocks[3]! });
    assert.equal(hints.apply(blocks, index, () => undefined), 0);
    assert.equal(hints.size, 0);
    hints.add({ replica: 1, depth: 3, tail: blocks[3]! });
    assert.equal(hints.apply(blocks, index), 0, "the tail is at depth 4 in this prompt, not 3");
    assert.equal(matched(index, blocks, 1), 0);
  });

  it("keeps at most its capacity, forgetting the oldest", () => {
    const hints = new PeerHints(2);
    for (let i = 1; i <= 3; i++) hints.add({ replica: 0, depth: 1, tail: i });
    assert.equal(hints.size, 2);
    const index = new PrefixIndex();
    assert.equal(hints.apply([1], index), 0, "the oldest went");
    assert.equal(hints.apply([3], index), 1);
    assert.throws(() => new PeerHints(0), /positive integer/);
  });
});
