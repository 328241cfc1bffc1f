/**
 * Stop strings matched on the answer's text as it streams, the way vLLM and
 * llama.cpp's server match them: text that may be the start of a stop string
 * is held back until the next piece decides, and the answer ends just before
 * the first stop string found. node-llama-cpp's own stop triggers re-tokenise
 * the text before a stop and lose its leading space (" sci" comes back as
 * "sci"), so the local engine matches the caller's stop strings here.
 */
export class StopText {
  readonly #stops: readonly string[];
  #held = "";
  stopped = false;
  /** The stop string the answer ended at. */
  matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /** Takes the next piece; returns the text that may go out now ("" while it is held back or after a stop). */
  push(text: string): string {
    if (this.stopped) return "";
    const buffer = this.#held + text;
    let cut = -1;
    for (const stop of this.#stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) {
        cut = at;
        this.matched = stop;
      }
    }
    if (cut >= 0) {
      this.stopped = true;
      this.#held = "";
      return buffer.slice(0, cut);
    }
    const keep = this.#heldSuffix(buffer);
    this.#held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** True while text is held back, waiting to see whether it starts a stop string. */
  get holding(): boolean {
    return this.#held.length > 0;
  }

  /** The answer ended without a stop: whatever was held back is answer text after all. */
  flush(): string {
    const rest = this.#held;
    this.#held = "";
    return rest;
  }

  /** The longest end of `buffer` that is the beginning of some stop string. */
  #heldSuffix(buffer: string): number {
    let longest = 0;
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > longest; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
