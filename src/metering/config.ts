/**
 * Tenancy from the fleet file: which store, whether keys are required, and a
 * rate card per replica from its `hardware`, `precision`, `tp` and `spec`.
 */
import { isAbsolute, join, resolve } from "node:path";
import type { Clock } from "../core/clock.js";
import { isLoopbackHost } from "../core/loopback.js";
import type { Prompt } from "../core/request.js";
import { readGgufSpec, type GgufSpec } from "../engines/gguf-spec.js";
import type { FleetConfig, ReplicaConfig } from "../fleet/config.js";
import { ConfigError } from "../fleet/config.js";
import { promptTokensOf, type Fleet } from "../fleet/fleet.js";
import { defaultCacheDir } from "../gguf/default-model.js";
import { findHardware, findModel, findPrecision, type ModelSpec, type PrecisionSpec } from "../hardware/index.js";
import { openStore } from "../store/index.js";
import { RateBook, rateCard, unpriced, type RateCard } from "./pricing.js";
import { replicaParams } from "./replica-profile.js";
import { openStoreTenancy, type StoreTenancy } from "./store-tenancy.js";

export const DEFAULT_STORE_FILE = "flotilla.db";

/** The store URL the config asks for, or undefined for `store: none`. */
export function storeUrl(config: FleetConfig, opts: { baseDir: string; env: NodeJS.ProcessEnv }): string | undefined {
  const s = config.server;
  let url: string;
  if (s.store_env !== undefined) {
    const v = opts.env[s.store_env];
    if (v === undefined || v === "") throw new ConfigError(`server.store_env names ${s.store_env}, which is not set`);
    url = v;
  } else {
    url = s.store ?? `sqlite:${join(defaultCacheDir(), DEFAULT_STORE_FILE)}`;
  }
  if (url === "none") return undefined;
  if (/^postgres(ql)?:\/\//i.test(url)) return url;
  const path = url.replace(/^sqlite:(\/\/)?/i, "");
  return `sqlite:${path === ":memory:" || isAbsolute(path) ? path : resolve(opts.baseDir, path)}`;
}

/** A rate card for every replica id the fleet will have (`model/index`, as buildFleet names them). */
export async function rateBookFromConfig(config: FleetConfig, baseDir: string): Promise<RateBook> {
  const replicas = new Map<string, { model: string; rate: RateCard }>();
  const gguf = new Map<string, Promise<GgufSpec>>();
  for (const [mi, m] of config.models.entries()) {
    let index = 0;
    for (const [ri, rc] of m.replicas.entries()) {
      const rate = await cardFor(rc, m.name, `models.${mi}.replicas.${ri}`, baseDir, gguf);
      for (let i = 0; i < rc.count; i++) replicas.set(`${m.name}/${index++}`, { model: m.name, rate });
    }
  }
  return new RateBook(replicas);
}

/** The rate card of one fleet-file replica entry; `path` names the entry in errors (e.g. models.0.replicas.1). */
export function rateCardFor(rc: ReplicaConfig, modelName: string, path: string, baseDir: string): Promise<RateCard> {
  return cardFor(rc, modelName, path, baseDir, new Map());
}

async function cardFor(
  rc: ReplicaConfig,
  modelName: string,
  path: string,
  baseDir: string,
  gguf: Map<string, Promise<GgufSpec>>,
): Promise<RateCard> {
  const tp = rc.tp ?? 1;
  if (rc.hardware === undefined) {
    await replicaParams(rc, undefined, path, baseDir);
    return unpriced(rc.parallel, tp);
  }
  const named = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw new ConfigError(`${path}.${what}: ${(err as Error).message}`);
    }
  };
  const hardware = named("hardware", () => findHardware(rc.hardware!));
  let spec: ModelSpec | undefined;
  let precision: PrecisionSpec | undefined = rc.precision === undefined ? undefined : named("precision", () => findPrecision(rc.precision!));
  if (rc.spec !== undefined) {
    spec = named("spec", () => findModel(rc.spec!));
  } else if (rc.engine === "local") {
    const file = isAbsolute(rc.path) ? rc.path : resolve(baseDir, rc.path);
    let read = gguf.get(file);
    if (read === undefined) {
      read = readGgufSpec(file);
      gguf.set(file, read);
    }
    const info = await read.catch((err: unknown) => {
      throw new ConfigError(`${path}: cannot read the model's shape from ${file} for pricing (${(err as Error).message}); set spec: <catalog model id>`);
    });
    spec = info.spec;
    precision ??= info.precision;
  } else {
    spec = named("spec", () => {
      try {
        return findModel(modelName);
      } catch {
        throw new Error(`model "${modelName}" is not in the hardware catalog; set spec: <catalog model id> (flotilla catalog lists them) so its energy and cost can be priced`);
      }
    });
  }
  const params = await replicaParams(rc, hardware, path, baseDir);
  return named("hardware", () => rateCard({ model: spec, hardware, precision: precision ?? findPrecision("bf16"), tp, slots: rc.parallel, ...(params === undefined ? {} : { params }) }));
}

/** Exact prompt tokens from the model's tokenizer, where a replica has one (fleet.ts promptTokensOf). */
export function promptCounter(fleet: Fleet): (model: string, prompt: Prompt, continuation?: string) => number | undefined {
  return (model, prompt, continuation) => {
    const m = fleet.model(model);
    return m === undefined ? undefined : promptTokensOf(m, prompt, continuation);
  };
}

export interface TenancyFromConfigOptions {
  readonly baseDir: string;
  readonly env: NodeJS.ProcessEnv;
  /** The address the server binds: keys are required on a non-loopback one (unless server.require_keys is false). */
  readonly host: string;
  readonly fleet?: Fleet;
  /** Rate cards already read from the fleet file (rateBookFromConfig); read here otherwise. */
  readonly rates?: RateBook;
  readonly clock?: Clock;
  readonly log?: (message: string) => void;
}

/** Opens the configured store and the tenancy on it; undefined for `server.store: none`. */
export async function tenancyFromConfig(config: FleetConfig, opts: TenancyFromConfigOptions): Promise<StoreTenancy | undefined> {
  const url = storeUrl(config, opts);
  if (url === undefined) return undefined;
  const rates = opts.rates ?? (await rateBookFromConfig(config, opts.baseDir));
  const store = await openStore(url, {
    baseDir: opts.baseDir,
    ...(opts.log === undefined ? {} : { onError: (e: Error) => opts.log!(`store: ${e.message}`) }),
    ...(config.server.ledger_commit_ms === undefined ? {} : { commitWindowMs: config.server.ledger_commit_ms }),
  });
  try {
    const lease = config.server.instance_lease_ms;
    const publicBind = !isLoopbackHost(opts.host);
    return await openStoreTenancy({
      store,
      rates,
      // An explicit require_keys wins; absent, a non-loopback address requires keys, and so does the first key created.
      requireKeys: config.server.require_keys ?? publicBind,
      neverRequireKeys: config.server.require_keys === false,
      publicBind,
      ...(lease === undefined ? {} : { staleAfterMs: lease, heartbeatMs: Math.floor(lease / 6) }),
      ...(config.server.batch_discount === undefined ? {} : { batchDiscount: config.server.batch_discount }),
      ...(opts.fleet === undefined ? {} : { countPromptTokens: promptCounter(opts.fleet) }),
      ...(opts.clock === undefined ? {} : { clock: opts.clock }),
      ...(opts.log === undefined ? {} : { log: opts.log }),
    });
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}
