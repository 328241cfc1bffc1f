/**
 * A progress bar on a terminal (redrawn in place, at most every 100 ms by
 * the simulator's own throttle), and on anything else a single final line:
 * CI logs get one line, not a thousand.
 */
import type { SimProgress } from "./simulator.js";

export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressBar {
  update(p: SimProgress): void;
  /** Ends the bar with a summary line. */
  done(p: SimProgress): void;
}

function describe(p: SimProgress): string {
  const k = (x: number): string => Math.round(x).toLocaleString("en-US");
  return `${k(p.resolved)}/${k(p.total)} requests, ${k(p.simMs / 1000)} s simulated, ${k(p.events)} events, ${(p.wallMs / 1000).toFixed(1)} s`;
}

/** Renders a bar line of `width` columns: [#####.....] 50% text. */
export function renderBar(p: SimProgress, width: number): string {
  const share = p.total > 0 ? p.resolved / p.total : 1;
  const label = `${(share * 100).toFixed(0).padStart(3)}% ${describe(p)}`;
  const barWidth = Math.max(10, Math.min(40, width - label.length - 4));
  const filled = Math.round(share * barWidth);
  const line = `[${"#".repeat(filled)}${".".repeat(barWidth - filled)}] ${label}`;
  return line.length > width ? line.slice(0, width) : line;
}

export function progressBar(stream: ProgressStream, prefix = "sim"): ProgressBar {
  const tty = stream.isTTY === true;
  let drawn = false;
  return {
    update(p) {
      if (!tty) return;
      stream.write(`\r${prefix}: ${renderBar(p, (stream.columns ?? 100) - prefix.length - 3)}`);
      drawn = true;
    },
    done(p) {
      if (tty && drawn) stream.write("\r\x1b[K");
      stream.write(`${prefix}: done, ${describe(p)}\n`);
    },
  };
}
