/**
 * Prefix blocks: a prompt cut into fixed-size blocks, each block named by a
 * hash that covers it and every block before it (a chain, as vLLM's prefix
 * cache and Mooncake's traces do). Two prompts share their first k hashes
 * exactly when they share their first k blocks, so "how much of this prompt
 * does replica R hold" becomes "how many leading hashes of this chain has R
 * served" (prefix-index.ts).
 *
 * Only full blocks are hashed: a partial last block cannot be reused by an
 * engine whose cache works in whole blocks.
 *
 * For chat, callers hash the whole rendered conversation (the token ids, or
 * the text, of every message in order, as the engine will see it), so each
 * message counts: two conversations with the same system prompt share those
 * blocks; the next turn of a conversation shares all earlier turns.
 *
 * The hash is non-cryptographic (two Murmur3-style 32-bit lanes, each seeded
 * with the previous block's lanes) and yields integers in [0, 2^53), safe as
 * JavaScript numbers and as Map keys. Not for adversarial inputs: someone
 * who crafts collisions only misroutes their own requests.
 */

import type { Prompt } from "../core/request.js";

const TWO_32 = 4294967296;
/** Bits of the second lane kept in the 53-bit result. */
const HI_MASK = 0x1fffff;

/** A chain's state between blocks: the previous block's two lanes. */
interface Lanes {
  a: number;
  b: number;
}

function seedLanes(seed: number): Lanes {
  return { a: (seed ^ 0x243f6a88) | 0, b: (Math.imul(seed, 0x9e3779b1) ^ 0x85a308d3) | 0 };
}

function finishBlock(st: Lanes, h1: number, h2: number, len: number): number {
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  h2 ^= h2 >>> 16;
  h2 = Math.imul(h2, 0x85ebca6b);
  h2 ^= h2 >>> 13;
  h2 = Math.imul(h2, 0xc2b2ae35);
  h2 ^= h2 >>> 16;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  st.a = h1;
  st.b = h2;
  return (h2 & HI_MASK) * TWO_32 + (h1 >>> 0);
}

function checkBlockSize(blockSize: number, what: string): void {
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`${what} must be a positive integer, got ${blockSize}`);
}

/**
 * Chained hashes of the full `blockSize`-token blocks of `tokens` (token ids,
 * integers in [0, 2^32)). Hash k depends on tokens [0, (k+1)·blockSize) and
 * on `seed` (use one seed per model family if indexes are ever shared).
 */
export function blockHashes(tokens: ArrayLike<number>, blockSize: number, seed = 0): number[] {
  checkBlockSize(blockSize, "block size");
  return chainHashes(tokens.length, blockSize, seedLanes(seed), (i) => tokens[i]!);
}

/**
 * The same chain over fixed-size chunks of text (UTF-16 code units), for
 * remote engines whose tokenizer the controller does not have. Routing stays
 * prefix-aware (equal text prefixes give equal leading hashes), though the
 * blocks no longer line up with the engine's own cache blocks: choose
 * `charsPerBlock` near blockTokens × ~4 characters per token.
 */
export function textBlockHashes(text: string, charsPerBlock: number, seed = 0): number[] {
  checkBlockSize(charsPerBlock, "characters per block");
  return chainHashes(text.length, charsPerBlock, seedLanes(seed ^ 0x7e57), (i) => text.charCodeAt(i));
}

/** Hashes the full blocks of `length` units (read by `unitAt`), each block chained to the ones before it. */
function chainHashes(length: number, blockSize: number, st: Lanes, unitAt: (i: number) => number): number[] {
  const blocks = Math.floor(length / blockSize);
  const out = new Array<number>(blocks);
  for (let k = 0; k < blocks; k++) {
    let h1 = st.a;
    let h2 = st.b;
    const end = (k + 1) * blockSize;
    for (let i = k * blockSize; i < end; i++) {
      const t = unitAt(i);
      let k1 = Math.imul(t, 0xcc9e2d51);
      k1 = (k1 << 15) | (k1 >>> 17);
      h1 ^= Math.imul(k1, 0x1b873593);
      h1 = (h1 << 13) | (h1 >>> 19);
      h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
      let k2 = Math.imul(t, 0x1b873593);
      k2 = (k2 << 16) | (k2 >>> 16);
      h2 ^= Math.imul(k2, 0xcc9e2d51);
      h2 = (h2 << 17) | (h2 >>> 15);
      h2 = (Math.imul(h2, 5) + 0x38495ab5) | 0;
    }
    out[k] = finishBlock(st, h1, h2, blockSize);
  }
  return out;
}

/** Leading entries two chains share: the shared prefix, in blocks. */
export function sharedPrefixBlocks(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * The text a prompt is hashed over when no tokenizer is at hand: every chat
 * message in order, each as role and content between control characters (so
 * a role change is a change of text), then the continuation if any (the
 * answer so far, replayed on another replica).
 */
export function promptHashText(prompt: Prompt, continuation?: string): string {
  const body =
    prompt.kind === "text"
      ? prompt.text
      : prompt.kind === "tokens"
        ? prompt.ids.map((id) => String.fromCodePoint(id % 0x10ffff)).join("") // one character per id
        : prompt.messages.map((m) => `\u0001${m.role}\u0002${m.content}`).join("");
  return continuation === undefined ? body : body + continuation;
}

/** textBlockHashes over promptHashText: the blocks of a request for a remote engine. */
export function promptBlockHashes(prompt: Prompt, charsPerBlock: number, continuation?: string, seed = 0): number[] {
  return textBlockHashes(promptHashText(prompt, continuation), charsPerBlock, seed);
}
