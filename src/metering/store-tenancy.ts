/**
 * Multi-tenancy on a Store: API keys, limits and the usage ledger behind the
 * gateway's Tenancy seam.
 *
 * - authenticate: a `flt-` key is hashed and looked up on every request, so
 *   revocation takes effect at once. Keys are required when the server binds
 *   a non-loopback address or any key exists; until then loopback callers are
 *   anonymous (and still recorded).
 * - admit: one store transaction checks the tenant's limits, reserves the
 *   request's worst case (prompt + max_tokens at the dearest replica of the
 *   model) and writes the ledger row as 'running', naming this process.
 * - settle: one transaction writes the outcome on that row and releases the
 *   reservation, once. A process killed mid-request leaves its rows
 *   'running'; the next process to start (or any live one, once the dead
 *   one's heartbeat is stale) marks them 'interrupted' and releases them.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../core/clock.js";
import { wallClock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import type { Prompt, TokenUsage } from "../core/request.js";
import { describeRefusal } from "../store/limits.js";
import type { Store } from "../store/store.js";
import {
  ANONYMOUS_TENANT,
  NUSD_PER_USD,
  PRIORITY_CLASSES,
  type ApiKeyRecord,
  type InstanceRecord,
  type TenantWithState,
  type UsageQuery,
  type UsageRow,
} from "../store/types.js";
import type { TenancyAdmin, TenantSpec } from "./admin-api.js";
import { generateKey, hashKey, looksLikeKey, newId, parseAuthorization } from "./keys.js";
import { RateBook, meter, unpriced, worstCase, type Metered, type RateCard } from "./pricing.js";
import type { AdmissionRequest, EarlierLeg, Principal, Settlement, Tenancy, Ticket, UsageExtension } from "./tenancy.js";

export interface StoreTenancyOptions {
  readonly store: Store;
  /** Rate cards of the fleet's replicas; without them everything is priced at zero. */
  readonly rates?: RateBook;
  /** Require a key even while none exists (the server binds a non-loopback address). */
  readonly requireKeys?: boolean;
  readonly clock?: Clock;
  /** Exact prompt tokens where a tokenizer is at hand; otherwise a byte-count upper bound is reserved. */
  readonly countPromptTokens?: (model: string, prompt: Prompt, continuation?: string) => number | undefined;
  /** How often this process proves it is alive and looks for dead ones (default 5 s). */
  readonly heartbeatMs?: number;
  /** A process silent this long is dead (default 30 s). */
  readonly staleAfterMs?: number;
  /** Whether a process on this host is alive (default: signal 0). */
  readonly isAlive?: (pid: number) => boolean;
  readonly host?: string;
  readonly pid?: number;
  /** Where problems are reported (default stderr); never given a key. */
  readonly log?: (message: string) => void;
  /** Close the store with the tenancy (default true). */
  readonly ownsStore?: boolean;
}

const TENANT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class StoreTenancy implements Tenancy, TenancyAdmin {
  readonly store: Store;
  readonly instance: InstanceRecord;
  readonly #rates: RateBook;
  readonly #requireKeys: boolean;
  readonly #clock: Clock;
  readonly #count: StoreTenancyOptions["countPromptTokens"];
  readonly #heartbeatMs: number;
  readonly #staleAfterMs: number;
  readonly #isAlive: (pid: number) => boolean;
  readonly #log: (message: string) => void;
  readonly #ownsStore: boolean;
  readonly #settling = new Set<Promise<void>>();
  /** Settlements the store refused (it was unreachable): retried on every heartbeat. */
  readonly #unsettled = new Map<string, Parameters<Store["settle"]>[0]>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #closed = false;

  get admin(): TenancyAdmin {
    return this;
  }

  private constructor(opts: StoreTenancyOptions) {
    this.store = opts.store;
    this.#rates = opts.rates ?? new RateBook();
    this.#requireKeys = opts.requireKeys ?? false;
    this.#clock = opts.clock ?? wallClock;
    this.#count = opts.countPromptTokens;
    this.#heartbeatMs = opts.heartbeatMs ?? 5_000;
    this.#staleAfterMs = opts.staleAfterMs ?? 30_000;
    this.#isAlive = opts.isAlive ?? processAlive;
    this.#log = opts.log ?? ((m) => process.stderr.write(`flotilla: ${m}\n`));
    this.#ownsStore = opts.ownsStore ?? true;
    const now = this.#clock.epochMs();
    this.instance = { id: randomUUID(), host: opts.host ?? hostname(), pid: opts.pid ?? process.pid, startedAt: now, heartbeatAt: now };
  }

  /** Registers this process, recovers what dead ones left running, and starts the heartbeat. */
  static async open(opts: StoreTenancyOptions): Promise<StoreTenancy> {
    const t = new StoreTenancy(opts);
    await t.store.registerInstance(t.instance);
    await t.sweep();
    t.#schedule();
    return t;
  }

  #schedule(): void {
    if (this.#closed || this.#heartbeatMs <= 0) return;
    this.#timer = setTimeout(() => {
      void this.sweep()
        .catch((err: unknown) => this.#log(`usage ledger heartbeat failed: ${(err as Error).message}`))
        .finally(() => this.#schedule());
    }, this.#heartbeatMs);
    this.#timer.unref();
  }

  /**
   * Heartbeat and recovery: proves this process alive, marks 'interrupted'
   * the running requests of processes that are not (same host and the pid
   * is gone, or silent past staleAfterMs), and retries settlements the store
   * refused earlier.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    // Heartbeats are compared across hosts: on the database's clock where it keeps one.
    const now = (await this.store.databaseNow()) ?? this.#clock.epochMs();
    if (!(await this.store.heartbeat(this.instance.id, now))) {
      // Taken for dead (the database was out of reach too long): come back. Our running rows were
      // interrupted and released; their settlements will still record what happened.
      await this.store.registerInstance({ ...this.instance, heartbeatAt: now });
    }
    const dead = (await this.store.listInstances()).filter(
      (i) => i.id !== this.instance.id && (i.heartbeatAt < now - this.#staleAfterMs || (i.host === this.instance.host && i.pid !== this.instance.pid && !this.#isAlive(i.pid))),
    );
    const n = await this.store.reap(
      dead.map((i) => i.id),
      [this.instance.id],
      now,
    );
    if (n > 0) this.#log(`usage ledger: ${n} request(s) left running by gateway processes that exited are now 'interrupted'`);
    for (const [id, s] of [...this.#unsettled]) {
      await this.store.settle(s);
      this.#unsettled.delete(id);
    }
  }

  async authenticate(authorization: string | undefined): Promise<Principal | undefined> {
    const cred = parseAuthorization(authorization);
    if (cred.kind === "bearer" && looksLikeKey(cred.token)) {
      const found = await this.#guard("checking the API key", () => this.store.findKey(hashKey(cred.token)));
      if (found === undefined) throw unauthorized("the API key is not valid; ask your operator for a key (flotilla keys create)");
      if (found.key.revokedAt !== null) throw unauthorized(`the API key ${found.key.prefix}… was revoked`);
      return { tenantId: found.tenant.id, keyId: found.key.id, weight: found.tenant.weight, priority: found.tenant.priority };
    }
    const required = this.#requireKeys || (await this.#guard("checking for API keys", () => this.store.hasActiveKeys()));
    if (!required) return undefined;
    switch (cred.kind) {
      case "missing":
        throw unauthorized("this server requires an API key: send Authorization: Bearer <key>");
      case "malformed":
        throw unauthorized("malformed Authorization header: send Authorization: Bearer <key>");
      case "bearer":
        throw unauthorized("the API key is not valid; ask your operator for a key (flotilla keys create)");
    }
  }

  async admit(req: AdmissionRequest): Promise<Ticket> {
    if (this.#closed) throw new FlotillaError("shutting_down", "this server is shutting down; retry on another instance", { retryAfterS: 5 });
    const now = this.#clock.epochMs();
    const rate = this.#rates.worstFor(req.model);
    const promptTokens = req.prompt === undefined ? 0 : (this.#count?.(req.model, req.prompt, req.continuation) ?? estimatePromptTokens(req.prompt, req.continuation));
    const maxTokens = req.maxTokens ?? 0;
    const legs = req.legs ?? 1;
    const reservedNusd = legs * worstCase(rate, promptTokens, maxTokens);
    const tenantId = req.principal?.tenantId ?? ANONYMOUS_TENANT;
    const id = randomUUID();
    const outcome = await this.#guard("admitting the request", () =>
      this.store.admit({
        id,
        requestId: req.requestId,
        tenantId,
        keyId: req.principal?.keyId ?? null,
        model: req.model,
        endpoint: req.endpoint,
        stream: req.stream,
        reservedNusd,
        reservedTokens: legs * (promptTokens + maxTokens),
        outputBounded: req.maxTokens !== undefined,
        instanceId: this.instance.id,
        now,
      }),
    );
    if (!outcome.ok) {
      switch (outcome.reason) {
        case "unknown_tenant":
          throw unauthorized(`tenant "${tenantId}" no longer exists`);
        case "max_tokens_required":
          throw new FlotillaError("invalid_request", `tenant "${tenantId}" has a monthly budget, so every request must set max_tokens (it bounds what the request may cost)`, {
            param: req.endpoint === "chat" ? "max_completion_tokens" : "max_tokens",
          });
        case "limit": {
          const retryAfterS = outcome.resetAt === null ? 1 : Math.max(1, Math.ceil((outcome.resetAt - now) / 1000));
          throw new FlotillaError("quota_exceeded", describeRefusal(outcome.state, outcome.limit, outcome.resetAt, now), { param: outcome.limit, retryAfterS });
        }
      }
    }
    return new StoreTicket(this, { id, promptTokens, bounded: req.maxTokens !== undefined, reservedNusd });
  }

  /** Energy, cost and device-seconds of `usage` on `replica`, billed at most `cap` (nano-USD). */
  meter(usage: TokenUsage, replica: string | undefined, durationMs: number, cap: number | undefined): Metered {
    const rate: RateCard = this.#rates.replica(replica) ?? unpriced(1);
    const m = meter(rate, usage, durationMs);
    return cap === undefined || m.costNusd <= cap ? m : { ...m, costNusd: cap };
  }

  /** Writes a settlement; a store that cannot be reached gets it again on each heartbeat. */
  record(s: Parameters<Store["settle"]>[0]): Promise<void> {
    const p = this.#record(s).finally(() => this.#settling.delete(p));
    this.#settling.add(p);
    return p;
  }

  async #record(s: Parameters<Store["settle"]>[0]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.store.settle(s);
        return;
      } catch (err) {
        if (attempt >= 2 || this.#closed) {
          this.#unsettled.set(s.id, s);
          this.#log(`usage ledger: could not settle request ${s.id} (${(err as Error).message}); will retry`);
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 5 ** attempt));
      }
    }
  }

  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FlotillaError) throw err;
      this.#log(`usage ledger unavailable while ${what}: ${(err as Error).message}`);
      throw new FlotillaError("engine_unavailable", `the usage ledger is unavailable (${what}); retry shortly`, { retryAfterS: 1, cause: err });
    }
  }

  /**
   * Lets settlements in progress finish, marks whatever of this process is
   * still running 'interrupted', unregisters and closes the store.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await Promise.race([Promise.allSettled([...this.#settling, this.#sweeping]), new Promise((r) => setTimeout(r, 5_000).unref())]);
    try {
      for (const s of this.#unsettled.values()) await this.store.settle(s);
      await this.store.reap([this.instance.id], [], this.#clock.epochMs());
    } catch (err) {
      this.#log(`usage ledger: could not close cleanly (${(err as Error).message}); the next process to start will recover`);
    }
    if (this.#ownsStore) await this.store.close();
  }

  // The operator's side.

  async createTenant(spec: TenantSpec): Promise<TenantWithState> {
    if (!TENANT_ID.test(spec.id) || spec.id === ANONYMOUS_TENANT) {
      throw invalid("name", `a tenant's name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, and not "${ANONYMOUS_TENANT}"`);
    }
    const weight = spec.weight ?? 1;
    if (!(weight > 0) || !Number.isFinite(weight)) throw invalid("weight", "weight must be a positive number");
    const priority = spec.priority ?? "interactive";
    if (!PRIORITY_CLASSES.includes(priority)) throw invalid("priority", `priority must be one of ${PRIORITY_CLASSES.join(", ")}`);
    const count = (v: number | null | undefined, name: string): number | null => {
      if (v === undefined || v === null) return null;
      if (!Number.isInteger(v) || v < 1) throw invalid(name, `${name} must be a positive integer`);
      return v;
    };
    const budget = spec.monthlyBudgetUsd ?? null;
    if (budget !== null && !(budget >= 0 && budget <= 9e6)) throw invalid("monthly_budget_usd", "monthly_budget_usd must be from 0 to 9,000,000");
    if ((await this.store.getTenant(spec.id)) !== undefined) throw invalid("name", `tenant "${spec.id}" already exists`);
    const tenant = {
      id: spec.id,
      weight,
      priority,
      requestsPerMinute: count(spec.requestsPerMinute, "requests_per_minute"),
      tokensPerMinute: count(spec.tokensPerMinute, "tokens_per_minute"),
      maxConcurrent: count(spec.maxConcurrent, "max_concurrent"),
      monthlyBudgetNusd: budget === null ? null : Math.round(budget * NUSD_PER_USD),
      createdAt: this.#clock.epochMs(),
    };
    try {
      await this.store.createTenant(tenant);
    } catch (err) {
      if ((await this.store.getTenant(spec.id)) !== undefined) throw invalid("name", `tenant "${spec.id}" already exists`);
      throw err;
    }
    return (await this.store.getTenant(spec.id))!;
  }

  listTenants(): Promise<TenantWithState[]> {
    return this.store.listTenants();
  }

  getTenant(id: string): Promise<TenantWithState | undefined> {
    return this.store.getTenant(id);
  }

  deleteTenant(id: string): Promise<boolean> {
    return this.store.deleteTenant(id);
  }

  async createKey(tenantId: string, name = ""): Promise<{ key: string; record: ApiKeyRecord }> {
    if ((await this.store.getTenant(tenantId)) === undefined) throw invalid("tenant", `no tenant "${tenantId}"; create it first (flotilla tenants create ${tenantId})`);
    if (name.length > 200) throw invalid("name", "a key's name is at most 200 characters");
    const k = generateKey();
    const record = await this.store.createKey({ id: newId("key"), tenantId, name, prefix: k.prefix, hash: k.hash, createdAt: this.#clock.epochMs(), revokedAt: null });
    return { key: k.key, record };
  }

  listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    return this.store.listKeys(tenantId);
  }

  revokeKey(id: string): Promise<boolean> {
    return this.store.revokeKey(id, this.#clock.epochMs());
  }

  usage(query: UsageQuery): Promise<UsageRow[]> {
    return this.store.usage(query);
  }

  /** Calendar time, epoch ms, from the injected clock. */
  now(): number {
    return this.#clock.epochMs();
  }
}

export function openStoreTenancy(opts: StoreTenancyOptions): Promise<StoreTenancy> {
  return StoreTenancy.open(opts);
}

/** Every leg's energy, cost and device time, summed; billed at most the reservation; the hardware is the answering leg's. */
function sumMetered(final: Metered, earlier: readonly Metered[], cap: number | undefined): Metered {
  let { energyJ, costNusd, deviceSeconds } = final;
  for (const m of earlier) {
    energyJ += m.energyJ;
    costNusd += m.costNusd;
    deviceSeconds += m.deviceSeconds;
  }
  return { hardware: final.hardware, energyJ, costNusd: cap === undefined ? costNusd : Math.min(cap, costNusd), deviceSeconds };
}

/** One admitted request's claim: priced once for the response, settled once for the ledger. */
class StoreTicket implements Ticket {
  readonly #owner: StoreTenancy;
  readonly #id: string;
  readonly #promptTokens: number;
  readonly #cap: number | undefined;
  #priced: { readonly usage: TokenUsage; readonly replica: string; readonly earlier: readonly EarlierLeg[] | undefined; readonly metered: Metered } | undefined;
  #settled: Promise<void> | undefined;

  constructor(owner: StoreTenancy, r: { id: string; promptTokens: number; bounded: boolean; reservedNusd: number }) {
    this.#owner = owner;
    this.#id = r.id;
    this.#promptTokens = r.promptTokens;
    // With max_tokens the reservation is a true bound, and the bill never exceeds it
    // (a failover's replayed prompt is the fleet's cost, not the tenant's).
    this.#cap = r.bounded ? r.reservedNusd : undefined;
  }

  price(usage: TokenUsage, replica: string, durationMs: number, earlier?: readonly EarlierLeg[]): UsageExtension {
    const metered = this.#meterAll(usage, replica, durationMs, earlier);
    this.#priced = { usage, replica, earlier, metered };
    return { hardware: metered.hardware, energy_j: round(metered.energyJ), cost_usd: metered.costNusd / NUSD_PER_USD, device_s: round(metered.deviceSeconds) };
  }

  /** `usage` undefined: the final leg never produced anything (cancelled between legs). */
  #meterAll(usage: TokenUsage | undefined, replica: string | undefined, durationMs: number, earlier: readonly EarlierLeg[] | undefined): Metered {
    const final = this.#owner.meter(usage ?? { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }, replica, durationMs, this.#cap);
    if (earlier === undefined || earlier.length === 0) return final;
    return sumMetered(final, earlier.map((leg) => this.#owner.meter(leg.usage, leg.replica, leg.durationMs, this.#cap)), this.#cap);
  }

  settle(s: Settlement): Promise<void> {
    this.#settled ??= this.#settle(s);
    return this.#settled;
  }

  async #settle(s: Settlement): Promise<void> {
    // A stream cut short still used what it streamed (and its prompt, once a token came out).
    const streamed = s.streamedTokens ?? 0;
    const usage: TokenUsage | undefined = s.usage ?? (streamed > 0 ? { promptTokens: this.#promptTokens, completionTokens: streamed, cachedTokens: 0 } : undefined);
    const p = this.#priced;
    const metered: Metered | undefined =
      usage === undefined
        ? s.earlier !== undefined && s.earlier.length > 0
          ? this.#meterAll(undefined, undefined, 0, s.earlier)
          : undefined
        : p !== undefined && p.replica === s.replica && p.usage === usage && p.earlier === s.earlier
          ? p.metered
          : this.#meterAll(usage, s.replica, s.durationMs, s.earlier);
    const rate = metered?.hardware ?? null;
    const all = (k: keyof TokenUsage): number => (usage?.[k] ?? 0) + (s.earlier ?? []).reduce((n, leg) => n + leg.usage[k], 0);
    await this.#owner.record({
      id: this.#id,
      status: s.status,
      errorCode: s.errorCode ?? null,
      replica: s.replica ?? null,
      hardware: s.replica === undefined ? null : rate,
      inputTokens: all("promptTokens"),
      cachedTokens: all("cachedTokens"),
      outputTokens: all("completionTokens"),
      deviceSeconds: metered?.deviceSeconds ?? 0,
      energyJ: metered?.energyJ ?? 0,
      costNusd: metered?.costNusd ?? 0,
      attempts: s.attempts,
      continuations: s.continuations,
      now: this.#owner.now(),
    });
  }
}

/**
 * Tokens a prompt can take at most where no tokenizer is at hand: a
 * byte-level tokenizer never yields more tokens than UTF-8 bytes, plus a
 * chat template's few special tokens per message.
 */
export function estimatePromptTokens(prompt: Prompt, continuation = ""): number {
  const extra = Buffer.byteLength(continuation, "utf8");
  if (prompt.kind === "text") return Buffer.byteLength(prompt.text, "utf8") + extra + 2;
  let n = 8 + extra;
  for (const m of prompt.messages) n += Buffer.byteLength(m.content, "utf8") + 8;
  return n;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function unauthorized(message: string): FlotillaError {
  return new FlotillaError("unauthorized", message);
}

function invalid(param: string, message: string): FlotillaError {
  return new FlotillaError("invalid_request", message, { param });
}

function round(x: number): number {
  return Number(x.toPrecision(6));
}
