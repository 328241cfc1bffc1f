import assert from "node:assert/strict";
import { test } from "node:test";
import { StopText } from "../../src/engines/stop-text.js";

/** Each case: the stop strings, the pieces as they stream, what goes out after each, and whether it stopped (at which). */
const cases: { name: string; stops: string[]; pieces: string[]; out: string[]; stopped: boolean; matched?: string; flushed?: string }[] = [
  { name: "no stop strings: everything goes out", stops: [], pieces: [" a", "b"], out: [" a", "b"], stopped: false, flushed: "" },
  { name: "a stop inside one piece keeps the text before it, leading space included", stops: ["en"], pieces: [" scientific"], out: [" sci"], stopped: true, matched: "en" },
  { name: "a stop split across pieces is held back, then cut", stops: ["END"], pieces: ["ab E", "N", "D tail"], out: ["ab ", "", ""], stopped: true, matched: "END" },
  { name: "held text that turns out not to be a stop goes out", stops: ["END"], pieces: ["ab E", "Nx"], out: ["ab ", "ENx"], stopped: false, flushed: "" },
  { name: "text held at the end is answer text", stops: ["END"], pieces: ["ab EN"], out: ["ab "], stopped: false, flushed: "EN" },
  { name: "the earliest of several stops wins", stops: ["zz", "b"], pieces: ["a b zz"], out: ["a "], stopped: true, matched: "b" },
  { name: "nothing goes out after a stop", stops: ["x"], pieces: ["ax", "more"], out: ["a", ""], stopped: true, matched: "x" },
  { name: "multi-byte text is held and cut by whole characters", stops: ["👩‍👧"], pieces: ["é 👩", "‍👧 rest"], out: ["é ", ""], stopped: true, matched: "👩‍👧" },
];

for (const c of cases) {
  test(`StopText: ${c.name}`, () => {
    const s = new StopText(c.stops);
    assert.deepEqual(c.pieces.map((p) => s.push(p)), c.out);
    assert.equal(s.stopped, c.stopped);
    assert.equal(s.matched, c.matched, "the stop string the answer ended at");
    if (c.flushed !== undefined) assert.equal(s.flush(), c.flushed);
  });
}
