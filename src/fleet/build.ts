import { isAbsolute, resolve } from "node:path";
import type { Engine } from "../engines/engine.js";
import { LocalEngine } from "../engines/local.js";
import { OpenAIEngine } from "../engines/openai.js";
import { compileCascade, type Cascade } from "../scheduler/cascade.js";
import { ConfigError, type FleetConfig, type ReplicaConfig } from "./config.js";
import { Fleet, type Replica } from "./fleet.js";
import { ReplicaHealth } from "../scheduler/health.js";
import { wallClock, type Clock } from "../core/clock.js";

/** Turns a validated fleet file into engines; nothing is started yet. */
export function buildFleet(config: FleetConfig, opts: { baseDir: string; env: NodeJS.ProcessEnv; clock?: Clock }): Fleet {
  const clock = opts.clock ?? wallClock;
  const breaker = { failureThreshold: config.server.eject_after_failures, cooldownMs: config.server.eject_cooldown_ms };
  return new Fleet(
    config.models.map((m) => {
      const replicas: Replica[] = [];
      for (const rc of m.replicas) {
        for (let i = 0; i < rc.count; i++) {
          replicas.push({ id: `${m.name}/${replicas.length}`, model: m.name, engine: engineFor(rc, m.name, opts), health: new ReplicaHealth(clock, breaker) });
        }
      }
      return { name: m.name, replicas };
    }),
  );
}

function engineFor(rc: ReplicaConfig, modelName: string, opts: { baseDir: string; env: NodeJS.ProcessEnv }): Engine {
  if (rc.engine === "local") {
    return new LocalEngine({
      modelPath: isAbsolute(rc.path) ? rc.path : resolve(opts.baseDir, rc.path),
      parallel: rc.parallel,
      maxQueue: rc.max_queue,
      ...(rc.context === undefined ? {} : { contextSize: rc.context }),
      ...(rc.threads === undefined ? {} : { threads: rc.threads }),
    });
  }
  let apiKey: string | undefined;
  if (rc.api_key_env !== undefined) {
    apiKey = opts.env[rc.api_key_env];
    if (apiKey === undefined) throw new ConfigError(`model ${modelName}: environment variable ${rc.api_key_env} (api_key_env) is not set`);
  }
  return new OpenAIEngine({
    url: rc.url,
    upstreamModel: rc.upstream_model ?? modelName,
    parallel: rc.parallel,
    maxQueue: rc.max_queue,
    requestTimeoutMs: rc.timeout_ms,
    probeIntervalMs: rc.probe_interval_ms,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(rc.context === undefined ? {} : { contextSize: rc.context }),
  });
}

/** The fleet file's cascades by alias, validated and compiled once. */
export function buildCascades(config: FleetConfig): ReadonlyMap<string, Cascade> {
  return new Map(
    config.cascades.map((c) => [
      c.name,
      compileCascade(
        {
          light: c.light,
          heavy: c.heavy,
          escalate: {
            ...(c.escalate.reasoning_effort === undefined ? {} : { reasoningEffort: c.escalate.reasoning_effort }),
            ...(c.escalate.min_prompt_tokens === undefined ? {} : { minPromptTokens: c.escalate.min_prompt_tokens }),
            ...(c.escalate.keywords === undefined ? {} : { keywords: c.escalate.keywords }),
            ...(c.escalate.min_mean_logprob === undefined ? {} : { minMeanLogprob: c.escalate.min_mean_logprob }),
          },
        },
        c.name,
      ),
    ]),
  );
}
