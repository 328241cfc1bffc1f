/**
 * The dashboard in a real browser: Debian's Chromium driven by
 * playwright-core, against a front gateway over real llama.cpp engines
 * running as separate processes (so one can be killed with SIGKILL).
 */
import { LLAMA2_ABSENT } from "../helpers.js";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { registerSimCommand } from "../../src/cli/sim-command.js";
import { freePort, post, startEngineProcess, startObserved, type ObservedGateway } from "./harness.js";

const CHROMIUM = "/usr/bin/chromium";
// Without the background-networking flags Chromium's own connections are refused on a closed network.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const PROBE_INTERVAL_MS = 1_000;
const TICK_MS = 250;
const SCREENSHOTS = process.env.FLOTILLA_SCREENSHOT_DIR ?? join(tmpdir(), "flotilla-ui-screenshots");

describe("the /ui dashboard in headless Chromium", { skip: LLAMA2_ABSENT || (existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`) }, () => {
  const engines: ChildProcess[] = [];
  let front: ObservedGateway;
  let context: BrowserContext;
  let page: Page;
  let userDataDir: string;
  let simDir: string;
  const pageErrors: string[] = [];
  const foreignRequests: string[] = [];

  before(async () => {
    userDataDir = await mkdtemp(join(tmpdir(), "flotilla-chromium-"));
    simDir = await mkdtemp(join(tmpdir(), "flotilla-ui-sim-"));
    await mkdir(SCREENSHOTS, { recursive: true });
    const ports = [await freePort(), await freePort()];
    const [started, browser] = await Promise.all([Promise.all(ports.map(startEngineProcess)), chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 1000 } }), writeSimReport(simDir)]);
    engines.push(...started);
    context = browser;
    front = await startObserved(
      {
        models: [
          {
            name: "m",
            replicas: ports.map((port) => ({ engine: "openai", url: `http://127.0.0.1:${port}`, upstream_model: "llama-2-tiny-random", timeout_ms: 5_000, probe_interval_ms: PROBE_INTERVAL_MS, parallel: 2, context: 512 })),
          },
        ],
      },
      { observability: { tickMs: TICK_MS, simReports: [simDir] } },
    );
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    page.on("console", (msg) => {
      if (msg.type() === "error") pageErrors.push(msg.text());
    });
    page.on("request", (req) => {
      if (!req.url().startsWith(front.url)) foreignRequests.push(req.url());
    });
  });

  after(async () => {
    await context?.close();
    await front?.close();
    for (const e of engines) e.kill("SIGKILL");
    await rm(userDataDir, { recursive: true, force: true });
    await rm(simDir, { recursive: true, force: true });
  });

  it("shows the replicas, then its counters move with traffic, without reloading", async (t) => {
    await page.goto(`${front.url}/ui`);
    await page.waitForSelector('[data-replica="m/0"][data-health="healthy"]');
    await page.waitForSelector('[data-replica="m/1"][data-health="healthy"]');
    await page.waitForSelector('#connection[data-connection="live"]');
    assert.equal(await page.locator('section.island[data-hardware="remote"] [data-replica]').count(), 2, "replicas grouped by hardware");
    assert.equal(await page.textContent("#kpi-requests"), "0");
    assert.equal(await page.textContent("#kpi-availability"), "100%");
    // These replicas name no hardware: no physical limit, and the page says why rather than showing 0%.
    assert.equal(await page.textContent("#kpi-efficiency"), "—");
    assert.match((await page.textContent("#efficiency-explain")) ?? "", /names its hardware/);
    await page.evaluate(() => Object.assign(globalThis, { __sameDocument: true }));

    const replies = await Promise.all([
      ...[0, 1, 2].map((i) => post(front.url, "/v1/completions", { model: "m", prompt: `The fleet ${i}`, max_tokens: 24 })),
      ...[0, 1, 2].map((i) => post(front.url, "/v1/chat/completions", { model: "m", messages: [{ role: "user", content: `Hello ${i}` }], max_tokens: 24, stream: true })),
    ]);
    for (const r of replies) assert.equal(r.status, 200);

    await until(async () => (await page.textContent("#kpi-requests")) === "6", 5_000, "six requests on the page");
    await until(async () => Number((await page.textContent("#kpi-outputTokens"))?.replaceAll(",", "")) > 0, 5_000, "output tokens on the page");
    assert.equal(await page.evaluate(() => (globalThis as { __sameDocument?: boolean }).__sameDocument), true, "updated live, not reloaded");
    const tokens = Number((await page.textContent("#kpi-outputTokens"))?.replaceAll(",", ""));
    assert.ok(tokens >= 6 && tokens <= 6 * 24, `output tokens ${tokens}`);
    // The TTFT histogram has its six requests, and the throughput chart has a line.
    await until(async () => (await page.locator("#chart-ttft rect").evaluateAll((rects) => rects.filter((r) => Number(r.getAttribute("height")) > 0).length)) > 0, 5_000, "TTFT bars");
    assert.ok((await page.locator("#chart-throughput path").count()) >= 1);
    assert.notEqual(await page.textContent("#kpi-p99TtftS"), "—");
    const shot = join(SCREENSHOTS, "fleet-live.png");
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
  });

  it("shows a replica killed with SIGKILL as unhealthy within its probe interval", async (t) => {
    const killed = Date.now();
    engines[1]!.kill("SIGKILL");
    await page.waitForSelector('[data-replica="m/1"][data-health="unhealthy"]', { timeout: PROBE_INTERVAL_MS + 5_000 });
    const tookMs = Date.now() - killed;
    t.diagnostic(`unhealthy on the page ${tookMs} ms after the kill (probe interval ${PROBE_INTERVAL_MS} ms, page ticks ${TICK_MS} ms)`);
    // At most one probe interval for the probe to fail, one tick to reach the page, and slack for a busy 2-core machine.
    assert.ok(tookMs <= PROBE_INTERVAL_MS + TICK_MS + 750, `took ${tookMs} ms`);
    assert.equal(await page.getAttribute('[data-replica="m/1"]', "data-state"), "not-ready");
    assert.equal(await page.getAttribute('[data-replica="m/0"]', "data-health"), "healthy");
    // The fleet still serves, and the page says what the outage costs.
    assert.equal((await post(front.url, "/v1/completions", { model: "m", prompt: "still here", max_tokens: 8 })).status, 200);
    await until(async () => ((await page.textContent("#fleet-summary")) ?? "").includes("1 of 2 replicas up"), 3_000, "the summary to count the loss");
    const shot = join(SCREENSHOTS, "fleet-replica-killed.png");
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
  });

  it("opens a flotilla sim report in the same page, with the same charts", async (t) => {
    await page.click('#nav a[data-view="sim/0"]');
    await until(async () => ((await page.textContent("#title")) ?? "").startsWith("Simulated fleet"), 5_000, "the sim report's title");
    await page.waitForSelector('#connection[data-connection="report"]');
    assert.equal(await page.locator("[data-replica]").count(), 3, "one card per simulated replica");
    assert.equal(await page.locator('section.island[data-hardware^="h100"]').count(), 1);
    // The twin knows every replica's hardware: its efficiency against the physical limit, and each card's.
    assert.match((await page.textContent("#kpi-efficiency")) ?? "", /^\d+(\.\d+)?%$/);
    assert.match((await page.textContent("#efficiency-explain")) ?? "", /datasheet bandwidth and FLOPS/);
    assert.equal(await page.locator('[data-replica] .row .k:text-is("efficiency")').count(), 3);
    assert.match((await page.textContent("#kpi-p99TtftS")) ?? "", /\d/);
    for (const chart of ["#chart-throughput", "#chart-queue", "#chart-value"]) assert.ok((await page.locator(`${chart} path`).count()) >= 1, `${chart} has lines`);
    assert.ok((await page.locator("#chart-ttft rect").count()) > 3, "the TTFT distribution, from requests.csv");
    const shot = join(SCREENSHOTS, "sim-report.png");
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);

    // And back to the live fleet.
    await page.click('#nav a[data-view="live"]');
    await page.waitForSelector('#connection[data-connection="live"]');
    await page.waitForSelector('[data-replica="m/0"]');
  });

  it("loads nothing from anywhere else, and raises no errors (the page's CSP would report any)", () => {
    assert.deepEqual(foreignRequests, []);
    assert.deepEqual(pageErrors, []);
  });
});

/** Polls an async check (no script evaluated from strings: the page's CSP forbids eval). */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `flotilla sim --out DIR` in-process: a small synthetic run with failures. */
async function writeSimReport(dir: string): Promise<void> {
  const quiet = { write: () => true };
  const program = new Command().exitOverride();
  registerSimCommand(program, { stdout: quiet, stderr: { ...quiet, isTTY: false, columns: 80 } });
  await program.parseAsync(["node", "flotilla", "sim", "--synthetic", "--requests", "600", "--rate", "30", "--model", "llama-3.1-8b", "--hw", "h100", "--replicas", "3", "--mtbf", "8", "--repair", "3", "--no-progress", "--out", dir]);
}
