/**
 * A replica's `profile:` (an engine profile from `flotilla calibrate`): the
 * parameters its hardware model runs with, so its prices and the twin's
 * predictions of its timings (flotilla_twin_error_ratio) are those of the
 * engine it really runs, not the built-in fit.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { ConfigError, type ReplicaConfig } from "../fleet/config.js";
import { paramsOn, type HardwareSpec, type PerfParams } from "../hardware/index.js";
import { parseEngineProfile } from "../hardware/profile-file.js";

/**
 * The parameters of `rc.profile` on `hardware`; undefined without one. A
 * profile fitted on other hardware (its `fit.hardware` list) is refused,
 * naming both: its overheads describe those devices, not this one.
 */
export async function replicaParams(rc: ReplicaConfig, hardware: HardwareSpec | undefined, path: string, baseDir: string): Promise<PerfParams | undefined> {
  if (rc.profile === undefined) return undefined;
  if (hardware === undefined) throw new ConfigError(`${path}.profile: a profile describes an engine on its hardware; set ${path}.hardware too`);
  const file = isAbsolute(rc.profile) ? rc.profile : resolve(baseDir, rc.profile);
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`${path}.profile: cannot read ${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  let profile;
  try {
    profile = parseEngineProfile(text, file);
  } catch (err) {
    throw new ConfigError(`${path}.profile: ${(err as Error).message}`);
  }
  const fitted = profile.fit?.["hardware"];
  if (Array.isArray(fitted) && fitted.length > 0 && !fitted.includes(hardware.id)) {
    throw new ConfigError(`${path}.profile: ${rc.profile} was fitted on ${fitted.join(", ")}, not on ${hardware.id} (this replica's hardware); calibrate one from ${hardware.id} measurements, or leave profile out`);
  }
  return paramsOn(profile.engine, hardware.id);
}
