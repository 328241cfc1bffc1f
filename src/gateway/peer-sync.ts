/**
 * Gateways sharing a store tell each other what each routes: every
 * `syncMs`, each one broadcasts (store.broadcast: Postgres NOTIFY) where it
 * sent each prompt since the last message (a few block hashes per prompt,
 * scheduler/peer-hints.ts) and how many requests it has on each replica now.
 *
 * Behind a load balancer that spreads a conversation's turns over several
 * gateways, each one's prefix index alone sees a fraction of it, and each
 * one's load view alone misses the others' requests until the engines
 * report them. In the twin (bench/router-instances.ts, Mooncake over 8
 * replicas, 4 gateways) each gateway alone kept 57% of one router's block
 * hits and 40% of its sustainable rate; told every 50 ms, 99% and all of it.
 *
 * Wire format, one JSON object per NOTIFY (under 8,000 bytes, so a busy
 * interval is several): `{"g": sender, "c": [[replicaKey, inFlight], …],
 * "p": {model: [[replicaKey, depth, hash, depth, hash, …], …]}}`. `c`
 * holds every replica the sender has requests on, and a 0 for one it just
 * emptied; a receiver merges it. What a receiver has not heard again within
 * `expireMs` (a gateway that died, a message lost while its listener
 * reconnected) counts for nothing. A malformed message is dropped whole.
 */
import { randomUUID } from "node:crypto";
import type { PeerRow } from "../obs/observatory.js";
import { PeerHints, placementOf } from "../scheduler/peer-hints.js";
import { BROADCAST_MAX_BYTES, type Broadcast, type Store } from "../store/store.js";

export const PEER_CHANNEL = "flotilla_peers";
/** Models whose placements are kept: far more than one fleet serves. */
const MAX_MODELS = 1_024;

export interface PeerSyncOptions {
  /** Milliseconds between broadcasts (more than 0). */
  readonly syncMs: number;
  /** A peer, or one replica's count from it, not heard for this long counts for nothing (default max(1 s, 5 × syncMs)). */
  readonly expireMs?: number;
  readonly log: (message: string) => void;
  /** Milliseconds on a monotonic clock (default performance.now). */
  readonly now?: () => number;
}

interface Heard {
  n: number;
  at: number;
}

type Row = number[];

export class PeerSync {
  /** This gateway's name on the channel: its own messages come back, and are ignored. */
  readonly id = randomUUID();
  readonly #syncMs: number;
  readonly #expireMs: number;
  readonly #log: (message: string) => void;
  #broadcast: Broadcast | undefined;
  #own: () => ReadonlyMap<number, number> = () => new Map();
  /** Replicas with requests at the last broadcast: one that empties is sent as 0 once. */
  #lastSent = new Set<number>();
  #pending = new Map<string, Row[]>();
  /** Per peer, when it was last heard (whatever it said) and its counts by replica key. */
  readonly #peers = new Map<string, { at: number; readonly counts: Map<number, Heard> }>();
  readonly #hints = new Map<string, PeerHints>();
  #timer: NodeJS.Timeout | undefined;
  #malformed = false;
  /** The last broadcast failed: said once, until one works. */
  #failing = false;
  #flushing = false;
  readonly #now: () => number;
  #placementsHeard = 0;
  #waiters: { readonly n: number; readonly resolve: () => void }[] = [];

  constructor(opts: PeerSyncOptions) {
    if (!(opts.syncMs > 0) || !Number.isFinite(opts.syncMs)) throw new RangeError(`peer sync interval must be a positive number of ms, got ${opts.syncMs}`);
    this.#syncMs = opts.syncMs;
    this.#expireMs = opts.expireMs ?? Math.max(1_000, 5 * opts.syncMs);
    this.#log = opts.log;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Listens on the store's channel and broadcasts every interval; undefined where the store has no channel (SQLite). */
  static async start(store: Store, opts: PeerSyncOptions): Promise<PeerSync | undefined> {
    if (store.broadcast === undefined) return undefined;
    const sync = new PeerSync(opts);
    sync.#broadcast = await store.broadcast(PEER_CHANNEL, (payload) => sync.receive(payload));
    sync.#timer = setInterval(() => void sync.flush(), sync.#syncMs);
    sync.#timer.unref();
    return sync;
  }

  /** Where this gateway's own counts come from: requests in flight by replica key. */
  countOwn(own: () => ReadonlyMap<number, number>): void {
    this.#own = own;
  }

  /** This gateway sent a prompt of `blocks` of `model` to the replica `replicaKey`: the peers hear of it at the next broadcast. */
  placed(model: string, replicaKey: number, blocks: readonly number[]): void {
    if (blocks.length === 0) return;
    const row: Row = [replicaKey];
    for (const p of placementOf(replicaKey, blocks)) row.push(p.depth, p.tail);
    let rows = this.#pending.get(model);
    if (rows === undefined) this.#pending.set(model, (rows = []));
    rows.push(row);
  }

  /** What the peers placed of `model` that no prompt here has used yet. */
  hints(model: string): PeerHints | undefined {
    return this.#hints.get(model);
  }

  /** Requests the peers have on the replica `replicaKey`, as they last said. */
  inFlight(replicaKey: number): number {
    const now = this.#now();
    let n = 0;
    for (const { counts } of this.#peers.values()) {
      const heard = counts.get(replicaKey);
      if (heard !== undefined && now - heard.at <= this.#expireMs) n += heard.n;
    }
    return n;
  }

  /** One message from the channel (public for tests). */
  receive(payload: string): void {
    const message = parseMessage(payload);
    if (message === undefined) {
      if (!this.#malformed) this.#log(`peer sync: dropped a malformed message on ${PEER_CHANNEL} (${payload.slice(0, 80)})`);
      this.#malformed = true;
      return;
    }
    if (message.g === this.id) return;
    const now = this.#now();
    let peer = this.#peers.get(message.g);
    if (peer === undefined) this.#peers.set(message.g, (peer = { at: now, counts: new Map() }));
    peer.at = now;
    const { counts } = peer;
    for (const [key, n] of message.c) {
      if (n === 0) counts.delete(key);
      else counts.set(key, { n, at: now });
    }
    for (const [model, rows] of Object.entries(message.p)) {
      let hints = this.#hints.get(model);
      if (hints === undefined) {
        if (this.#hints.size >= MAX_MODELS) continue; // bounded memory, whatever the channel carries
        this.#hints.set(model, (hints = new PeerHints()));
      }
      for (const row of rows) for (let i = 1; i + 1 < row.length; i += 2) hints.add({ replica: row[0]!, depth: row[i]!, tail: row[i + 1]! });
      this.#placementsHeard += rows.length;
    }
    this.#forgetSilent(now);
    const waiting = [];
    for (const w of this.#waiters) {
      if (this.#placementsHeard > w.n) w.resolve();
      else waiting.push(w);
    }
    this.#waiters = waiting;
  }

  /** Prompts the peers have told this gateway they placed, in all. */
  get placementsHeard(): number {
    return this.#placementsHeard;
  }

  /** Resolves once more than `n` placements have been heard. */
  heardMoreThan(n: number): Promise<void> {
    if (this.#placementsHeard > n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  /** What /metrics shows of the peers (obs/observatory.ts PeerRow). */
  stats(): PeerRow {
    this.#forgetSilent(this.#now());
    return { gateways: this.#peers.size, placementsHeard: this.#placementsHeard, failing: this.#failing };
  }

  /** Drops what was not heard again within expireMs: a peer's counts one by one, and a peer gone silent whole. */
  #forgetSilent(now: number): void {
    for (const [id, { at, counts }] of this.#peers) {
      if (now - at > this.#expireMs) this.#peers.delete(id);
      else for (const [key, heard] of counts) if (now - heard.at > this.#expireMs) counts.delete(key);
    }
  }

  /**
   * Broadcasts what changed since the last call; nothing when idle. One at a
   * time: while a broadcast is stuck (a stalled database) the next intervals
   * skip, and their placements wait for the next one, so a stall holds one
   * pooled connection, not one per interval.
   */
  async flush(): Promise<void> {
    const broadcast = this.#broadcast;
    if (broadcast === undefined || this.#flushing) return;
    this.#flushing = true;
    try {
      await this.#send(broadcast);
    } finally {
      this.#flushing = false;
    }
  }

  async #send(broadcast: Broadcast): Promise<void> {
    const counts: [number, number][] = [];
    const sent = new Set<number>();
    for (const [key, n] of this.#own()) {
      if (n <= 0) continue;
      counts.push([key, n]);
      sent.add(key);
    }
    for (const key of this.#lastSent) if (!sent.has(key)) counts.push([key, 0]);
    this.#lastSent = sent;
    const pending = this.#pending;
    this.#pending = new Map();
    if (counts.length === 0 && pending.size === 0) return;
    try {
      for (const payload of encodeMessages(this.id, counts, pending)) await broadcast.publish(payload);
      if (this.#failing) this.#log("peer sync: broadcasting again");
      this.#failing = false;
    } catch (err) {
      // Once per outage, not every interval: the peers route on their own views meanwhile.
      if (!this.#failing) this.#log(`peer sync: broadcast failed, the peers route without this gateway's placements until it works again: ${(err as Error).message}`);
      this.#failing = true;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    const broadcast = this.#broadcast;
    this.#broadcast = undefined;
    await broadcast?.close();
  }
}

const COUNTS_PER_MESSAGE = 150;

/** The messages one interval's counts and placements take, each under BROADCAST_MAX_BYTES; the counts ride in the first. */
export function encodeMessages(sender: string, counts: readonly [number, number][], placements: ReadonlyMap<string, readonly Row[]>): string[] {
  const out: string[] = [];
  // A replica's count is at most ~40 bytes: a fleet past COUNTS_PER_MESSAGE replicas sends its counts alone, in parts.
  if (counts.length > COUNTS_PER_MESSAGE) {
    for (let i = 0; i < counts.length; i += COUNTS_PER_MESSAGE) out.push(JSON.stringify({ g: sender, c: counts.slice(i, i + COUNTS_PER_MESSAGE), p: {} }));
    counts = [];
  }
  let c: readonly [number, number][] = counts;
  let p: Record<string, Row[]> = {};
  // An upper bound of the message's length: the head, and each row and model name with its punctuation.
  const head = JSON.stringify({ g: sender, c: counts, p: {} }).length;
  let size = head;
  const send = (): void => {
    out.push(JSON.stringify({ g: sender, c, p }));
    c = [];
    p = {};
    size = head;
  };
  for (const [model, rows] of placements) {
    for (const row of rows) {
      const length = JSON.stringify(row).length + 1;
      const opening = p[model] === undefined ? JSON.stringify(model).length + 3 : 0;
      if (size > head && size + length + opening > BROADCAST_MAX_BYTES) send();
      (p[model] ??= []).push(row);
      size += length + (p[model].length === 1 ? JSON.stringify(model).length + 3 : 0);
    }
  }
  if (size > head || out.length === 0) send();
  return out;
}

interface Message {
  readonly g: string;
  readonly c: readonly (readonly [number, number])[];
  readonly p: Readonly<Record<string, readonly Row[]>>;
}

const isCount = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;

/** A peer's message, or undefined for anything that is not one. */
export function parseMessage(payload: string): Message | undefined {
  let m: unknown;
  try {
    m = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof m !== "object" || m === null) return undefined;
  const { g, c, p } = m as Record<string, unknown>;
  if (typeof g !== "string" || !Array.isArray(c) || typeof p !== "object" || p === null || Array.isArray(p)) return undefined;
  if (!c.every((e) => Array.isArray(e) && e.length === 2 && Number.isSafeInteger(e[0]) && isCount(e[1]))) return undefined;
  for (const rows of Object.values(p)) {
    if (!Array.isArray(rows)) return undefined;
    for (const row of rows) {
      if (!Array.isArray(row) || row.length < 3 || row.length % 2 === 0 || !row.every((x) => Number.isSafeInteger(x))) return undefined;
    }
  }
  return m as Message;
}
