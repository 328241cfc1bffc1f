/**
 * Scraping an engine's own /metrics: the report kept and its age, and every
 * way a scrape fails (no /metrics, text that is not metrics, a /metrics that
 * never answers), each logged once, none fatal. The logging rules are driven
 * scrape by scrape (no timers, long timeouts), so a busy test machine cannot
 * slip a timeout between two of them; the engine's own timers after.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Pool } from "undici";
import { MetricsScraper } from "../../src/engines/metrics-scraper.js";
import { OpenAIEngine, type OpenAIEngineOptions } from "../../src/engines/openai.js";
import { eventually } from "../helpers.js";
import { startMetricsUpstream, vllmText, type MetricsAnswer, type MetricsUpstream } from "./metrics-upstream.js";

const INTERVAL_MS = 50;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const closing: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closing.reverse()) await close();
});

async function upstream(metrics: MetricsAnswer): Promise<MetricsUpstream> {
  const up = await startMetricsUpstream(metrics);
  closing.push(() => up.close());
  return up;
}

describe("a scrape, one at a time", () => {
  /** A scraper over its own pool that only scrapes when told; its log lines kept. */
  async function scraper(metrics: MetricsAnswer, token?: string): Promise<{ up: MetricsUpstream; s: MetricsScraper; logs: string[] }> {
    const up = await upstream(metrics);
    const pool = new Pool(up.url);
    closing.push(() => pool.close());
    const logs: string[] = [];
    // A long interval: a 2 s timeout, and reports that stay fresh through the test.
    const s = new MetricsScraper({ pool, origin: up.url, model: "m", intervalMs: 60_000, ...(token === undefined ? {} : { token }), name: "m/0", log: (m) => logs.push(m), own: () => ({ active: 0, sent: 0 }) });
    return { up, s, logs };
  }
  const times = async (n: number, s: MetricsScraper): Promise<void> => {
    for (let i = 0; i < n; i++) await s.scrape();
  };

  it("logs a server without /metrics once, not every scrape, and once more when it comes back", async () => {
    const { up, s, logs } = await scraper({ status: 404, body: "Not Found" });
    await times(5, s);
    // llama-server without --metrics answers 501: the same case, not logged again.
    up.metrics = { status: 501, body: '{"error":{"code":501,"message":"This server does not support metrics endpoint. Start it with `--metrics`"}}' };
    await times(3, s);
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0]!, /^m\/0: http:\/\/127\.0\.0\.1:\d+\/metrics answers 404: the engine exports no metrics \(SGLang needs --enable-metrics, llama-server --metrics\); routing counts only the requests gateways sent there$/);
    assert.equal(s.fresh(), undefined);
    up.metrics = { status: 200, body: vllmText("m", 1, 2, 0.25) };
    await times(2, s);
    assert.deepEqual(logs.slice(1), [`m/0: ${up.url}/metrics reports load again (vllm)`]);
    assert.deepEqual(s.fresh()?.report, { dialect: "vllm", running: 1, waiting: 2, kvUsage: 0.25 });
  });

  it("logs text that is not metrics once, naming the replica and the line; then metrics with no load gauge, once", async () => {
    const { up, s, logs } = await scraper({ status: 200, body: "<!doctype html>\n<html><body>It works!</body></html>\n" });
    await times(4, s);
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0]!, /^m\/0: .*\/metrics is not Prometheus text \(line 1: expected a metric name: "<!doctype html>"\); routing counts only/);
    up.metrics = { status: 200, body: "# TYPE up gauge\nup 1\n" };
    await times(3, s);
    assert.equal(logs.length, 2);
    assert.match(logs[1]!, /has no load gauge of vLLM, SGLang, llama-server or Flotilla for model m/);
    assert.equal(s.fresh(), undefined);
  });

  it("asks for credentials it is given, and says so when the server wants them", async () => {
    const { up, s, logs } = await scraper({ status: 401, body: "" }, "adm");
    await times(2, s);
    assert.equal(up.scrapes.authorization, "Bearer adm");
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /answers 401: it wants a credential/);
  });
});

describe("the openai engine's scrapes", () => {
  /** An engine scraping a fresh upstream every INTERVAL_MS, named m/0 unless `unnamed`, its log lines kept. */
  async function scraped(metrics: MetricsAnswer, { unnamed = false, ...opts }: Partial<OpenAIEngineOptions> & { unnamed?: boolean } = {}): Promise<{ up: MetricsUpstream; engine: OpenAIEngine; logs: string[] }> {
    const up = await upstream(metrics);
    const logs: string[] = [];
    const base = { url: up.url, upstreamModel: "m", parallel: 4, maxQueue: 8, metricsIntervalMs: INTERVAL_MS, log: (m: string) => void logs.push(m) };
    const engine = new OpenAIEngine({ ...base, ...(unnamed ? {} : { name: "m/0" }), ...opts });
    await engine.start();
    return { up, engine, logs };
  }
  const closeLater = (engine: OpenAIEngine): void => void closing.push(() => engine.close());

  async function chat(engine: OpenAIEngine): Promise<string> {
    let text = "";
    await engine.generate({ id: "t", prompt: { kind: "chat", messages: [{ role: "user", content: "hi" }] }, sampling: { maxTokens: 4 } }, (t) => (text += t), AbortSignal.timeout(5_000));
    return text;
  }

  it("joins the server's report to its own counts, with the report's age, until the report goes stale", async () => {
    const { up, engine, logs } = await scraped({ status: 200, body: vllmText("m", 2, 30, 0.5) });
    closeLater(engine);
    await eventually(() => engine.load().reported !== undefined, "a report", 5_000);
    const load = engine.load();
    assert.deepEqual({ ...load, reported: { ...load.reported!, ageMs: 0 } }, {
      active: 2,
      // 30 waiting there, capped under this gateway's own bound: slots 4 + queue 8.
      queued: 9,
      slots: 4,
      maxQueue: 8,
      own: { active: 0, queued: 0 },
      reported: { running: 2, waiting: 30, kvUsage: 0.5, ageMs: 0 },
    });
    assert.ok(load.reported!.ageMs >= 0 && load.reported!.ageMs <= 3 * INTERVAL_MS);
    // The server stops exporting metrics (a restart without the flag): within three intervals only own counts remain.
    up.metrics = { status: 404, body: "Not Found" };
    await eventually(() => engine.load().reported === undefined, "the report to go stale", 5_000);
    assert.deepEqual(engine.load(), { active: 0, queued: 0, slots: 4, maxQueue: 8 });
    await eventually(() => logs.some((l) => /answers 404/.test(l)), "the 404 logged", 5_000);
  });

  it("gives up on a /metrics that never answers within its timeout, one scrape at a time, and goes on serving", async () => {
    const { up, engine, logs } = await scraped("hang");
    closeLater(engine);
    await eventually(() => up.scrapes.count >= 3, "three timed-out scrapes", 5_000);
    assert.equal(up.scrapes.maxOpen, 1, "a hanging scrape is never joined by another");
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0]!, /^m\/0: .*\/metrics did not answer within 250 ms/);
    assert.equal(await chat(engine), "ok", "generation is not held up by the hanging scrape");
  });

  it("closes at once with a scrape in flight, and scrapes no more", async () => {
    // A 2 s interval gives the hanging scrape a 2 s timeout: close must not wait for it.
    const { up, engine } = await scraped("hang", { metricsIntervalMs: 2_000 });
    await eventually(() => up.scrapes.open === 1, "a scrape in flight", 2_000);
    const t = performance.now();
    await engine.close();
    assert.ok(performance.now() - t < 1_000, "close does not wait for the scrape in flight");
    await eventually(() => up.scrapes.open === 0, "the scrape's connection to close", 1_000);
    await sleep(4 * INTERVAL_MS);
    assert.equal(up.scrapes.count, 1, "no scrape after close");
  });

  it("sends the metrics token, else the API key, as a bearer token; scrapes nothing when the interval is 0", async () => {
    const token = await scraped({ status: 200, body: vllmText("m", 0, 0) }, { apiKey: "key", metricsToken: "adm" });
    const key = await scraped({ status: 200, body: vllmText("m", 0, 0) }, { apiKey: "key" });
    const none = await scraped({ status: 200, body: vllmText("m", 0, 0) }, { metricsIntervalMs: 0 });
    for (const e of [token, key, none]) closeLater(e.engine);
    await eventually(() => token.up.scrapes.count > 0 && key.up.scrapes.count > 0, "scrapes", 5_000);
    assert.equal(token.up.scrapes.authorization, "Bearer adm");
    assert.equal(key.up.scrapes.authorization, "Bearer key");
    await sleep(4 * INTERVAL_MS);
    assert.equal(none.up.scrapes.count, 0);
    assert.equal(none.engine.load().reported, undefined);
  });

  it("names the replica by its model when it is given no name, beside the server's URL", async () => {
    const { engine, logs } = await scraped({ status: 404, body: "" }, { unnamed: true });
    closeLater(engine);
    await eventually(() => logs.some((l) => /answers 404/.test(l)), "the log line", 5_000);
    assert.match(logs.find((l) => /answers 404/.test(l))!, /^m: http:\/\/127\.0\.0\.1:\d+\/metrics answers 404/);
  });
});
