import { isAbsolute, resolve } from "node:path";
import type { Engine } from "../engines/engine.js";
import { LocalEngine } from "../engines/local.js";
import { OpenAIEngine } from "../engines/openai.js";
import { compileCascade, type Cascade } from "../scheduler/cascade.js";
import { ConfigError, type FleetConfig, type ReplicaConfig } from "./config.js";
import { Fleet, type Replica } from "./fleet.js";
import { ReplicaHealth, type BreakerOptions } from "../scheduler/health.js";
import { wallClock, type Clock } from "../core/clock.js";

export interface BuildOptions {
  readonly baseDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly clock?: Clock;
}

/** Turns a validated fleet file into engines; nothing is started yet. */
export function buildFleet(config: FleetConfig, opts: BuildOptions): Fleet {
  const breaker = breakerOf(config.server);
  return new Fleet(
    config.models.map((m) => {
      const replicas: Replica[] = [];
      for (const rc of m.replicas) {
        for (let i = 0; i < rc.count; i++) replicas.push(buildReplica(rc, m.name, `${m.name}/${replicas.length}`, breaker, opts));
      }
      return { name: m.name, replicas };
    }),
  );
}

/** The circuit breaker's settings from the fleet file's server section. */
export function breakerOf(server: FleetConfig["server"]): BreakerOptions {
  return { failureThreshold: server.eject_after_failures, cooldownMs: server.eject_cooldown_ms };
}

/** One replica of a fleet-file entry (its `count` aside), with its own engine and breaker; not started. */
export function buildReplica(rc: ReplicaConfig, model: string, id: string, breaker: BreakerOptions, opts: BuildOptions): Replica {
  return { id, model, engine: engineFor(rc, model, id, opts), health: new ReplicaHealth(opts.clock ?? wallClock, breaker), config: rc };
}

function engineFor(rc: ReplicaConfig, modelName: string, id: string, opts: { baseDir: string; env: NodeJS.ProcessEnv }): Engine {
  if (rc.engine === "local") {
    return new LocalEngine({
      modelPath: isAbsolute(rc.path) ? rc.path : resolve(opts.baseDir, rc.path),
      parallel: rc.parallel,
      maxQueue: rc.max_queue,
      ...(rc.context === undefined ? {} : { contextSize: rc.context }),
      ...(rc.threads === undefined ? {} : { threads: rc.threads }),
      ...(rc.spare_sequences === undefined ? {} : { spareSequences: rc.spare_sequences }),
    });
  }
  const apiKey = secretOf(rc.api_key_env, "api_key_env", modelName, opts.env);
  const metricsToken = secretOf(rc.metrics_token_env, "metrics_token_env", modelName, opts.env);
  return new OpenAIEngine({
    url: rc.url,
    name: id,
    metricsIntervalMs: rc.metrics_interval_ms,
    ...(metricsToken === undefined ? {} : { metricsToken }),
    upstreamModel: rc.upstream_model ?? modelName,
    parallel: rc.parallel,
    maxQueue: rc.max_queue,
    requestTimeoutMs: rc.timeout_ms,
    probeIntervalMs: rc.probe_interval_ms,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(rc.context === undefined ? {} : { contextSize: rc.context }),
  });
}

/** A secret named by an `*_env` field: keys stay out of files, and a variable named but unset is an error, not an anonymous request. */
function secretOf(envName: string | undefined, field: string, modelName: string, env: NodeJS.ProcessEnv): string | undefined {
  if (envName === undefined) return undefined;
  const value = env[envName];
  if (value === undefined) throw new ConfigError(`model ${modelName}: environment variable ${envName} (${field}) is not set`);
  return value;
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
