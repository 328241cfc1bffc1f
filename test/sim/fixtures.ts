import { existsSync } from "node:fs";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { resolveSimFleet, type SimFleet } from "../../src/sim/fleet-file.js";
import type { ReplicaModel } from "../../src/sim/replica.js";
import type { Trace } from "../../src/sim/traces.js";
import { repoPath } from "../paths.js";

/** The shared reference traces, never copied into the repository. */
export const TRACES = repoPath("../shared/data/traces");
export const MOONCAKE = resolve(TRACES, "mooncake_conversation.jsonl");
export const AZURE = resolve(TRACES, "azure2023_conv.csv");
/** Tests that replay the shared traces skip, with this message, where ../shared is not beside the checkout. */
export const TRACES_ABSENT: false | string = existsSync(MOONCAKE) && existsSync(AZURE) ? false : "../shared/data/traces is absent";

/** A hand-built trace: rows of [arrival ms, prompt tokens, output tokens, block ids?]. */
export function tinyTrace(rows: readonly (readonly [number, number, number, (readonly number[])?])[], blockTokens = 512): Trace {
  const n = rows.length;
  const blockOffsets = new Int32Array(n + 1);
  const ids: number[] = [];
  rows.forEach((r, i) => {
    ids.push(...(r[3] ?? []));
    blockOffsets[i + 1] = ids.length;
  });
  return {
    name: "tiny",
    count: n,
    arrivalMs: Float64Array.from(rows.map((r) => r[0])),
    inputTokens: Int32Array.from(rows.map((r) => r[1])),
    outputTokens: Int32Array.from(rows.map((r) => r[2])),
    blockOffsets,
    blockIds: Int32Array.from(ids),
    blockTokens: ids.length > 0 ? blockTokens : 0,
  };
}

/** A fleet of `count` replicas of one kind (8B on H100 by default). */
export function fleetOf(count: number, over: Record<string, unknown> = {}, top: Record<string, unknown> = {}): SimFleet {
  return resolveSimFleet({ islands: [{ name: "pool", hardware: "h100", model: "llama-3.1-8b", count, ...over }], ...top });
}

/** Steps a replica until idle, from `now`; returns the end time. */
export function drain(r: ReplicaModel, now = 0): number {
  for (let ms = r.beginStep(now); ms >= 0; ms = r.beginStep(now)) {
    now += ms;
    r.endStep(now);
  }
  return now;
}

/** Equal to within floating-point rounding. */
export const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
