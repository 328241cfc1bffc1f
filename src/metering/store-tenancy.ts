/**
 * Multi-tenancy on a Store: API keys, limits and the usage ledger behind the
 * gateway's Tenancy seam.
 *
 * - authenticate: a `flt-` key is hashed and looked up on every request, so
 *   revocation takes effect at once. Keys are required when the server binds
 *   a non-loopback address or once any key has been created (a flag in the
 *   store that revoking or deleting never clears), unless the operator says
 *   `require_keys: false`; until then loopback callers are anonymous (and
 *   still recorded).
 * - admit: one store transaction checks the tenant's limits, reserves the
 *   request's worst case (prompt + max_tokens at the dearest replica of the
 *   model) and writes the ledger row as 'running', naming this process.
 * - settle: one transaction writes the outcome on that row and releases the
 *   reservation, once. A process killed mid-request leaves its rows
 *   'running'; once its heartbeat is older than its lease (staleAfterMs),
 *   whichever live process reaps it first marks them 'interrupted' and
 *   releases them. Liveness is the lease alone: a pid says nothing about a
 *   process in another PID namespace (containers sharing a hostname).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../core/clock.js";
import { wallClock } from "../core/clock.js";
import { FlotillaError } from "../core/errors.js";
import { likelyPromptTokens, promptTokenBound, type Prompt, type TokenUsage } from "../core/request.js";
import { describeRefusal } from "../store/limits.js";
import type { Store } from "../store/store.js";
import { timeOrderedId } from "../store/time-ordered-id.js";
import {
  ANONYMOUS_TENANT,
  MAX_LEDGER_TOKENS,
  NUSD_PER_USD,
  PRIORITY_CLASSES,
  type AdmitInput,
  type AdmitOutcome,
  type ApiKeyRecord,
  type GenerationTiming,
  type InstanceRecord,
  type ReplicaSetup,
  type TenantWithState,
  type UsageQuery,
  type UsageRow,
} from "../store/types.js";
import { billable, type PromptCount } from "./billing.js";
import { KEY_NAME, TENANT_NAME, TENANT_RANGES, describeRange, type TenancyAdmin, type TenantSpec, type ValueRange } from "./admin-api.js";
import { generateKey, hashKey, looksLikeKey, newId, parseAuthorization } from "./keys.js";
import { RateBook, meter, unpriced, worstCase, type Metered, type RateCard } from "./pricing.js";
import type { AdmissionRequest, EarlierLeg, Principal, Settlement, Tenancy, Ticket, UsageExtension } from "./tenancy.js";

export interface StoreTenancyOptions {
  readonly store: Store;
  /** Rate cards of the fleet's replicas; without them everything is priced at zero. */
  readonly rates?: RateBook;
  /**
   * Require a key even before one exists (server.require_keys: true, or the
   * server binds a non-loopback address). Otherwise keys are required once
   * one has been created here.
   */
  readonly requireKeys?: boolean;
  /** The operator's server.require_keys: false: keys are never required, even once keys exist; wins over the rest. */
  readonly neverRequireKeys?: boolean;
  /** The server binds a non-loopback address: what authMode says, and whom an open gateway is open to. */
  readonly publicBind?: boolean;
  readonly clock?: Clock;
  /** Exact prompt tokens where a tokenizer is at hand; otherwise a byte-count upper bound is reserved. */
  readonly countPromptTokens?: (model: string, prompt: Prompt, continuation?: string) => number | undefined;
  /** How often this process renews its lease and looks for expired ones (default 5 s). */
  readonly heartbeatMs?: number;
  /** The lease: a process whose last heartbeat is older than this is dead (default 30 s). */
  readonly staleAfterMs?: number;
  /** Where problems are reported (default stderr); never given a key. */
  readonly log?: (message: string) => void;
  /** Close the store with the tenancy (default true). */
  readonly ownsStore?: boolean;
  /** The share taken off the price of a Batch API line (AdmissionRequest.batch), 0-1 (default 0.5, OpenAI's batch discount). */
  readonly batchDiscount?: number;
}

export class StoreTenancy implements Tenancy, TenancyAdmin {
  readonly store: Store;
  readonly instance: InstanceRecord;
  readonly #rates: RateBook;
  readonly #requireKeys: boolean;
  readonly #neverRequireKeys: boolean;
  readonly #publicBind: boolean;
  /** The store's flag, once seen set: it is never cleared, so it need not be read again. */
  #keysRequiredSeen = false;
  readonly #clock: Clock;
  readonly #count: StoreTenancyOptions["countPromptTokens"];
  readonly #heartbeatMs: number;
  readonly #staleAfterMs: number;
  readonly #log: (message: string) => void;
  readonly #ownsStore: boolean;
  readonly batchDiscount: number;
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
    this.#neverRequireKeys = opts.neverRequireKeys ?? false;
    this.#publicBind = opts.publicBind ?? false;
    this.#clock = opts.clock ?? wallClock;
    this.#count = opts.countPromptTokens;
    this.batchDiscount = opts.batchDiscount ?? 0.5;
    this.#heartbeatMs = opts.heartbeatMs ?? 5_000;
    this.#staleAfterMs = opts.staleAfterMs ?? 30_000;
    this.#log = opts.log ?? ((m) => process.stderr.write(`flotilla: ${m}\n`));
    this.#ownsStore = opts.ownsStore ?? true;
    const now = this.#clock.epochMs();
    this.instance = { id: randomUUID(), host: hostname(), pid: process.pid, startedAt: now, heartbeatAt: now };
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
   * Heartbeat and recovery: renews this process's lease, reaps processes
   * whose lease expired (marking their running requests 'interrupted'), and
   * retries settlements the store refused earlier.
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
    if (!(await this.store.heartbeat(this.instance.id, now))) await this.#rejoin(now);
    const staleBefore = now - this.#staleAfterMs;
    for (const i of await this.store.listInstances()) {
      if (i.id === this.instance.id || i.heartbeatAt >= staleBefore) continue;
      // The store decides again, atomically: of several reapers one acts, and a heartbeat since is respected.
      const n = await this.store.reapInstance(i.id, staleBefore, now);
      if (n !== undefined) {
        this.#log(`usage ledger: gateway process ${i.host} pid ${i.pid} (${i.id}) sent no heartbeat for ${Math.round((now - i.heartbeatAt) / 1000)} s; ${n} request(s) it left running are now 'interrupted'`);
      }
    }
    for (const [id, s] of [...this.#unsettled]) {
      await this.store.settle(s);
      this.#unsettled.delete(id);
    }
  }

  /**
   * Registers this process again after another reaped it (its heartbeat
   * lapsed, the database out of reach too long). Its running rows were
   * interrupted and released; their settlements still record what happened.
   */
  async #rejoin(now: number): Promise<void> {
    this.#log("usage ledger: this process's lease had expired and another reaped it; registering again");
    await this.store.registerInstance({ ...this.instance, heartbeatAt: now });
  }

  async authenticate(authorization: string | undefined): Promise<Principal | undefined> {
    const cred = parseAuthorization(authorization);
    if (cred.kind === "bearer" && looksLikeKey(cred.token)) {
      const found = await this.#guard("checking the API key", () => this.store.findKey(hashKey(cred.token)));
      if (found === undefined) throw unauthorized("the API key is not valid; ask your operator for a key (flotilla keys create)");
      if (found.key.revokedAt !== null) throw unauthorized(`the API key ${found.key.prefix}… was revoked`);
      const { tenant } = found;
      return { tenantId: tenant.id, tenantUid: tenant.uid, keyId: found.key.id, weight: tenant.weight, priority: tenant.priority };
    }
    if (!(await this.#keysRequired())) return undefined;
    switch (cred.kind) {
      case "missing":
        throw unauthorized("this server requires an API key: send Authorization: Bearer <key>");
      case "malformed":
        throw unauthorized("malformed Authorization header: send Authorization: Bearer <key>");
      case "bearer":
        throw unauthorized("the API key is not valid; ask your operator for a key (flotilla keys create)");
    }
  }

  async #keysRequired(): Promise<boolean> {
    if (this.#neverRequireKeys) return false;
    if (this.#requireKeys || this.#keysRequiredSeen) return true;
    this.#keysRequiredSeen = await this.#guard("checking whether keys are required", () => this.store.keysRequired());
    return this.#keysRequiredSeen;
  }

  /** Whether /v1 routes need a key now, and why: one line for `flotilla serve` to print. */
  async authMode(): Promise<string> {
    const open = this.#publicBind ? "open to every caller" : "open to loopback callers";
    if (this.#neverRequireKeys) return `${open}, no key needed (server.require_keys: false)`;
    if (this.#requireKeys) return this.#publicBind ? "keys required (the server binds a non-loopback address)" : "keys required (server.require_keys: true)";
    if (await this.#keysRequired()) return "keys required (a key has been created here; server.require_keys: false turns this off)";
    return `${open} until the first key is created`;
  }

  async admit(req: AdmissionRequest): Promise<Ticket> {
    if (this.#closed) throw new FlotillaError("shutting_down", "this server is shutting down; retry on another instance", { retryAfterS: 5 });
    const now = this.#clock.epochMs();
    const rate = this.#rates.worstFor(req.model);
    const { reserve: promptTokens, bill: promptBill } = this.#promptCounts(req);
    const maxTokens = req.maxTokens ?? 0;
    const legs = req.legs ?? 1;
    const reservedNusd = legs * worstCase(rate, promptTokens, maxTokens);
    const reservedTokens = legs * (promptTokens + maxTokens);
    if (reservedTokens > MAX_LEDGER_TOKENS) {
      // Reachable only with a body limit raised far past the default: the ledger counts tokens in 32 bits.
      throw new FlotillaError("invalid_request", `this request may use up to ${reservedTokens} tokens (prompt + max_tokens), more than the ${MAX_LEDGER_TOKENS} one request may reserve; shorten it`, {
        param: req.endpoint === "completion" ? "prompt" : "messages",
      });
    }
    const tenantId = req.principal?.tenantId ?? ANONYMOUS_TENANT;
    const id = timeOrderedId(now);
    const input: AdmitInput = {
      id,
      requestId: req.requestId,
      tenantId,
      ...(req.principal?.tenantUid === undefined ? {} : { tenantUid: req.principal.tenantUid }),
      keyId: req.principal?.keyId ?? null,
      model: req.model,
      endpoint: req.endpoint,
      stream: req.stream,
      reservedNusd,
      reservedTokens,
      outputBounded: req.maxTokens !== undefined,
      instanceId: this.instance.id,
      now,
    };
    const outcome = await this.#guard("admitting the request", () => this.#admitRegistered(input));
    if (!outcome.ok) throw refusal(outcome, req, tenantId, now);
    return new StoreTicket(this, { id, prompt: promptBill, bounded: req.maxTokens !== undefined, reservedNusd, discount: req.batch === true ? this.batchDiscount : 0 });
  }

  /**
   * The prompt's tokens to reserve and, should the request end before the
   * engine reports its own count, to bill: the tokenizer's count for both
   * where one is at hand; else the most the prompt can take is reserved and
   * a likely count is billed, marked as an estimate.
   */
  #promptCounts(req: AdmissionRequest): { reserve: number; bill: PromptCount } {
    const marks = req.promptMarks ?? 0;
    if (req.prompt === undefined) return { reserve: marks, bill: { tokens: marks, estimated: false } };
    const counted = this.#count?.(req.model, req.prompt, req.continuation);
    if (counted !== undefined) return { reserve: counted + marks, bill: { tokens: counted + marks, estimated: false } };
    const bill = { tokens: likelyPromptTokens(req.prompt, req.continuation) + marks, estimated: true };
    return { reserve: promptTokenBound(req.prompt, req.continuation) + marks, bill };
  }

  /** Admits as a registered process: one reaped while alive (its lease lapsed) registers again first. */
  async #admitRegistered(input: AdmitInput): Promise<AdmitOutcome> {
    const outcome = await this.store.admit(input);
    if (outcome.ok || outcome.reason !== "instance_gone") return outcome;
    await this.#rejoin((await this.store.databaseNow()) ?? this.#clock.epochMs());
    return this.store.admit(input);
  }

  /** What `replica` runs, as its rate card names it; undefined for a replica without hardware. */
  setupOf(replica: string | undefined): ReplicaSetup | undefined {
    return this.#rates.replica(replica)?.setup;
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
      await this.store.deregisterInstance(this.instance.id, this.#clock.epochMs());
    } catch (err) {
      this.#log(`usage ledger: could not close cleanly (${(err as Error).message}); another process will recover once this one's lease expires`);
    }
    if (this.#ownsStore) await this.store.close();
  }

  // The operator's side.

  async createTenant(spec: TenantSpec): Promise<TenantWithState> {
    if (!TENANT_NAME.test(spec.id) || spec.id === ANONYMOUS_TENANT) {
      throw invalid("name", `a tenant's name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, and not "${ANONYMOUS_TENANT}"`);
    }
    const priority = spec.priority ?? "interactive";
    if (!PRIORITY_CLASSES.includes(priority)) throw invalid("priority", `priority must be one of ${PRIORITY_CLASSES.join(", ")}`);
    const budget = inRange(spec.monthlyBudgetUsd, "monthly_budget_usd");
    const tenant = {
      id: spec.id,
      weight: inRange(spec.weight, "weight") ?? 1,
      priority,
      requestsPerMinute: inRange(spec.requestsPerMinute, "requests_per_minute"),
      tokensPerMinute: inRange(spec.tokensPerMinute, "tokens_per_minute"),
      maxConcurrent: inRange(spec.maxConcurrent, "max_concurrent"),
      monthlyBudgetNusd: budget === null ? null : Math.round(budget * NUSD_PER_USD),
      createdAt: this.#clock.epochMs(),
    };
    if ((await this.store.getTenant(spec.id)) !== undefined) throw invalid("name", `tenant "${spec.id}" already exists`);
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
    if (!KEY_NAME.test(name)) throw invalid("name", "a key's name is at most 200 letters, digits, spaces and '.', '_', '-', ':', '/', '@'");
    const k = generateKey();
    const record = await this.store.createKey({ id: newId("key"), tenantId, name, prefix: k.prefix, hash: k.hash, createdAt: this.#clock.epochMs(), revokedAt: null });
    if (record === undefined) throw invalid("tenant", `no tenant "${tenantId}"; create it first (flotilla tenants create ${tenantId})`);
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
  readonly #prompt: PromptCount;
  readonly #cap: number | undefined;
  /** The share taken off what it costs (a Batch API line's discount). */
  readonly #discount: number;
  #priced: { readonly usage: TokenUsage; readonly replica: string; readonly earlier: readonly EarlierLeg[] | undefined; readonly metered: Metered } | undefined;
  #settled: Promise<void> | undefined;

  constructor(owner: StoreTenancy, r: { id: string; prompt: PromptCount; bounded: boolean; reservedNusd: number; discount: number }) {
    this.#owner = owner;
    this.#id = r.id;
    this.#prompt = r.prompt;
    // With max_tokens the reservation is a true bound, and the bill never exceeds it
    // (a failover's replayed prompt is the fleet's cost, not the tenant's).
    this.#cap = r.bounded ? r.reservedNusd : undefined;
    this.#discount = r.discount;
  }

  price(usage: TokenUsage, replica: string, durationMs: number, earlier?: readonly EarlierLeg[]): UsageExtension {
    const metered = this.#meterAll(usage, replica, durationMs, earlier);
    this.#priced = { usage, replica, earlier, metered };
    return { hardware: metered.hardware, energy_j: round(metered.energyJ), cost_usd: metered.costNusd / NUSD_PER_USD, device_s: round(metered.deviceSeconds) };
  }

  /** `usage` undefined: the final leg never produced anything (cancelled between legs). */
  #meterAll(usage: TokenUsage | undefined, replica: string | undefined, durationMs: number, earlier: readonly EarlierLeg[] | undefined): Metered {
    const final = this.#owner.meter(usage ?? { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }, replica, durationMs, this.#cap);
    const all = earlier === undefined || earlier.length === 0 ? final : sumMetered(final, earlier.map((leg) => this.#owner.meter(leg.usage, leg.replica, leg.durationMs, this.#cap)), this.#cap);
    return this.#discount === 0 ? all : { ...all, costNusd: Math.round(all.costNusd * (1 - this.#discount)) };
  }

  settle(s: Settlement): Promise<void> {
    this.#settled ??= this.#settle(s);
    return this.#settled;
  }

  async #settle(s: Settlement): Promise<void> {
    const { usage, estimated } = billable(s, this.#prompt);
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
      estimated,
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
      ...this.#twinColumns(s),
      ...(s.batchLine === undefined ? {} : { batchLine: s.batchLine }),
    });
  }

  /** What the twin needs of the row: the answering replica's setup and, where measured, the generation's timing. */
  #twinColumns(s: Settlement): { setup?: ReplicaSetup; timing?: GenerationTiming } {
    const setup = this.#owner.setupOf(s.replica);
    return { ...(setup === undefined ? {} : { setup }), ...(s.timing === undefined ? {} : { timing: s.timing }) };
  }
}


/** The client's error for an admission the store refused. */
function refusal(outcome: Exclude<AdmitOutcome, { ok: true }>, req: AdmissionRequest, tenantId: string, now: number): FlotillaError {
  switch (outcome.reason) {
    case "instance_gone":
      return new FlotillaError("engine_unavailable", "the usage ledger keeps unregistering this gateway process; retry shortly", { retryAfterS: 1 });
    case "unknown_tenant":
      return unauthorized(`tenant "${tenantId}" no longer exists`);
    case "max_tokens_required":
      return new FlotillaError("invalid_request", `tenant "${tenantId}" has a monthly budget, so every request must set max_tokens (it bounds what the request may cost)`, {
        param: req.endpoint === "chat" ? "max_completion_tokens" : "max_tokens",
      });
    case "limit": {
      const retryAfterS = outcome.resetAt === null ? 1 : Math.max(1, Math.ceil((outcome.resetAt - now) / 1000));
      return new FlotillaError("quota_exceeded", describeRefusal(outcome.state, outcome.limit, outcome.resetAt, now), { param: outcome.limit, retryAfterS });
    }
  }
}

/** A tenant setting checked against TENANT_RANGES: null when absent. */
function inRange(v: number | null | undefined, name: keyof typeof TENANT_RANGES): number | null {
  if (v === undefined || v === null) return null;
  const r: ValueRange = TENANT_RANGES[name];
  if (typeof v !== "number" || !(v >= r.min && v <= r.max) || (r.integer && !Number.isInteger(v))) throw invalid(name, `${name} must be ${describeRange(r)}`);
  return v;
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
