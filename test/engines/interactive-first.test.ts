/** The local engine's step composition: an interactive prompt's prefill runs without batch lines beside it. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { BatchItem, Token } from "node-llama-cpp";
import { interactiveFirst } from "../../src/engines/local.js";

const item = (name: string, tokens: number, priority: 1 | 5): BatchItem & { name: string } => ({ name, tokens: Array.from({ length: tokens }, (_, i) => i as Token), logits: [], evaluationPriority: priority });
const step = (items: ReturnType<typeof item>[]): string[] => interactiveFirst({ items }).map((p) => `${(p.item as ReturnType<typeof item>).name}:${p.processAmount}`);

test("what goes into the next step: batch lines wait out an interactive prefill, never an interactive decode", () => {
  const rows: [string, ReturnType<typeof item>[], string[]][] = [
    ["batch lines alone run", [item("b1", 1, 1), item("b2", 1, 1)], ["b1:1", "b2:1"]],
    ["a new interactive prompt runs alone with the interactive decodes", [item("b1", 1, 1), item("p", 40, 5), item("i", 1, 5), item("b2", 1, 1)], ["i:1", "p:40"]],
    ["an interactive decode step takes the batch lines along", [item("b1", 1, 1), item("i", 1, 5)], ["b1:1", "i:1"]],
    ["a batch line's own prefill waits for nothing but goes after the decodes", [item("bp", 30, 1), item("i", 1, 5), item("b", 1, 1)], ["i:1", "b:1", "bp:30"]],
    ["nothing queued", [], []],
  ];
  for (const [name, items, want] of rows) assert.deepEqual(step(items), want, name);
});
