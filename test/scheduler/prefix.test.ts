import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { blockHashes, promptBlockHashes, promptHashText, sharedPrefixBlocks, textBlockHashes } from "../../src/scheduler/prefix.js";

const tokens = (n: number, seed = 1): number[] => {
  const out: number[] = [];
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push(s % 32000);
  }
  return out;
};

describe("blockHashes", () => {
  it("hashes only full blocks", () => {
    assert.equal(blockHashes(tokens(0), 4).length, 0);
    assert.equal(blockHashes(tokens(3), 4).length, 0);
    assert.equal(blockHashes(tokens(4), 4).length, 1);
    assert.equal(blockHashes(tokens(11), 4).length, 2);
  });

  it("gives integers in [0, 2^53) that differ between blocks", () => {
    const h = blockHashes(tokens(4096), 16);
    for (const x of h) assert.ok(Number.isSafeInteger(x) && x >= 0, String(x));
    assert.equal(new Set(h).size, h.length);
  });

  it("is deterministic, and the seed changes every hash", () => {
    const t = tokens(64);
    assert.deepEqual(blockHashes(t, 16), blockHashes(Int32Array.from(t), 16));
    const a = blockHashes(t, 16);
    const b = blockHashes(t, 16, 7);
    for (let i = 0; i < a.length; i++) assert.notEqual(a[i], b[i]);
  });

  it("chains: equal prefixes give equal leading hashes; a change in block k changes hashes k.. only", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50_000 }), { minLength: 8, maxLength: 80 }), fc.nat(), fc.integer({ min: 1, max: 8 }), (t, at, bs) => {
        const pos = at % t.length;
        const changed = t.slice();
        changed[pos] = (changed[pos]! + 1) % 50_001;
        const a = blockHashes(t, bs);
        const b = blockHashes(changed, bs);
        const k = Math.floor(pos / bs);
        for (let i = 0; i < a.length; i++) {
          if (i < k) assert.equal(a[i], b[i], `block ${i} before the change at block ${k}`);
          else assert.notEqual(a[i], b[i], `block ${i} at or after the change at block ${k}`);
        }
        // Appending tokens never changes earlier hashes.
        const longer = blockHashes([...t, ...t], bs);
        assert.deepEqual(longer.slice(0, a.length), a);
        assert.equal(sharedPrefixBlocks(a, b), Math.min(k, a.length));
      }),
      { numRuns: 200 },
    );
  });

  it("a block's hash depends on the blocks before it, not only its own tokens", () => {
    const x = tokens(8, 3);
    const y = tokens(8, 4);
    const block = tokens(8, 5);
    assert.notEqual(blockHashes([...x, ...block], 8)[1], blockHashes([...y, ...block], 8)[1]);
  });

  it("rejects a block size that is not a positive integer", () => {
    assert.throws(() => blockHashes([1, 2], 0), /block size must be a positive integer/);
    assert.throws(() => blockHashes([1, 2], 1.5), /block size/);
  });
});

describe("textBlockHashes", () => {
  it("chains over fixed-size character chunks", () => {
    const sys = "You are a helpful assistant. ".repeat(10);
    const a = textBlockHashes(sys + "What is the capital of France?", 32);
    const b = textBlockHashes(sys + "Tell me a story about dragons!", 32);
    const shared = Math.floor(sys.length / 32);
    assert.equal(a.length, Math.floor((sys.length + 30) / 32));
    assert.deepEqual(a.slice(0, shared), b.slice(0, shared));
    assert.notDeepEqual(a.slice(shared), b.slice(shared));
    assert.deepEqual(textBlockHashes("abc", 4), []);
  });

  it("counts every message of a rendered conversation", () => {
    const render = (msgs: string[]): string => msgs.map((m) => `<|user|>${m}\n`).join("");
    const turn1 = textBlockHashes(render(["first question ".repeat(8)]), 16);
    const turn2 = textBlockHashes(render(["first question ".repeat(8), "follow-up ".repeat(8)]), 16);
    const other = textBlockHashes(render(["another question ".repeat(8)]), 16);
    assert.deepEqual(turn2.slice(0, turn1.length - 1), turn1.slice(0, turn1.length - 1), "the next turn shares the earlier turns' blocks");
    assert.notEqual(other[0], turn1[0]);
  });
});

describe("promptBlockHashes", () => {
  it("hashes every message with its role, then the continuation", () => {
    const sys = { role: "system" as const, content: "You are terse. ".repeat(20) };
    const q1 = { role: "user" as const, content: "What is a KV cache? ".repeat(10) };
    const a1 = { role: "assistant" as const, content: "Saved attention keys and values. ".repeat(10) };
    const turn1 = promptBlockHashes({ kind: "chat", messages: [sys, q1] }, 64);
    const turn2 = promptBlockHashes({ kind: "chat", messages: [sys, q1, a1, { role: "user", content: "And paged attention?" }] }, 64);
    assert.ok(turn1.length > 2);
    assert.deepEqual(turn2.slice(0, turn1.length), turn1, "the next turn extends the chain");
    const asUser = promptBlockHashes({ kind: "chat", messages: [{ role: "user", content: sys.content }, q1] }, 64);
    assert.notEqual(asUser[0], turn1[0], "the role is part of the text");
    assert.equal(promptHashText({ kind: "text", text: "abc" }, "def"), "abcdef");
    assert.deepEqual(promptBlockHashes({ kind: "text", text: "x".repeat(100) }, 50), textBlockHashes("x".repeat(100), 50));
  });
});
