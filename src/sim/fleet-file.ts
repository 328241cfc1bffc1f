/**
 * The simulator's fleet file: islands of identical replicas (hardware, count,
 * model, precision, tensor-parallel degree), the router, SLOs, failures.
 * Validated strictly (a misspelt key is an error naming it), then resolved
 * against the hardware catalog into the profiles the replicas run on.
 *
 *   islands:
 *     - name: h100-pool
 *       hardware: h100
 *       count: 16
 *       model: llama-3.1-70b
 *       precision: fp8
 *       tp: 2
 *       host_kv_gb: 256        # host-memory KV tier per GPU (0: none)
 *       profile: profiles/my-vllm.json   # engine profile (`flotilla calibrate`), relative to this file
 *   router: { policy: least-loaded }
 *   kv_transfer: { link: rdma-400g }   # prefill -> decode KV link, for islands with role: prefill / decode
 *   slo: { ttft_ms: 2000, tpot_ms: 100 }
 *   failures: { mtbf_s: 3600, repair_s: 600 }
 */
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z } from "zod";
import {
  DEFAULT_PUE,
  DEFAULT_USD_PER_KWH,
  FITTED_PARAMS,
  UnknownNameError,
  deviceUsdPerHour,
  findHardware,
  findModel,
  findPrecision,
  makeEnergyProfile,
  makePerfProfile,
  paramsOn,
  rooflineProfile,
  smallestFittingTp,
} from "../hardware/index.js";
import type { EnergyProfile, EngineParams, HardwareSpec, KvFormat, ModelSpec, PerfParams, PerfProfile, PrecisionSpec } from "../hardware/index.js";
import { KV_LINK_IDS, type KvLinkId } from "../hardware/links.js";
import type { Policy } from "../scheduler/pipeline.js";
import { policies } from "../scheduler/policies.js";
import { DEFAULT_SAMPLE_SIZE } from "../scheduler/sample.js";
import { AUTOSCALE_DEFAULTS, type AutoscaleSettings } from "../scheduler/autoscale.js";
import { DEFAULT_HOST_LINK_GBS } from "./replica.js";

/**
 * Host memory per GPU for the KV tier, GB, where the island gives none. A DGX
 * H100 has 2 TB of system memory for its 8 GPUs (NVIDIA DGX H100 datasheet):
 * 256 GB a GPU. Assumption: all of that share holds KV; the OS and the engine
 * take some of it in practice, so this is the generous end.
 */
export const DEFAULT_HOST_KV_GB = 256;

const island = z
  .object({
    name: z.string().min(1).regex(/^[\w.:-]+$/, "use letters, digits and . _ : - only").optional(),
    hardware: z.string().min(1),
    /** Replicas in the island. */
    count: z.number().int().min(1).max(1_000_000),
    model: z.string().min(1),
    precision: z.string().min(1).default("bf16"),
    /** Devices per replica; default: the smallest power of two that holds the weights and a useful KV cache. */
    tp: z.number().int().min(1).max(1024).optional(),
    kv_precision: z.enum(["bf16", "fp8"]).optional(),
    expert_parallel: z.boolean().optional(),
    kv_memory_fraction: z.number().gt(0).max(1).optional(),
    /** Sequences a replica runs at once (vLLM max_num_seqs). */
    max_batch: z.number().int().min(1).max(65_536).default(256),
    /** Requests a replica queues before the router counts it full. */
    max_queue: z.number().int().min(0).default(1024),
    pricing: z.enum(["rent", "purchase"]).default("rent"),
    /** Host memory (CPU DRAM) per device for the KV tier, GB (1e9 bytes); 0 for none. */
    host_kv_gb: z.number().min(0).max(1_000_000).default(DEFAULT_HOST_KV_GB),
    /** Host-to-device bandwidth per device, GB/s (1e9 bytes/s, one way). */
    host_link_gb_s: z.number().gt(0).max(100_000).default(DEFAULT_HOST_LINK_GBS),
    /** An engine profile (`flotilla calibrate --out`), as a path relative to the fleet file; default the built-in parameters. */
    profile: z.string().min(1).optional(),
    /** Prefill/decode disaggregation: what the island's replicas do (default both: colocated). */
    role: z.enum(["prefill", "decode", "both"]).default("both"),
    /** The autoscaler sets the island's replica count between min and max; `count` is the count at the start. */
    autoscale: z
      .object({
        min: z.number().int().min(0).max(1_000_000).default(1),
        max: z.number().int().min(1).max(1_000_000),
        mode: z.enum(["reactive", "predictive"]).default(AUTOSCALE_DEFAULTS.mode),
        target_utilisation: z.number().gt(0).max(1).default(AUTOSCALE_DEFAULTS.targetUtilisation),
        provisioning_s: z.number().min(0).max(86_400).default(AUTOSCALE_DEFAULTS.provisioningMs / 1000),
        cooldown_s: z.number().min(0).max(86_400).default(AUTOSCALE_DEFAULTS.cooldownMs / 1000),
        window_s: z.number().min(10).max(86_400).default(AUTOSCALE_DEFAULTS.windowMs / 1000),
        /** How often it decides. */
        interval_s: z.number().gt(0).max(3600).default(30),
        /** A removed replica's running requests get this long to finish before they resume elsewhere. */
        remove_wait_s: z.number().min(0).max(3600).default(30),
      })
      .strict()
      .optional(),
  })
  .strict();

/** An autoscaled island: its replicas (as many as `max`) beyond `initial` start outside the fleet. */
export interface IslandAutoscale {
  readonly settings: AutoscaleSettings;
  readonly intervalMs: number;
  readonly removeWaitMs: number;
  readonly initial: number;
}

/** The island roles, as the simulator numbers them. */
export type IslandRole = "prefill" | "decode" | "both";

const failureEvent = z
  .object({
    /** Replica index in fleet order (islands in file order), or its name ("h100-pool/3"). */
    replica: z.union([z.number().int().min(0), z.string().min(1)]),
    at_s: z.number().min(0),
    down_s: z.number().gt(0),
  })
  .strict();

const membershipChange = z
  .object({
    /** Replica index in fleet order, or its name ("h100-pool/3"). */
    replica: z.union([z.number().int().min(0), z.string().min(1)]),
    at_s: z.number().min(0),
    /** add: the replica joins then (absent, and unpaid, before); remove: it takes no new request from then on, and leaves. */
    change: z.enum(["add", "remove"]),
    /** remove: how long its running requests get to finish before they resume elsewhere (the gateway's remove_wait_ms). */
    remove_wait_s: z.number().min(0).max(3600).default(30),
  })
  .strict();

export const simFleetSchema = z
  .object({
    islands: z.array(island).min(1),
    router: z
      .object({
        policy: z.string().min(1).default("least-loaded"),
        /** Scorer weights by scorer name, overriding the policy's. */
        weights: z.record(z.string(), z.number().min(0)).optional(),
        /** Candidates drawn per decision in fleets larger than this (power of d choices). */
        sample: z.number().int().min(1).max(65_536).default(DEFAULT_SAMPLE_SIZE),
        /** Gateways behind one load balancer, each with its own prefix index and view of load (sim/router-instances.ts). */
        instances: z.number().int().min(1).max(1024).default(1),
        /** How often engines report their load to the gateways, ms of virtual time (0: never). */
        load_report_ms: z.number().min(0).max(3_600_000).default(1_000),
        /** How often the gateways tell each other their placements and in-flight counts, ms of virtual time (0: they share nothing; gateway/peer-sync.ts). */
        peer_sync_ms: z.number().min(0).max(3_600_000).default(0),
      })
      .strict()
      .prefault({}),
    slo: z
      .object({
        ttft_ms: z.number().gt(0).default(2000),
        tpot_ms: z.number().gt(0).default(100),
      })
      .strict()
      .prefault({}),
    /** Replicas joining and leaving while the trace runs: a rolling update, a scale-out, a scale-in. */
    membership: z.array(membershipChange).optional(),
    failures: z
      .object({
        /** Mean time between failures of one replica (exponential). */
        mtbf_s: z.number().gt(0).optional(),
        /** Mean repair time (exponential). */
        repair_s: z.number().gt(0).default(600),
        /** Failures at given times, on top of (or instead of) the random process. */
        schedule: z.array(failureEvent).optional(),
        /** Gone: a displaced request follows the gateway's retry rules (scheduler/retry.ts), so a fleet file that sets it is told so. */
        retry_ms: z.never({ error: "retry_ms is no longer read: a displaced request follows the gateway's retry rules (an attempt budget, backoff, 1 s waiting for a ready replica); remove it" }).optional(),
      })
      .strict()
      .optional(),
    engine: z
      .object({
        /** Tokens per prefix-cache block; must match the trace's hashes (512 for Mooncake). */
        block_tokens: z.number().int().min(1).default(512),
        chunked_prefill: z.boolean().default(true),
        /** Tokens per pass with chunked prefill; default the hardware model's (8192). */
        step_tokens: z.number().int().min(1).optional(),
        pue: z.number().min(1).default(DEFAULT_PUE),
        usd_per_kwh: z.number().min(0).default(DEFAULT_USD_PER_KWH),
      })
      .strict()
      .prefault({}),
    /** The link a request's KV crosses from its prefill replica to its decode replica (disaggregated fleets). */
    kv_transfer: z
      .object({ link: z.enum(KV_LINK_IDS).default("rdma-400g") })
      .strict()
      .prefault({}),
    seed: z.number().int().default(1),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.islands.forEach((isl, i) => {
      const name = isl.name ?? `${isl.hardware}-${i}`;
      if (seen.has(name)) ctx.addIssue({ code: "custom", path: ["islands", i, "name"], message: `island "${name}" is listed twice` });
      seen.add(name);
    });
    checkRoles(cfg.islands, (i, message) => ctx.addIssue({ code: "custom", path: ["islands", i, "role"], message }));
  });

/**
 * A fleet disaggregates when any island is `prefill` or `decode`: it then
 * needs at least one of each, and no `both` island (a request's path would
 * be ambiguous).
 */
function checkRoles(islands: readonly { role: IslandRole; name?: string | undefined; hardware: string }[], issue: (i: number, message: string) => void): void {
  const first = (role: IslandRole): number => islands.findIndex((x) => x.role === role);
  const prefill = first("prefill");
  const decode = first("decode");
  if (prefill < 0 && decode < 0) return;
  const name = (i: number): string => islands[i]!.name ?? `${islands[i]!.hardware}-${i}`;
  if (prefill < 0) issue(decode, `island "${name(decode)}" decodes, but no island prefills: give one island role: prefill (or make every island role: both)`);
  if (decode < 0) issue(prefill, `island "${name(prefill)}" prefills, but no island decodes: give one island role: decode (or make every island role: both)`);
  islands.forEach((x, i) => {
    if (x.role === "both") issue(i, `island "${name(i)}" is role: both in a fleet that disaggregates: make it prefill or decode`);
  });
}

export type SimFleetFile = z.infer<typeof simFleetSchema>;

export class FleetFileError extends Error {
  override readonly name = "FleetFileError";
}

/** One island resolved against the catalogs. */
export interface SimIsland {
  readonly name: string;
  readonly hardware: HardwareSpec;
  readonly model: ModelSpec;
  readonly precision: PrecisionSpec;
  readonly tp: number;
  readonly count: number;
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly profile: PerfProfile;
  /** The same replica at its devices' physical limit (hardware/roofline.ts): what its efficiency is measured against. */
  readonly roofline: PerfProfile;
  readonly energy: EnergyProfile;
  /** Context window a replica offers: the model's, or less where KV holds less. */
  readonly contextSize: number;
  /** KV tokens a replica's host-memory tier holds (0: none). */
  readonly hostKvTokens: number;
  /** Host-to-device bandwidth per device, GB/s. */
  readonly hostLinkGBs: number;
  /** $ per hour of one replica (tp devices). */
  readonly usdPerHour: number;
  /** Index of the island's first replica in fleet order. */
  readonly firstReplica: number;
  /** The engine parameters its replicas run with (the profile's on this hardware, or the built-in ones). */
  readonly params: PerfParams;
  /** Prefill, decode or both (colocated; the default, also where absent). */
  readonly role?: IslandRole;
  /** Absent: `count` replicas throughout (or as `membership` says). */
  readonly autoscale?: IslandAutoscale;
}

/**
 * Loads an island's `profile:` (the path as written in the fleet file);
 * throws an Error whose message says what is wrong. The caller supplies it,
 * so this module does no I/O.
 */
export type ProfileLoader = (path: string) => EngineParams;

export interface ResolveOptions {
  readonly loadProfile?: ProfileLoader;
}

export interface ScheduledFailure {
  readonly replica: number;
  readonly atMs: number;
  readonly downMs: number;
}

/** A replica joining (`add`: absent before) or leaving (`remove`: no new requests, then evicted after `waitMs`). */
export interface MembershipChange {
  readonly replica: number;
  readonly atMs: number;
  readonly change: "add" | "remove";
  readonly waitMs: number;
}

export interface SimFleet {
  readonly islands: readonly SimIsland[];
  readonly replicaCount: number;
  readonly policy: Policy;
  readonly sample: number;
  /** Router instances and how often engines report load to them. */
  readonly router: { readonly instances: number; readonly loadReportMs: number; readonly peerSyncMs: number };
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  readonly failures:
    | { readonly mtbfMs: number | undefined; readonly repairMs: number; readonly schedule: readonly ScheduledFailure[] }
    | undefined;
  /** Replicas joining and leaving, in time order (absent: none). */
  readonly membership?: readonly MembershipChange[];
  readonly blockTokens: number;
  readonly chunkedPrefill: boolean;
  readonly stepTokens: number | undefined;
  readonly pue: number;
  readonly usdPerKwh: number;
  readonly seed: number;
  /** Some island is prefill or decode: requests prefill on one, decode on another (absent: false). */
  readonly disaggregated?: boolean;
  /** The link KV crosses between them (read only when disaggregated; absent: rdma-400g). */
  readonly kvTransfer?: { readonly link: KvLinkId };
}

function formatIssues(source: string, issues: readonly { path: readonly PropertyKey[]; message: string }[]): FleetFileError {
  const lines = issues.map((i) => `  ${i.path.length > 0 ? i.path.map(String).join(".") : "(top level)"}: ${i.message}`);
  return new FleetFileError(`${source} is not valid:\n${lines.join("\n")}`);
}

/** Policy by name, with scorer weights overridden by scorer name. */
export function resolvePolicy(name: string, weights?: Readonly<Record<string, number>>): Policy {
  const base = policies[name];
  if (base === undefined) throw new FleetFileError(`unknown policy "${name}"; known: ${Object.keys(policies).join(", ")}`);
  if (weights === undefined) return base;
  const names = base.scorers.map((s) => s.scorer.name);
  for (const key of Object.keys(weights)) {
    if (!names.includes(key)) throw new FleetFileError(`router.weights: policy "${name}" has no scorer "${key}"; its scorers: ${names.join(", ")}`);
  }
  return { ...base, scorers: base.scorers.map((s) => ({ scorer: s.scorer, weight: weights[s.scorer.name] ?? s.weight })) };
}

type Issue = { path: (string | number)[]; message: string };
type IslandFile = SimFleetFile["islands"][number];
/** Records a problem with one key of the island being resolved. */
type Report = (key: string, message: string) => void;

interface CatalogEntries {
  readonly hardware: HardwareSpec;
  readonly model: ModelSpec;
  readonly precision: PrecisionSpec;
}

/** Validates a parsed fleet file and resolves names against the catalogs. */
export function resolveSimFleet(raw: unknown, source = "fleet file", opts: ResolveOptions = {}): SimFleet {
  const parsed = simFleetSchema.safeParse(raw);
  if (!parsed.success) throw formatIssues(source, parsed.error.issues);
  const cfg = parsed.data;
  // Every problem is collected before throwing, so one run names them all.
  const issues: Issue[] = [];
  const islands: SimIsland[] = [];
  let first = 0;
  cfg.islands.forEach((isl, i) => {
    const resolved = resolveIsland(isl, i, first, issues, opts.loadProfile);
    if (resolved === undefined) return;
    islands.push(resolved);
    first += resolved.count;
  });
  const policy = routerPolicy(cfg.router, issues);
  const schedule = failureSchedule(cfg.failures?.schedule ?? [], islands, first, issues);
  const membership = membershipChanges(cfg.membership ?? [], islands, first, issues);
  sameModelAcrossStages(islands, cfg.islands, issues);
  if (issues.length > 0 || policy === undefined) throw formatIssues(source, issues);
  const f = cfg.failures;
  return {
    islands,
    replicaCount: first,
    policy,
    sample: cfg.router.sample,
    router: { instances: cfg.router.instances, loadReportMs: cfg.router.load_report_ms, peerSyncMs: cfg.router.peer_sync_ms },
    slo: { ttftMs: cfg.slo.ttft_ms, tpotMs: cfg.slo.tpot_ms },
    failures: f === undefined ? undefined : { mtbfMs: f.mtbf_s === undefined ? undefined : f.mtbf_s * 1000, repairMs: f.repair_s * 1000, schedule },
    ...(membership.length === 0 ? {} : { membership }),
    blockTokens: cfg.engine.block_tokens,
    chunkedPrefill: cfg.engine.chunked_prefill,
    stepTokens: cfg.engine.step_tokens,
    pue: cfg.engine.pue,
    usdPerKwh: cfg.engine.usd_per_kwh,
    seed: cfg.seed,
    disaggregated: islands.some((i) => (i.role ?? "both") !== "both"),
    kvTransfer: { link: cfg.kv_transfer.link },
  };
}

/** A decode island must hold the KV its prefill islands send: the same model, in the same KV format. */
function sameModelAcrossStages(islands: readonly SimIsland[], raw: readonly IslandFile[], issues: Issue[]): void {
  const ref = islands.find((i) => i.role === "prefill");
  if (ref === undefined) return;
  islands.forEach((isl) => {
    if (isl.role !== "decode") return;
    const i = raw.findIndex((x, j) => (x.name ?? `${x.hardware}-${j}`) === isl.name);
    if (isl.model.id !== ref.model.id) issues.push({ path: ["islands", i, "model"], message: `island "${isl.name}" runs ${isl.model.id} but prefill island "${ref.name}" runs ${ref.model.id}: a disaggregated fleet serves one model` });
    else if (isl.profile.kvFormat !== ref.profile.kvFormat) issues.push({ path: ["islands", i, "kv_precision"], message: `island "${isl.name}" keeps KV in ${isl.profile.kvFormat} but prefill island "${ref.name}" in ${ref.profile.kvFormat}: set kv_precision alike` });
  });
}

/** One island against the catalogs, its replicas numbered from `firstReplica`; undefined, with its issues recorded, when it cannot be. */
function resolveIsland(isl: IslandFile, i: number, firstReplica: number, issues: Issue[], loadProfile: ProfileLoader | undefined): SimIsland | undefined {
  const report: Report = (key, message) => {
    issues.push({ path: ["islands", i, key], message });
  };
  const entries = catalogEntries(isl, report);
  if (entries === undefined) return undefined;
  const params = engineParams(isl, entries.hardware, loadProfile, report);
  if (params === undefined) return undefined;
  const fit = fittingProfile(isl, entries, params, report);
  if (fit === undefined) return undefined;
  const { hardware, model, precision } = entries;
  const { tp, profile } = fit;
  const autoscale = islandAutoscale(isl, report);
  return {
    name: isl.name ?? `${hardware.id}-${i}`,
    hardware,
    model,
    precision,
    tp,
    count: autoscale?.settings.max ?? isl.count,
    maxBatch: isl.max_batch,
    maxQueue: isl.max_queue,
    profile,
    roofline: rooflineProfile(model, hardware, precision, { tp, kvFormat: profile.kvFormat, expertParallel: profile.expertParallel }),
    energy: makeEnergyProfile(profile, hardware, precision, params),
    contextSize: Math.min(model.contextLength, profile.kvCapacityTokens),
    // Each device keeps its own shard of every block, so the tier holds a device's GB over a device's KV bytes per token.
    hostKvTokens: Math.floor((isl.host_kv_gb * 1e9) / profile.kvBytesPerToken),
    hostLinkGBs: isl.host_link_gb_s,
    usdPerHour: tp * deviceUsdPerHour(hardware, { pricing: isl.pricing }),
    firstReplica,
    params,
    role: isl.role,
    ...(autoscale === undefined ? {} : { autoscale }),
  };
}

function islandAutoscale(isl: IslandFile, report: Report): IslandAutoscale | undefined {
  const a = isl.autoscale;
  if (a === undefined) return undefined;
  if (a.min > a.max) report("autoscale", `min ${a.min} is above max ${a.max}`);
  if (isl.count < a.min || isl.count > a.max) report("count", `with autoscale, count is the replicas at the start: between autoscale.min ${a.min} and max ${a.max}, got ${isl.count}`);
  return {
    settings: { min: a.min, max: a.max, mode: a.mode, targetUtilisation: a.target_utilisation, provisioningMs: a.provisioning_s * 1000, cooldownMs: a.cooldown_s * 1000, windowMs: a.window_s * 1000 },
    intervalMs: a.interval_s * 1000,
    removeWaitMs: a.remove_wait_s * 1000,
    initial: isl.count,
  };
}

/** The island's engine parameters on its hardware; undefined, reported, when its profile cannot be loaded. */
function engineParams(isl: IslandFile, hardware: HardwareSpec, loadProfile: ProfileLoader | undefined, report: Report): PerfParams | undefined {
  if (isl.profile === undefined) return FITTED_PARAMS;
  if (loadProfile === undefined) {
    report("profile", `cannot load ${isl.profile} here: this caller reads no profile files`);
    return undefined;
  }
  try {
    return paramsOn(loadProfile(isl.profile), hardware.id);
  } catch (err) {
    report("profile", (err as Error).message);
    return undefined;
  }
}

/** The island's hardware, model and precision; undefined when any is unknown, each unknown name reported. */
function catalogEntries(isl: IslandFile, report: Report): CatalogEntries | undefined {
  const lookup = <T>(key: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (err) {
      if (err instanceof UnknownNameError) {
        report(key, err.message);
        return undefined;
      }
      throw err;
    }
  };
  const hardware = lookup("hardware", () => findHardware(isl.hardware));
  const model = lookup("model", () => findModel(isl.model));
  const precision = lookup("precision", () => findPrecision(isl.precision));
  return hardware === undefined || model === undefined || precision === undefined ? undefined : { hardware, model, precision };
}

/**
 * The tensor-parallel degree (the island's, else the smallest that fits) and
 * the performance profile at it; undefined, reported, when the model does not fit.
 */
function fittingProfile(isl: IslandFile, { hardware, model, precision }: CatalogEntries, params: PerfParams, report: Report): { tp: number; profile: PerfProfile } | undefined {
  const base = {
    model,
    hardware,
    precision,
    ...(isl.kv_precision !== undefined ? { kvPrecision: isl.kv_precision as KvFormat } : {}),
    ...(isl.expert_parallel !== undefined ? { expertParallel: isl.expert_parallel } : {}),
    ...(isl.kv_memory_fraction !== undefined ? { kvMemoryFraction: isl.kv_memory_fraction } : {}),
  };
  // A useful cache holds a full-context sequence, up to 128 Ki tokens.
  const wantKv = Math.min(model.contextLength, 131_072);
  const tp = isl.tp ?? smallestFittingTp(base, wantKv) ?? smallestFittingTp(base, 1);
  if (tp === undefined) {
    report("model", `${model.id} in ${precision.id} does not fit on ${hardware.id} at any tensor-parallel degree up to ${hardware.link.maxDevices}`);
    return undefined;
  }
  const profile = makePerfProfile(model, hardware, precision, {
    tp,
    params,
    ...(isl.kv_precision !== undefined ? { kvFormat: isl.kv_precision } : {}),
    ...(isl.expert_parallel !== undefined ? { expertParallel: isl.expert_parallel } : {}),
    ...(isl.kv_memory_fraction !== undefined ? { kvMemoryFraction: isl.kv_memory_fraction } : {}),
  });
  if (!profile.fits) {
    const hint = smallestFittingTp(base, 1);
    report("tp", `${model.id} in ${precision.id} does not fit on ${hardware.id} with tp ${tp}${hint === undefined ? "" : `; tp ${hint} fits`}`);
    return undefined;
  }
  return { tp, profile };
}

/** The router's policy with its weights; undefined, recorded, when the policy or a weighted scorer is unknown. */
function routerPolicy(router: SimFleetFile["router"], issues: Issue[]): Policy | undefined {
  try {
    return resolvePolicy(router.policy, router.weights);
  } catch (err) {
    issues.push({ path: ["router", err instanceof FleetFileError && err.message.startsWith("router.weights") ? "weights" : "policy"], message: (err as Error).message.replace(/^router\.weights: /, "") });
    return undefined;
  }
}

/** Scheduled failures by replica index; an event naming no replica of the fleet is recorded as an issue. */
function failureSchedule(events: readonly z.infer<typeof failureEvent>[], islands: readonly SimIsland[], replicaCount: number, issues: Issue[]): ScheduledFailure[] {
  const schedule: ScheduledFailure[] = [];
  events.forEach((f, j) => {
    const replica = replicaIndex(f.replica, islands, replicaCount);
    if (replica === undefined) {
      issues.push({ path: ["failures", "schedule", j, "replica"], message: `no replica ${JSON.stringify(f.replica)} (the fleet has ${replicaCount}: indices 0-${replicaCount - 1} or names like "${islands[0]?.name ?? "island"}/0")` });
      return;
    }
    schedule.push({ replica, atMs: f.at_s * 1000, downMs: f.down_s * 1000 });
  });
  return schedule;
}

/**
 * Membership changes by replica index, in time order. A replica joins at
 * most once and leaves at most once, and not before it joined; anything
 * else is recorded as an issue naming the change.
 */
function membershipChanges(events: readonly z.infer<typeof membershipChange>[], islands: readonly SimIsland[], replicaCount: number, issues: Issue[]): MembershipChange[] {
  const out: MembershipChange[] = [];
  const seen = new Map<string, number>();
  events.forEach((e, j) => {
    const replica = replicaIndex(e.replica, islands, replicaCount);
    if (replica === undefined) return void issues.push({ path: ["membership", j, "replica"], message: `no replica ${JSON.stringify(e.replica)} (the fleet has ${replicaCount})` });
    const owner = islands.find((x) => replica >= x.firstReplica && replica < x.firstReplica + x.count);
    if (owner?.autoscale !== undefined) return void issues.push({ path: ["membership", j, "replica"], message: `replica ${JSON.stringify(e.replica)} is in island "${owner.name}", whose autoscale sets its membership` });
    const key = `${replica}:${e.change}`;
    if (seen.has(key)) return void issues.push({ path: ["membership", j, "change"], message: `replica ${JSON.stringify(e.replica)} already has a${e.change === "add" ? "n add" : " remove"} (membership.${seen.get(key)}); one of each per replica` });
    seen.set(key, j);
    out.push({ replica, atMs: e.at_s * 1000, change: e.change, waitMs: e.remove_wait_s * 1000 });
  });
  for (const add of out.filter((c) => c.change === "add")) {
    const remove = out.find((c) => c.change === "remove" && c.replica === add.replica);
    if (remove !== undefined && remove.atMs <= add.atMs) issues.push({ path: ["membership", seen.get(`${add.replica}:remove`)!, "at_s"], message: `replica ${add.replica} leaves at ${remove.atMs / 1000} s, before it joins at ${add.atMs / 1000} s` });
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

/** A replica's index in fleet order, from its index or its name ("island/3"); undefined when the fleet has none such. */
function replicaIndex(ref: number | string, islands: readonly SimIsland[], replicaCount: number): number | undefined {
  if (typeof ref === "number") return ref < replicaCount ? ref : undefined;
  const slash = ref.lastIndexOf("/");
  const isl = islands.find((x) => x.name === ref.slice(0, slash));
  const idx = Number(ref.slice(slash + 1));
  return isl !== undefined && Number.isInteger(idx) && idx >= 0 && idx < isl.count ? isl.firstReplica + idx : undefined;
}

/** Parses fleet-file YAML text; YAML syntax errors name the line. */
export function parseSimFleetYaml(text: string, source = "fleet file", opts: ResolveOptions = {}): SimFleet {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const line = err.linePos?.[0]?.line;
      throw new FleetFileError(`${source}${line === undefined ? "" : `:${line}`}: not valid YAML: ${err.message.split("\n")[0]}`);
    }
    throw err;
  }
  return resolveSimFleet(raw, source, opts);
}
