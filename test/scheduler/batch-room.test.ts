import assert from "node:assert/strict";
import { test } from "node:test";
import { batchRoom, type BatchCapacity } from "../../src/scheduler/batch-room.js";

const idle: BatchCapacity = { slots: 8, busy: 0, interactiveWaiting: 0, linesInFlight: 0, headroom: 1 };

test("batch lines fill idle slots, leave the headroom, yield a slot more for each interactive request running, and none while one waits", () => {
  const cases: readonly [string, Partial<BatchCapacity>, number][] = [
    ["an idle fleet: every slot but the headroom", {}, 7],
    ["no headroom: every slot", { headroom: 0 }, 8],
    ["3 interactive requests running: their slots, and as many more kept free", { busy: 3 }, 1],
    ["lines already in flight count, though still waiting for a slot", { linesInFlight: 5, busy: 2 }, 2],
    ["5 lines running, 1 interactive: the interactive one's slot and one more", { linesInFlight: 5, busy: 6 }, 0],
    ["lines alone on the fleet: the rest of it but the headroom", { linesInFlight: 4, busy: 4 }, 3],
    ["an interactive request waiting: none start", { interactiveWaiting: 1 }, 0],
    ["a full fleet: none", { busy: 8 }, 0],
    ["engines past their slots (queued work): never negative", { busy: 12 }, 0],
    ["no ready replica: none", { slots: 0 }, 0],
  ];
  for (const [name, over, want] of cases) assert.equal(batchRoom({ ...idle, ...over }), want, name);
});
