import { z } from "zod";
import { AUTOSCALE_DEFAULTS } from "../scheduler/autoscale.js";

/**
 * The fleet file: which models the gateway serves and the replicas behind
 * each. Parsed strictly, so a typo in a key is an error that names the key
 * rather than a silently ignored setting.
 */

/** The name of a model or cascade: what clients send as `model`, and the prefix of replica ids. */
export const modelName = z.string().min(1).regex(/^[\w.:/-]+$/, "use letters, digits and . _ : / - only");

const count = z.number().int().min(1).max(1024).default(1);
/** An engine profile (`flotilla calibrate --out`), relative to the fleet file: prices and the twin's timing predictions use it. Needs `hardware`. */
const profile = z.string().min(1).optional();

const localReplica = z
  .object({
    engine: z.literal("local"),
    /** A GGUF file; relative paths resolve against the fleet file's folder. */
    path: z.string().min(1),
    parallel: z.number().int().min(1).max(256).default(4),
    /**
     * Sequences held clean beside the `parallel` running ones, so a request joining a busy replica starts at once
     * (engines/local.ts #renew); each costs `context` tokens of KV cache. Default: as many as `parallel`.
     */
    spare_sequences: z.number().int().min(0).max(256).optional(),
    context: z.number().int().min(16).optional(),
    max_queue: z.number().int().min(0).default(64),
    threads: z.number().int().min(1).optional(),
    /** Accelerator (hardware catalog id, e.g. h100) the replica runs on: prices its requests' energy and cost. */
    hardware: z.string().min(1).optional(),
    /** Weight precision for the hardware model (bf16, fp8, fp4, q4_k_m, ...); default from the GGUF file, else bf16. */
    precision: z.string().min(1).optional(),
    /** Devices per replica (tensor parallelism), for the hardware model; default 1. */
    tp: z.number().int().min(1).max(1024).optional(),
    /** Model catalog id for the hardware model; default: the GGUF file's shape (local), else the model's name. */
    spec: z.string().min(1).optional(),
    profile,
    count,
  })
  .strict();

const openaiReplica = z
  .object({
    engine: z.literal("openai"),
    url: z.string().url(),
    /** The name the upstream server knows the model by; defaults to the model's name. */
    upstream_model: z.string().min(1).optional(),
    /** Name of the environment variable holding the upstream API key (keys stay out of files). */
    api_key_env: z.string().min(1).optional(),
    parallel: z.number().int().min(1).max(4096).default(64),
    context: z.number().int().min(16).optional(),
    max_queue: z.number().int().min(0).default(256),
    timeout_ms: z.number().int().min(100).default(60_000),
    /** How often /health is asked whether the server is ready. */
    probe_interval_ms: z.number().int().min(50).default(5_000),
    /** How often the server's /metrics is read for the load other clients put on it (docs/routing.md "Engine-reported load"); 0: never. */
    metrics_interval_ms: z.number().int().max(3_600_000).refine((ms) => ms === 0 || ms >= 100, "must be 0 (off) or at least 100 ms").default(1_000),
    /** Name of the environment variable holding the bearer token for /metrics, where it is not the API key's (a Flotilla upstream's admin token). */
    metrics_token_env: z.string().min(1).optional(),
    /** Accelerator (hardware catalog id, e.g. h100) the replica runs on: prices its requests' energy and cost. */
    hardware: z.string().min(1).optional(),
    /** Weight precision for the hardware model (bf16, fp8, fp4, q4_k_m, ...); default from the GGUF file, else bf16. */
    precision: z.string().min(1).optional(),
    /** Devices per replica (tensor parallelism), for the hardware model; default 1. */
    tp: z.number().int().min(1).max(1024).optional(),
    /** Model catalog id for the hardware model; default: the GGUF file's shape (local), else the model's name. */
    spec: z.string().min(1).optional(),
    profile,
    count,
  })
  .strict();

export const replicaConfig = z.discriminatedUnion("engine", [localReplica, openaiReplica]);

/**
 * What every discovered replica of a model is: an `openai` entry without
 * `url` (discovery supplies one per address) or `count` (one per address).
 */
const replicaTemplate = openaiReplica.omit({ url: true, count: true }).extend({ engine: z.literal("openai").default("openai") });

/** How long a replica whose endpoint went away lets its running requests finish before they move on, ms. */
const removeWaitMs = z.number().int().min(0).max(3_600_000).default(30_000);

/** Replicas from the addresses a DNS name resolves to, re-resolved on an interval. */
const dnsDiscovery = z
  .object({
    kind: z.literal("dns"),
    name: z.string({ error: "required: the DNS name whose addresses are the replicas" }).regex(/^[\w.-]+$/, "a DNS name: letters, digits and . _ - only"),
    /** The engines' port; with `srv: true` each SRV record gives its own. */
    port: z.number().int().min(1).max(65_535).optional(),
    /** Read SRV records (target and port) instead of A/AAAA records of `name`. */
    srv: z.boolean().default(false),
    interval_ms: z.number().int().min(100).default(5_000),
    remove_wait_ms: removeWaitMs,
    replica: replicaTemplate.prefault({}),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (d.srv && d.port !== undefined) ctx.addIssue({ code: "custom", path: ["port"], message: "srv: true takes each replica's port from its SRV record; drop port" });
    if (!d.srv && d.port === undefined) ctx.addIssue({ code: "custom", path: ["port"], message: "required: the port the engines listen on (or srv: true to read ports from SRV records)" });
  });

/** Replicas from the ready endpoints of Kubernetes EndpointSlices, watched. */
const kubernetesDiscovery = z
  .object({
    kind: z.literal("kubernetes"),
    /** The Service whose EndpointSlices to watch (label kubernetes.io/service-name); or `selector`. */
    service: z.string().min(1).optional(),
    /** A label selector for the EndpointSlices, e.g. "app=vllm,tier=gpu"; or `service`. */
    selector: z.string().min(1).optional(),
    /** Default: the kubeconfig context's namespace (in a pod, the pod's own), else "default". */
    namespace: z.string().min(1).optional(),
    /** The slices' port to use, by name; required when a slice lists more than one. */
    port_name: z.string().min(1).optional(),
    /** A kubeconfig file (relative to the fleet file); default: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config. */
    kubeconfig: z.string().min(1).optional(),
    remove_wait_ms: removeWaitMs,
    replica: replicaTemplate.prefault({}),
  })
  .strict()
  .superRefine((k, ctx) => {
    if ((k.service === undefined) === (k.selector === undefined)) {
      ctx.addIssue({ code: "custom", path: ["service"], message: "required: service (the Service whose EndpointSlices to watch) or selector (a label selector), one of the two" });
    }
  });

export const discoveryConfig = z.discriminatedUnion("kind", [dnsDiscovery, kubernetesDiscovery]);

/**
 * The replica count the autoscaler wants for a model's pool (scheduler/autoscale.ts,
 * as in the twin), exported as flotilla_desired_replicas and handed to the actuator.
 */
export const autoscaleConfig = z
  .object({
    min: z.number().int().min(0).max(100_000).default(1),
    max: z.number().int().min(1).max(100_000),
    mode: z.enum(["reactive", "predictive"]).default(AUTOSCALE_DEFAULTS.mode),
    target_utilisation: z.number().gt(0).max(1).default(AUTOSCALE_DEFAULTS.targetUtilisation),
    /** Requests/s one replica serves within the SLO (e.g. from `flotilla estimate` or `flotilla plan`): predictive mode's capacity. */
    replica_rps: z.number().gt(0).optional(),
    provisioning_ms: z.number().int().min(0).max(86_400_000).default(AUTOSCALE_DEFAULTS.provisioningMs),
    cooldown_ms: z.number().int().min(0).max(86_400_000).default(AUTOSCALE_DEFAULTS.cooldownMs),
    window_ms: z.number().int().min(10_000).max(86_400_000).default(AUTOSCALE_DEFAULTS.windowMs),
    interval_ms: z.number().int().min(100).max(3_600_000).default(15_000),
    /** Run with the new count when it changes: argv, no shell; FLOTILLA_MODEL, FLOTILLA_DESIRED_REPLICAS and FLOTILLA_CURRENT_REPLICAS in its environment. */
    command: z.array(z.string().min(1)).min(1).optional(),
    /** How long the command may run before it is killed and counted failed. */
    command_timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
    /** Or: set the replicas of a Deployment or StatefulSet through its scale subresource (gateway/kubernetes-scale.ts). */
    kubernetes: z
      .object({
        kind: z.enum(["Deployment", "StatefulSet"]).default("Deployment"),
        name: z.string().min(1),
        /** Default: the kubeconfig context's namespace (in a pod, the pod's own), else "default". */
        namespace: z.string().min(1).optional(),
        /** A kubeconfig file (relative to the fleet file); default: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config. */
        kubeconfig: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.command !== undefined && a.kubernetes !== undefined) ctx.addIssue({ code: "custom", path: ["kubernetes"], message: "give one actuator: command or kubernetes, not both" });
    if (a.min > a.max) ctx.addIssue({ code: "custom", path: ["min"], message: `min ${a.min} is above max ${a.max}` });
    if (a.mode === "predictive" && a.replica_rps === undefined) {
      ctx.addIssue({ code: "custom", path: ["replica_rps"], message: "required with mode: predictive: the requests/s one replica serves within the SLO (flotilla estimate's tokens/s over the output length)" });
    }
  });

export const modelConfig = z
  .object({
    name: modelName,
    replicas: z.array(replicaConfig).default([]),
    /** Where more replicas come from while serving: DNS or Kubernetes EndpointSlices (gateway/discovery/). */
    discovery: discoveryConfig.optional(),
    autoscale: autoscaleConfig.optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.replicas.length === 0 && m.discovery === undefined) {
      ctx.addIssue({ code: "custom", path: ["replicas"], message: "a model needs replicas, a discovery section, or both" });
    }
  });

/** A model alias served by a light model first, and a heavy one when the request looks hard. */
export const cascadeConfig = z
  .object({
    name: modelName,
    light: z.string().min(1),
    heavy: z.string().min(1),
    escalate: z
      .object({
        /** Reasoning efforts (OpenAI's reasoning_effort) that go straight to the heavy model. */
        reasoning_effort: z.array(z.string().min(1)).optional(),
        /** Prompts at least this many tokens long go to the heavy model. */
        min_prompt_tokens: z.number().int().min(1).optional(),
        /** Words or phrases in the prompt that send it to the heavy model (case-insensitive, whole words). */
        keywords: z.array(z.string().trim().min(1)).optional(),
        /** A light answer whose mean token log-probability is below this is redone by the heavy model (e.g. -1.5). */
        min_mean_logprob: z.number().max(0).optional(),
      })
      .strict()
      .default({}),
  })
  .strict();

export const fleetConfig = z
  .object({
    server: z
      .object({
        host: z.string().min(1).optional(),
        port: z.number().int().min(0).max(65535).optional(),
        /** A policy name, or a weighted mix checked by scheduler/policyFromConfig. */
        policy: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
        body_limit_bytes: z.number().int().min(1024).optional(),
        /** Longest a client may take to send a request's headers and body; then 408 and the socket is freed. */
        body_timeout_ms: z.number().int().min(100).max(3_600_000).default(30_000),
        /**
         * Requests that may wait for capacity per model (every replica's slots busy) before 429 + Retry-After;
         * default: the sum of the model's replicas' max_queue.
         */
        max_queued: z.number().int().min(0).optional(),
        /** Of those, how many one tenant may have waiting (default: no limit of its own). */
        max_queued_per_tenant: z.number().int().min(1).optional(),
        /** The time-to-first-token objective cost-aware routing holds replicas to (default 2,000 ms). */
        ttft_slo_ms: z.number().int().min(1).optional(),
        /** Longest a request may run before it is cancelled (a client may ask for less). */
        request_timeout_ms: z.number().int().min(100).default(600_000),
        /** With no replica ready, how long a request waits for one before 503. */
        ready_wait_ms: z.number().int().min(0).max(60_000).default(1_000),
        /** Consecutive failed requests that take a replica out of rotation. */
        eject_after_failures: z.number().int().min(1).default(3),
        /** A first token slower than this counts as a failure for the breaker (off when absent). */
        eject_slow_first_token_ms: z.number().int().min(1).optional(),
        /**
         * An attempt with no first token after 3x the recent p90 (100 ms to 2 s, never past
         * eject_slow_first_token_ms) runs again on a replica with a free slot; the first to speak keeps the answer.
         */
        hedge_first_token: z.boolean().default(true),
        /** How long an ejected replica rests before one trial request. */
        eject_cooldown_ms: z.number().int().min(0).default(5_000),
        /** On shutdown, how long in-flight requests get to finish. */
        shutdown_grace_ms: z.number().int().min(0).default(30_000),
        /** Bearer token for /admin routes, /metrics and /ui; without one they answer direct loopback clients only. */
        admin_token_env: z.string().min(1).optional(),
        /** /metrics, /ui and its data routes answer anyone (a Prometheus on another host with no token). Default false. */
        metrics_public: z.boolean().default(false),
        /**
         * Tenants, keys and the usage ledger: "sqlite:PATH" (relative to the fleet file), "postgres://…",
         * or "none". Default: SQLite in $FLOTILLA_HOME (or ~/.cache/flotilla).
         */
        store: z.string().min(1).optional(),
        /** Name of the environment variable holding the store URL (keeps a database password out of the file). */
        store_env: z.string().min(1).optional(),
        /**
         * true: an API key is required on /v1 routes even before one exists; false: never, even once keys exist.
         * Default: when the server binds a non-loopback address or once a key has been created.
         */
        require_keys: z.boolean().optional(),
        /**
         * A gateway process sharing the store whose heartbeat is older than this is dead: another marks its running
         * requests 'interrupted'. It heartbeats every sixth of this. Default 30,000.
         */
        instance_lease_ms: z.number().int().min(600).max(3_600_000).optional(),
        /**
         * SQLite: ledger writes (admissions, settlements) that arrive within this many ms commit together, in one
         * transaction; none is acknowledged before its commit. Default 0: those of one event-loop turn.
         */
        ledger_commit_ms: z.number().int().min(0).max(10_000).optional(),
        /**
         * With a Postgres store: how often this gateway tells the others on the store where it sent each prompt and
         * how many requests it has on each replica (gateway/peer-sync.ts), ms; 0 turns it off. Default 50, the
         * endpoint picker's metrics refresh in the Gateway API Inference Extension (DefaultRefreshMetricsInterval).
         */
        peer_sync_ms: z.number().int().min(0).max(60_000).optional(),
        /** The share taken off the price of a Batch API request, 0-1. Default 0.5 (OpenAI's batch discount). */
        batch_discount: z.number().min(0).max(1).optional(),
        /** Slots the Batch API's runner leaves free for interactive requests. Default 1. */
        batch_headroom_slots: z.number().int().min(0).max(100_000).optional(),
      })
      .strict()
      .prefault({}),
    models: z.array(modelConfig).min(1),
    cascades: z.array(cascadeConfig).default([]),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.models.forEach((m, i) => {
      if (seen.has(m.name)) ctx.addIssue({ code: "custom", path: ["models", i, "name"], message: `model "${m.name}" is listed twice` });
      seen.add(m.name);
    });
    const models = [...seen].join(", ");
    cfg.cascades.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: "custom", path: ["cascades", i, "name"], message: `"${c.name}" is already a model or cascade name` });
      seen.add(c.name);
      for (const leg of ["light", "heavy"] as const) {
        if (!cfg.models.some((m) => m.name === c[leg])) ctx.addIssue({ code: "custom", path: ["cascades", i, leg], message: `"${c[leg]}" is not a model in this file (models: ${models})` });
      }
    });
  });

export type FleetConfig = z.infer<typeof fleetConfig>;
export type ModelConfig = z.infer<typeof modelConfig>;
export type ReplicaConfig = z.infer<typeof replicaConfig>;
export type DiscoveryConfig = z.infer<typeof discoveryConfig>;
export type DnsDiscoveryConfig = z.infer<typeof dnsDiscovery>;
export type KubernetesDiscoveryConfig = z.infer<typeof kubernetesDiscovery>;
export type ReplicaTemplate = z.infer<typeof replicaTemplate>;
export type CascadeFileConfig = z.infer<typeof cascadeConfig>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Validates a parsed fleet file; errors list every problem with its path. */
export function parseFleetConfig(raw: unknown, source = "fleet file"): FleetConfig {
  const result = fleetConfig.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  ${issue.path.length > 0 ? issue.path.join(".") : "(top level)"}: ${issue.message}`);
  throw new ConfigError(`${source} is not valid:\n${lines.join("\n")}`);
}
export type AutoscaleConfig = z.infer<typeof autoscaleConfig>;
