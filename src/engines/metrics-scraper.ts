import type { Dispatcher } from "undici";
import { NO_LONGER_NEEDED } from "../core/abort.js";
import { readReport, type EngineReport } from "./engine-metrics.js";
import { ExpositionError, parseExposition } from "./prometheus-text.js";

export interface ScraperOptions {
  /** The engine's own connection pool: a scrape rides its keep-alive connections. */
  readonly pool: Dispatcher;
  /** The server's origin, for messages. */
  readonly origin: string;
  /** The model's name on the server: series of other models are not read (engine-metrics.ts). */
  readonly model: string;
  /** Milliseconds between the end of one scrape and the start of the next; more than 0. */
  readonly intervalMs: number;
  /** Bearer token for /metrics (a Flotilla upstream's admin token; llama-server's API key). */
  readonly token?: string;
  /** Names the replica in log lines. */
  readonly name: string;
  readonly log: (message: string) => void;
  /** This gateway's requests on the engine now, and how many it has sent in all. */
  readonly own: () => { readonly active: number; readonly sent: number };
  /** Requests other gateways said they have on the engine now (gateway/peer-sync.ts); absent: none are heard. */
  readonly peers?: () => number;
}

/** The last report while it is fresh. */
export interface FreshReport {
  readonly report: EngineReport;
  /** Requests of this gateway's own on the engine when the report was taken: its share of the report. */
  readonly ownAtReport: number;
  /** Requests the other gateways said they had there when the scrape started. */
  readonly peersAtReport: number;
  readonly ageMs: number;
}

type Outcome = { readonly ok: true; readonly report: EngineReport; readonly ownAtReport: number; readonly peersAtReport: number } | { readonly ok: false; readonly kind: string; readonly message: string };

/** What one scrape may hold in memory: far more than an engine's /metrics, a bound against an endpoint that streams without end. */
const MAX_BYTES = 8 * 1024 * 1024;
/** The reason a scrape past its time is aborted with, made once (core/abort.ts). */
const SCRAPE_TIMED_OUT: Error = new Error("the scrape timed out");

/**
 * Scrapes an engine's Prometheus endpoint every `intervalMs` and keeps its
 * last load report. A report older than three intervals is stale and not
 * given out, so a replica whose endpoint stops answering falls back to the
 * gateway's own counts within three intervals. A scrape that fails (no
 * /metrics, text that is not Prometheus, no load gauge, a timeout) is logged
 * once, when it starts failing that way, and once more when scrapes work
 * again; never every interval, and never thrown.
 */
export class MetricsScraper {
  readonly #o: ScraperOptions;
  /** The interval within 250 ms … 2 s: short, so a /metrics that hangs holds one pooled connection only briefly. */
  readonly #timeoutMs: number;
  #last: { readonly report: EngineReport; readonly ownAtReport: number; readonly peersAtReport: number; readonly at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: AbortController | undefined;
  #stopped = false;
  /** The kind of failure last logged; undefined while scrapes succeed. */
  #failing: string | undefined;

  constructor(opts: ScraperOptions) {
    this.#o = opts;
    this.#timeoutMs = Math.min(2_000, Math.max(250, opts.intervalMs));
  }

  /** Scrapes now, then every interval after each scrape ends: never two at once (a second start is ignored). */
  start(): void {
    if (this.#timer === undefined) this.#schedule(0);
  }

  /** Stops the timer and aborts a scrape in flight, so the pool can close at once. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#inFlight?.abort(NO_LONGER_NEEDED);
  }

  fresh(): FreshReport | undefined {
    const last = this.#last;
    if (last === undefined) return undefined;
    const ageMs = performance.now() - last.at;
    return ageMs > 3 * this.#o.intervalMs ? undefined : { report: last.report, ownAtReport: last.ownAtReport, peersAtReport: last.peersAtReport, ageMs };
  }

  /** One scrape; resolves when it has been recorded or logged. */
  async scrape(): Promise<void> {
    const outcome = await this.#fetch();
    if (this.#stopped) return;
    if (outcome.ok) {
      this.#last = { report: outcome.report, ownAtReport: outcome.ownAtReport, peersAtReport: outcome.peersAtReport, at: performance.now() };
      if (this.#failing !== undefined) this.#o.log(`${this.#o.name}: ${this.#where()} reports load again (${outcome.report.dialect})`);
      this.#failing = undefined;
      return;
    }
    if (outcome.kind !== this.#failing) this.#o.log(`${this.#o.name}: ${outcome.message}`);
    this.#failing = outcome.kind;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.scrape().then(() => this.#schedule(this.#o.intervalMs)), delayMs);
    this.#timer.unref();
  }

  async #fetch(): Promise<Outcome> {
    const controller = new AbortController();
    this.#inFlight = controller;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(SCRAPE_TIMED_OUT);
    }, this.#timeoutMs);
    timer.unref();
    // The gateway's share of the report, at most: its requests on the engine when the scrape starts, and every one it sends
    // before the answer (the engine may have counted any of them, even one that has ended since).
    const before = this.#o.own();
    const peers = this.#o.peers?.() ?? 0;
    try {
      const headers: Record<string, string> = { accept: "text/plain;version=0.0.4" };
      if (this.#o.token !== undefined) headers.authorization = `Bearer ${this.#o.token}`;
      const res = await this.#o.pool.request({ method: "GET", path: "/metrics", headers, signal: controller.signal });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return this.#refused(res.statusCode);
      }
      const text = await readLimited(res.body, MAX_BYTES);
      return this.#read(text, before.active + this.#o.own().sent - before.sent, peers);
    } catch (err) {
      if (timedOut) return this.#failure("timeout", `${this.#where()} did not answer within ${this.#timeoutMs} ms`);
      if (err instanceof TooLarge) return this.#failure("too-large", `${this.#where()} sent more than ${MAX_BYTES} bytes`);
      return this.#failure("unreachable", `cannot scrape ${this.#where()}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
  }

  #read(text: string, ownAtReport: number, peersAtReport: number): Outcome {
    let report: EngineReport | undefined;
    try {
      report = readReport(parseExposition(text), this.#o.model);
    } catch (err) {
      if (!(err instanceof ExpositionError)) throw err;
      return this.#failure("unparsable", `${this.#where()} is not Prometheus text (${err.message})`);
    }
    if (report === undefined) return this.#failure("unknown", `${this.#where()} has no load gauge of vLLM, SGLang, llama-server or Flotilla for model ${this.#o.model}`);
    return { ok: true, report, ownAtReport, peersAtReport };
  }

  #refused(status: number): Outcome {
    if (status === 404 || status === 501) {
      // SGLang mounts /metrics only with --enable-metrics; llama-server answers 501 without --metrics.
      return this.#failure("absent", `${this.#where()} answers ${status}: the engine exports no metrics (SGLang needs --enable-metrics, llama-server --metrics)`);
    }
    if (status === 401 || status === 403) {
      return this.#failure("denied", `${this.#where()} answers ${status}: it wants a credential (a Flotilla upstream: its admin token, as the replica's metrics token)`);
    }
    return this.#failure(`status ${status}`, `${this.#where()} answers ${status}`);
  }

  #failure(kind: string, message: string): Outcome {
    return { ok: false, kind, message: `${message}; routing counts only the requests gateways sent there` };
  }

  #where(): string {
    return `${this.#o.origin}/metrics`;
  }
}

class TooLarge extends Error {}

async function readLimited(body: AsyncIterable<unknown>, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    // Throwing here ends the iteration, which destroys the body: the rest is never read.
    if (size > limit) throw new TooLarge();
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString("utf8");
}
