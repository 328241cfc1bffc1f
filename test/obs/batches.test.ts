/**
 * The dashboard's Batches panel: /ui/api/live and its events carry each
 * recent batch with how far its lines have got (null where the server keeps
 * no batches), the feed reads the store at most every few seconds and keeps
 * what it had when a read fails, and in headless Chromium the panel shows a
 * batch's progress reach all of its lines without a reload.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI, { toFile } from "openai";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import type { Clock } from "../../src/core/clock.js";
import { BatchFeed, type BatchSummary } from "../../src/obs/batches.js";
import { eventually, startGateway, tinyFleet } from "../helpers.js";
import { sqliteBackend, startTenantGateway, type TenantGateway } from "../metering/harness.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const TICK_MS = 100;

type Live = { batches: BatchSummary[] | null };

const chatLine = (customId: string): string =>
  JSON.stringify({ custom_id: customId, method: "POST", url: "/v1/chat/completions", body: { model: "tiny", messages: [{ role: "user", content: `hi ${customId}` }], max_tokens: 4 } });

async function live(url: string): Promise<Live> {
  const res = await fetch(`${url}/ui/api/live`);
  assert.equal(res.status, 200);
  return (await res.json()) as Live;
}

/** A batch of three chat lines. */
async function createBatch(client: OpenAI): Promise<OpenAI.Batches.Batch> {
  const input = await client.files.create({ file: await toFile(Buffer.from(["a", "b", "c"].map(chatLine).join("\n") + "\n"), "in.jsonl"), purpose: "batch" });
  return client.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
}

/** Reads the page's server-sent events until one satisfies `check`, for up to `ms`. */
async function eventUntil(url: string, check: (e: Live) => boolean, ms: number): Promise<Live> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    const res = await fetch(`${url}/ui/api/events`, { signal: abort.signal });
    let text = "";
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (!block.startsWith("data: ")) continue;
        const event = JSON.parse(block.slice(6)) as Live;
        if (check(event)) return event;
      }
    }
    throw new Error("the event stream ended");
  } catch (err) {
    if (abort.signal.aborted) throw new Error(`no event satisfied the check in ${ms} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

const finished = (b: BatchSummary | undefined): boolean => b !== undefined && b.status === "completed" && b.done === 3;

describe("the Batches panel's data", () => {
  let db: Awaited<ReturnType<typeof sqliteBackend.fresh>>;
  let gw: TenantGateway;
  let client: OpenAI;
  before(async () => {
    db = await sqliteBackend.fresh();
    gw = await startTenantGateway(db.url, { batches: { headroomSlots: 0 }, gateway: { observability: { tickMs: TICK_MS } } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await gw?.close();
    await db?.drop();
  });

  it("lists each batch in /ui/api/live with its tenant, status and lines, up to all of them done; the events carry it too", async () => {
    assert.deepEqual((await live(gw.url)).batches, []);
    const batch = await createBatch(client);
    const first = (await live(gw.url)).batches?.find((b) => b.id === batch.id);
    assert.ok(first !== undefined, "a new batch is in the next snapshot");
    assert.equal(first.tenant, "anonymous");
    assert.equal(first.endpoint, "/v1/chat/completions");
    assert.equal(first.total, 3);
    assert.equal(Math.floor(first.createdAt / 1000), batch.created_at);
    assert.equal(first.pending + first.running + first.completed + first.failed + first.cancelled + first.expired, 3);

    await eventually(async () => finished((await live(gw.url)).batches?.find((b) => b.id === batch.id)), `${batch.id} to complete in /ui/api/live`, 60_000);
    const done = (await live(gw.url)).batches!.find((b) => b.id === batch.id)!;
    assert.deepEqual({ ...done, createdAt: 0 }, { id: batch.id, tenant: "anonymous", status: "completed", endpoint: "/v1/chat/completions", createdAt: 0, total: 3, done: 3, pending: 0, running: 0, completed: 3, failed: 0, cancelled: 0, expired: 0 });

    const event = await eventUntil(gw.url, (e) => finished(e.batches?.find((b) => b.id === batch.id)), 10_000);
    assert.equal(event.batches![0]!.id, batch.id, "newest first");
  });

  it("is null where the server keeps no batches (no panel)", async () => {
    const plain = await startGateway(tinyFleet());
    try {
      assert.equal((await live(plain.url)).batches, null);
    } finally {
      await plain.close();
    }
  });
});

describe("the batch feed", () => {
  /** A clock the test moves by hand. */
  const clock = (): Clock & { t: number } => {
    const c = { t: 0, now: () => c.t, epochMs: () => c.t, sleep: async () => {}, after: () => () => {} };
    return c;
  };
  const summary = (id: string): BatchSummary => ({ id, tenant: "t", status: "in_progress", endpoint: "/v1/chat/completions", createdAt: 0, total: 1, done: 0, pending: 1, running: 0, completed: 0, failed: 0, cancelled: 0, expired: 0 });

  it("reads the store at most once per interval for the events, afresh for a first snapshot, and keeps the last batches when a read fails", async () => {
    const c = clock();
    let reads = 0;
    let fail = false;
    const errors: string[] = [];
    const feed = new BatchFeed(
      async () => {
        reads++;
        if (fail) throw new Error("store down");
        return [summary(`b${reads}`)];
      },
      c,
      2000,
      (err) => errors.push(err.message),
    );
    assert.deepEqual((await feed.fresh()).map((b) => b.id), ["b1"]);
    for (let i = 0; i < 5; i++) feed.current();
    c.t = 1999;
    feed.current();
    assert.equal(reads, 1, "no read within the interval");
    c.t = 2000;
    feed.current();
    await eventually(() => feed.current()[0]?.id === "b2", "the second read");
    assert.equal(reads, 2);

    fail = true;
    c.t = 4000;
    feed.current();
    await eventually(() => errors.length === 1, "the failed read to be reported");
    assert.deepEqual(feed.current().map((b) => b.id), ["b2"], "what was read before");
    assert.equal(reads, 3);
    c.t = 5000;
    feed.current();
    assert.equal(reads, 3, "a failed read waits its interval too");
    assert.deepEqual(errors, ["store down"]);
  });
});

describe("the Batches panel in headless Chromium", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let db: Awaited<ReturnType<typeof sqliteBackend.fresh>>;
  let gw: TenantGateway;
  let client: OpenAI;
  let context: BrowserContext;
  let page: Page;
  let userDataDir: string;
  const pageErrors: string[] = [];

  before(async () => {
    userDataDir = await mkdtemp(join(tmpdir(), "flotilla-chromium-"));
    db = await sqliteBackend.fresh();
    [gw, context] = await Promise.all([
      startTenantGateway(db.url, { batches: { headroomSlots: 0 }, gateway: { observability: { tickMs: TICK_MS } } }),
      chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 1000 } }),
    ]);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    page.on("console", (msg) => {
      if (msg.type() === "error") pageErrors.push(msg.text());
    });
  });
  after(async () => {
    await context?.close();
    await gw?.close();
    await db?.drop();
    await rm(userDataDir, { recursive: true, force: true });
  });

  it("shows a batch created while the page is open, and its progress up to all of its lines, without reloading", async () => {
    await page.goto(`${gw.url}/ui`);
    await page.waitForSelector('#connection[data-connection="live"]');
    await page.waitForSelector("#batches-panel:not([hidden])");
    assert.equal(await page.textContent("#batches-summary"), "· none yet");
    await page.evaluate(() => Object.assign(globalThis, { __sameDocument: true }));

    const batch = await createBatch(client);
    const row = `#batches tr[data-batch="${batch.id}"]`;
    await page.waitForSelector(`${row}[data-status="completed"]`, { timeout: 30_000 });
    await eventually(async () => (await page.textContent(`${row} .done`)) === "3/3 · 100%", "the row to show 3/3", 10_000);
    assert.equal(await page.textContent(`${row} td:nth-child(2)`), "anonymous");
    assert.equal(await page.textContent(`${row} td.completed`), "3");
    assert.equal(await page.textContent(`${row} td.failed`), "0");
    const width = await page.locator(`${row} .bar .fill`).first().evaluate((el) => (el as unknown as { style: { width: string } }).style.width);
    assert.equal(width, "100%");
    assert.equal(await page.evaluate(() => (globalThis as { __sameDocument?: boolean }).__sameDocument), true, "updated live, not reloaded");
    assert.deepEqual(pageErrors, []);
  });
});
