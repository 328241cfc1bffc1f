import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/core/errors.js";
import { SlotPool } from "../../src/engines/slots.js";
import { SseLineDecoder } from "../../src/engines/sse-decoder.js";

describe("SlotPool", () => {
  it("hands out every slot, then queues, then refuses past the queue bound", async () => {
    const pool = new SlotPool(["a", "b"], 1);
    const never = new AbortController().signal;
    const got = [await pool.acquire(never), await pool.acquire(never)].sort();
    assert.deepEqual(got, ["a", "b"]);
    const waiting = pool.acquire(never);
    assert.equal(pool.queued, 1);
    await assert.rejects(pool.acquire(never), (e: FlotillaError) => e.code === "overloaded" && e.retryAfterS === 1);
    pool.release("a");
    assert.equal(await waiting, "a", "the waiter gets the released slot");
    assert.equal(pool.active, 2);
  });

  it("drops an aborted waiter from the queue at once", async () => {
    const pool = new SlotPool([1], 4);
    const never = new AbortController().signal;
    await pool.acquire(never);
    const gone = new AbortController();
    const waiting = pool.acquire(gone.signal);
    assert.equal(pool.queued, 1);
    gone.abort();
    await assert.rejects(waiting, (e: FlotillaError) => e.code === "cancelled");
    assert.equal(pool.queued, 0);
    pool.release(1);
    assert.equal(pool.active, 0, "the slot goes back to the free list, not to the departed waiter");
  });

  it("rejects waiters on shutdown", async () => {
    const pool = new SlotPool([1], 4);
    const never = new AbortController().signal;
    await pool.acquire(never);
    const waiting = pool.acquire(never);
    pool.rejectWaiters(new FlotillaError("engine_unavailable", "bye"));
    await assert.rejects(waiting, (e: FlotillaError) => e.code === "engine_unavailable");
  });
});

describe("SseLineDecoder", () => {
  const decode = (pieces: Uint8Array[]): string[] => {
    const d = new SseLineDecoder();
    const out: string[] = [];
    for (const p of pieces) d.push(p, (data) => out.push(data));
    return out;
  };
  const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

  it("yields data payloads and ignores comments and other fields", () => {
    assert.deepEqual(decode([bytes(": ping\nevent: x\ndata: {\"a\":1}\n\ndata:[DONE]\n\n")]), ['{"a":1}', "[DONE]"]);
  });

  it("joins lines and characters cut across chunks, CRLF or LF", () => {
    const all = bytes('data: {"t":"héllo ✓"}\r\n\r\ndata: two\n\n');
    const pieces = [all.slice(0, 3), all.slice(3, 14), all.slice(14, 15), all.slice(15)];
    assert.deepEqual(decode(pieces), ['{"t":"héllo ✓"}', "two"]);
  });

  it("splits at every byte boundary the same way", () => {
    const all = bytes('data: {"t":"日本語"}\n\ndata: end\n\n');
    for (let cut = 1; cut < all.length; cut++) {
      assert.deepEqual(decode([all.slice(0, cut), all.slice(cut)]), ['{"t":"日本語"}', "end"]);
    }
  });
});
