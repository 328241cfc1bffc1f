/**
 * An engine profile on disk: the parameters `flotilla calibrate` fitted, which
 * `estimate --profile`, `sim --profile` and a fleet file's `profile:` run the
 * hardware model with. JSON, validated strictly (a misspelt key is an error
 * naming it). Pure: text in, text out; callers read and write the file.
 *
 *   {
 *     "kind": "flotilla-engine-profile",
 *     "version": 1,
 *     "name": "my-vllm",
 *     "params": { "computeEfficiency": 0.87, "sequenceOverheadUs": 285, ... },
 *     "overheadScale": { "a100": 1.17, "h100": 0.86 },
 *     "fit": { ... how it was fitted; informative, not read back ... }
 *   }
 *
 * `params` may name only some parameters (a hand-written profile): the rest
 * are the built-in FITTED_PARAMS.
 *
 * Kept out of hardware/index.ts: zod costs the CLI's start-up, and only the
 * commands that read a profile load this module.
 */
import { z } from "zod";
import { findHardware } from "./accelerators.js";
import { UnknownNameError } from "./errors.js";
import type { EngineParams, PerfParams } from "./params.js";
import { FITTED_PARAMS } from "./params.js";

export const PROFILE_KIND = "flotilla-engine-profile";

const fraction = z.number().gt(0).max(1);
const nonNegative = z.number().min(0).max(1e6);

const paramsSchema = z
  .object({
    computeEfficiency: fraction,
    bandwidthEfficiency: fraction,
    stepOverheadMs: nonNegative,
    layerOverheadUs: nonNegative,
    allReduceLatencyUs: nonNegative,
    allReduceStepUs: nonNegative,
    allReduceBandwidthEfficiency: fraction,
    sequenceOverheadUs: nonNegative,
    prefillOverheadMs: nonNegative,
    gemmPadTokens: nonNegative,
    fp4Efficiency: fraction,
  } satisfies Record<keyof PerfParams, z.ZodType>)
  .partial()
  .strict();

const profileSchema = z
  .object({
    kind: z.literal(PROFILE_KIND),
    version: z.literal(1),
    name: z.string().min(1).optional(),
    params: paramsSchema,
    overheadScale: z.record(z.string(), z.number().gt(0).max(100)).default({}),
    fit: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export interface EngineProfile {
  readonly name?: string;
  readonly engine: EngineParams;
  /** How the profile was fitted (written by calibrate, not read back). */
  readonly fit?: Readonly<Record<string, unknown>>;
}

export class ProfileFileError extends Error {
  override readonly name = "ProfileFileError";
}

function issuesError(source: string, issues: readonly { path: readonly PropertyKey[]; message: string }[]): ProfileFileError {
  const lines = issues.map((i) => `  ${i.path.length > 0 ? i.path.map(String).join(".") : "(top level)"}: ${i.message}`);
  return new ProfileFileError(`${source} is not a valid engine profile:\n${lines.join("\n")}`);
}

/** Overhead factors keyed by catalog id (aliases resolved); an unknown device is an error, as it would never apply. */
function overheadScaleById(raw: Readonly<Record<string, number>>, source: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, factor] of Object.entries(raw)) {
    try {
      out[findHardware(name).id] = factor;
    } catch (err) {
      if (err instanceof UnknownNameError) throw issuesError(source, [{ path: ["overheadScale", name], message: err.message }]);
      throw err;
    }
  }
  return out;
}

/** Parses and validates profile JSON text; errors name the key at fault. */
export function parseEngineProfile(text: string, source = "profile"): EngineProfile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ProfileFileError(`${source}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = profileSchema.safeParse(raw);
  if (!parsed.success) throw issuesError(source, parsed.error.issues);
  const p = parsed.data;
  const params = { ...FITTED_PARAMS, ...p.params } as PerfParams;
  return {
    ...(p.name !== undefined ? { name: p.name } : {}),
    engine: { params, overheadScale: overheadScaleById(p.overheadScale, source) },
    ...(p.fit !== undefined ? { fit: p.fit } : {}),
  };
}

/** Six significant digits: enough to reproduce the fit's predictions, short enough to read. */
function round(x: number): number {
  return Number(x.toPrecision(6));
}

/** The profile as JSON text (every parameter written out, so the file says what it runs with). */
export function serializeEngineProfile(profile: EngineProfile): string {
  const params = Object.fromEntries(Object.entries(profile.engine.params).map(([k, v]) => [k, round(v as number)]));
  const overheadScale = Object.fromEntries(Object.entries(profile.engine.overheadScale).map(([k, v]) => [k, round(v)]));
  const doc = {
    kind: PROFILE_KIND,
    version: 1,
    ...(profile.name !== undefined ? { name: profile.name } : {}),
    params,
    overheadScale,
    ...(profile.fit !== undefined ? { fit: profile.fit } : {}),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
