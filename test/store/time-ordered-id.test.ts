import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { timeOrderedId } from "../../src/store/time-ordered-id.js";

describe("time-ordered ledger ids", () => {
  it("are version-7 UUIDs whose first 48 bits are the time in ms", () => {
    const at = Date.UTC(2026, 11, 5, 12, 0, 0, 123);
    const id = timeOrderedId(at);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at);
  });

  it("sort by time, so ledger rows go in at the end of the index, and never repeat", () => {
    const ids: string[] = [];
    for (let ms = 1_700_000_000_000; ms < 1_700_000_000_300; ms++) for (let i = 0; i < 100; i++) ids.push(timeOrderedId(ms));
    assert.equal(new Set(ids).size, ids.length, "30,000 ids, all different");
    const ms = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    const sorted = [...ids].sort().map(ms);
    assert.ok(sorted.every((t, i) => i === 0 || t >= sorted[i - 1]!), "in string order, the times never go back");
  });
});
