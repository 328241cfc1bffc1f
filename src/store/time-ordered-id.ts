import { randomFillSync } from "node:crypto";

/** Random bytes drawn 4 KiB at a time: one call into the OS's CSPRNG per 256 ids, not one per id. */
const pool = Buffer.alloc(4096);
let used = pool.length;

/**
 * A UUID whose first 48 bits are the time in ms and whose other 74 are
 * random (RFC 9562's version 7). Ledger rows keyed by it are inserted at
 * the right edge of the primary-key index: a group commit then writes a
 * page or two of that index, not one random page per row as random
 * (version 4) ids make it.
 */
export function timeOrderedId(nowMs: number): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const b = pool.subarray(used, (used += 16));
  b.writeUIntBE(Math.max(0, Math.min(nowMs, 2 ** 48 - 1)), 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70; // version 7
  b[8] = (b[8]! & 0x3f) | 0x80; // the RFC's variant
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
