/**
 * A fleet file from disk: read, parsed as YAML, checked (every problem named
 * with its path), and built into engines that are not started yet.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { buildFleet } from "./build.js";
import { ConfigError, parseFleetConfig, type FleetConfig } from "./config.js";
import type { Fleet } from "./fleet.js";

/** Reads and checks a fleet file; its folder is where its relative paths resolve. Throws ConfigError. */
/** The fleet file at `path`, parsed; `text` is what was read, so a follower of the file knows the version it started from. */
export async function readFleetFile(path: string): Promise<{ config: FleetConfig; baseDir: string; text: string }> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read fleet file ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`fleet file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return { config: parseFleetConfig(raw, path), baseDir: dirname(path), text };
}

/** A fleet file as a Fleet (call `fleet.start()` to start its engines), with the config it came from. */
export async function loadFleet(path: string, env: NodeJS.ProcessEnv = process.env): Promise<{ config: FleetConfig; fleet: Fleet }> {
  const { config, baseDir } = await readFleetFile(resolve(path));
  return { config, fleet: buildFleet(config, { baseDir, env }) };
}
