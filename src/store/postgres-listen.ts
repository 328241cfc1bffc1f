/**
 * One connection that LISTENs on a Postgres channel for as long as the
 * process wants it. A pooled connection cannot listen (it goes back to the
 * pool), so this is a client of its own; when it breaks (a server restart,
 * a network cut) it reconnects with backoff, 100 ms doubling to 5 s, and
 * says so once per outage. Notifications sent while it was down are lost:
 * NOTIFY is not a queue, and what rides on it must tolerate that.
 */
import pg from "pg";

const FIRST_RETRY_MS = 100;
const LAST_RETRY_MS = 5_000;

export class PostgresListener {
  readonly #url: string;
  readonly #channel: string;
  readonly #onMessage: (payload: string) => void;
  readonly #onError: (err: Error) => void;
  #client: pg.Client | undefined;
  #closed = false;
  #retryMs = FIRST_RETRY_MS;
  #timer: NodeJS.Timeout | undefined;
  #down = false;

  private constructor(url: string, channel: string, onMessage: (payload: string) => void, onError: (err: Error) => void) {
    this.#url = url;
    this.#channel = channel;
    this.#onMessage = onMessage;
    this.#onError = onError;
  }

  /** Listening once it resolves; the first connection's failure rejects. */
  static async open(url: string, channel: string, onMessage: (payload: string) => void, onError: (err: Error) => void): Promise<PostgresListener> {
    const listener = new PostgresListener(url, channel, onMessage, onError);
    await listener.#connect();
    return listener;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, connectionTimeoutMillis: 10_000 });
    client.on("notification", (n) => {
      if (n.channel === this.#channel && n.payload !== undefined) this.#onMessage(n.payload);
    });
    client.on("error", () => undefined); // "end" follows, and reconnects
    client.on("end", () => this.#lost(client));
    try {
      await client.connect();
      // The channel is an identifier: quoted, so any name is safe.
      await client.query(`LISTEN "${this.#channel.replaceAll('"', '""')}"`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#retryMs = FIRST_RETRY_MS;
    if (this.#down) this.#onError(new Error(`listening on ${this.#channel} again`));
    this.#down = false;
  }

  #lost(client: pg.Client): void {
    if (this.#closed || this.#client !== client) return;
    this.#client = undefined;
    if (!this.#down) this.#onError(new Error(`the connection listening on ${this.#channel} broke; reconnecting`));
    this.#down = true;
    this.#retry();
  }

  #retry(): void {
    this.#timer = setTimeout(() => {
      this.#connect().catch(() => {
        if (this.#closed) return;
        this.#retryMs = Math.min(LAST_RETRY_MS, this.#retryMs * 2);
        this.#retry();
      });
    }, this.#retryMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}
