import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import { estimate, findHardware, findModel, findPrecision } from "../../src/hardware/index.js";
import { parseFleetConfig, ConfigError } from "../../src/fleet/config.js";
import { isLoopbackHost } from "../../src/core/loopback.js";
import { rateBookFromConfig, storeUrl } from "../../src/metering/config.js";
import { RateBook, meter, rateCard, routeHints, unpriced, worstCase } from "../../src/metering/pricing.js";
import { routeConstants } from "../../src/scheduler/constants.js";
import { resolveSimFleet } from "../../src/sim/fleet-file.js";
import { promptTokenBound } from "../../src/core/request.js";
import { TINY_MODEL } from "./harness.js";

const h100 = rateCard({ model: findModel("llama-3.1-8b"), hardware: findHardware("h100"), precision: findPrecision("bf16"), tp: 1, slots: 64 });

describe("pricing from the hardware model", () => {
  test("a generated token costs what the hardware model says a token costs at that batch", () => {
    const e = estimate({ model: "llama-3.1-8b", hardware: "h100", precision: "bf16", batch: 64, inputTokens: 1, outputTokens: 1024 });
    const perMTok = (h100.nusdPerOutputToken * 1e6) / 1e9;
    // Same order as the estimate's steady-state $/Mtok (which also folds in prefill and a changing context).
    assert.ok(perMTok > e.usdPerMTok / 3 && perMTok < e.usdPerMTok * 3, `${perMTok} vs ${e.usdPerMTok}`);
    assert.ok(h100.joulesPerOutputToken > 0.01 && h100.joulesPerOutputToken < 10, `${h100.joulesPerOutputToken} J/token`);
    // Prefill is batched compute: far cheaper per token than decode.
    assert.ok(h100.nusdPerInputToken < h100.nusdPerOutputToken);
    assert.ok(h100.nusdPerCachedToken <= h100.nusdPerInputToken);
    // More devices, same work: dearer per token (a 70B on tp=4 is dearer still).
    const tp2 = rateCard({ model: findModel("llama-3.1-8b"), hardware: findHardware("h100"), precision: findPrecision("bf16"), tp: 2, slots: 64 });
    assert.equal(tp2.devices, 2);
  });

  test("metering: cached prompt tokens are cheaper, device-seconds are shared by concurrent sequences", () => {
    const m = meter(h100, { promptTokens: 1000, cachedTokens: 0, completionTokens: 100 }, 2000);
    const cached = meter(h100, { promptTokens: 1000, cachedTokens: 900, completionTokens: 100 }, 2000);
    assert.ok(cached.costNusd <= m.costNusd && cached.energyJ < m.energyJ);
    assert.equal(m.deviceSeconds, 2 / 64);
    assert.equal(m.hardware, "h100");
    assert.ok(Number.isInteger(m.costNusd));
    const none = meter(unpriced(4), { promptTokens: 10, cachedTokens: 0, completionTokens: 10 }, 1000);
    assert.deepEqual(none, { hardware: "unknown", energyJ: 0, costNusd: 0, deviceSeconds: 0.25 });
  });

  test("property: no usage within prompt + max_tokens costs more than admission reserved", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 100_000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (prompt, max, cachedShare, outShare) => {
        const usage = { promptTokens: prompt, cachedTokens: Math.floor(prompt * cachedShare), completionTokens: Math.floor(max * outShare) };
        assert.ok(meter(h100, usage, 1).costNusd <= worstCase(h100, prompt, max));
      }),
    );
  });

  test("admission reserves at the dearest replica of the model, per token", () => {
    const cheap = unpriced(8);
    const book = new RateBook(
      new Map([
        ["m/0", { model: "m", rate: cheap }],
        ["m/1", { model: "m", rate: h100 }],
        ["n/0", { model: "n", rate: cheap }],
      ]),
    );
    assert.equal(book.worstFor("m").nusdPerOutputToken, h100.nusdPerOutputToken);
    assert.equal(book.worstFor("n").nusdPerOutputToken, 0);
    assert.equal(book.worstFor("alias-not-in-book").nusdPerOutputToken, h100.nusdPerOutputToken);
    assert.equal(book.replica("m/0"), cheap);
  });

  test("without a tokenizer, the prompt estimate is an upper bound (UTF-8 bytes plus template tokens)", () => {
    assert.equal(promptTokenBound({ kind: "text", text: "héllo" }), 8);
    assert.equal(promptTokenBound({ kind: "chat", messages: [{ role: "user", content: "hi" }] }, "ab"), 64 + 2 + 18);
  });
});

describe("route hints, live and simulated", () => {
  test("a replica's hints are the simulator's routing constants for the same hardware, exactly (table)", () => {
    const cases = [
      { model: "llama-3.1-8b", hardware: "h100", precision: "bf16", tp: 1 },
      { model: "llama-3.1-70b", hardware: "h100", precision: "fp8", tp: 2 },
      { model: "llama-3.1-8b", hardware: "b200", precision: "fp8", tp: 1 },
    ];
    for (const c of cases) {
      const island = resolveSimFleet({ islands: [{ hardware: c.hardware, count: 1, model: c.model, precision: c.precision, tp: c.tp }] }).islands[0]!;
      const simulated = routeConstants(island.profile, island.energy, { usdPerHour: island.usdPerHour });
      const live = routeHints(rateCard({ model: findModel(c.model)!, hardware: findHardware(c.hardware)!, precision: findPrecision(c.precision)!, tp: c.tp, slots: 8 }))!;
      const name = `${c.model} on ${c.tp}x ${c.hardware} ${c.precision}`;
      assert.equal(live.prefillMsPerToken, simulated.prefillMsPerToken, `${name}: prefill ms per token`);
      assert.equal(live.usdPerMTok, simulated.usdPerMTok, `${name}: $ per Mtok`);
      assert.equal(live.joulesPerToken, simulated.joulesPerToken, `${name}: J per token`);
    }
  });

  test("a replica without hardware gives the scorers nothing to read", () => {
    assert.equal(routeHints(unpriced(4)), undefined);
  });
});

describe("tenancy settings in the fleet file", () => {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-pricing-"));
  test.after(() => rmSync(dir, { recursive: true, force: true }));

  test("replicas take hardware, precision, tp and spec; every existing file still parses", async () => {
    const config = parseFleetConfig({
      models: [
        { name: "tiny", replicas: [{ engine: "local", path: TINY_MODEL, hardware: "h100", count: 2, parallel: 2 }, { engine: "local", path: TINY_MODEL }] },
        { name: "llama-3.1-8b", replicas: [{ engine: "openai", url: "http://127.0.0.1:1/v1", hardware: "h100", precision: "fp8", tp: 2 }] },
        { name: "chat", replicas: [{ engine: "openai", url: "http://127.0.0.1:1/v1", hardware: "a100", spec: "llama-3.1-8b" }] },
      ],
    });
    const book = await rateBookFromConfig(config, dir);
    assert.equal(book.replica("tiny/0")?.hardware, "h100");
    assert.equal(book.replica("tiny/1")?.hardware, "h100");
    assert.equal(book.replica("tiny/2")?.hardware, "unknown");
    assert.equal(book.replica("llama-3.1-8b/0")?.devices, 2);
    assert.equal(book.replica("chat/0")?.hardware, "a100");
    assert.doesNotThrow(() => parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "local", path: "x.gguf" }] }] }));
  });

  test("unknown hardware, or a remote model the catalog lacks, is a config error naming the replica", async () => {
    const bad = parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: "http://127.0.0.1:1/v1", hardware: "h1000" }] }] });
    await assert.rejects(rateBookFromConfig(bad, dir), (err: Error) => err instanceof ConfigError && /models\.0\.replicas\.0\.hardware: unknown hardware "h1000"/.test(err.message));
    const noSpec = parseFleetConfig({ models: [{ name: "mystery", replicas: [{ engine: "openai", url: "http://127.0.0.1:1/v1", hardware: "h100" }] }] });
    await assert.rejects(rateBookFromConfig(noSpec, dir), /set spec/);
  });

  test("a replica's profile: sets the engine its prices and timing predictions assume; one fitted elsewhere is refused", async () => {
    const profile = (fit?: Record<string, unknown>) =>
      JSON.stringify({ kind: "flotilla-engine-profile", version: 1, name: "slow", params: { computeEfficiency: 0.2, bandwidthEfficiency: 0.3 }, ...(fit === undefined ? {} : { fit }) });
    writeFileSync(join(dir, "slow.json"), profile({ hardware: ["h100"] }));
    writeFileSync(join(dir, "a100-only.json"), profile({ hardware: ["a100"] }));
    const replica = (extra: Record<string, unknown>) => ({ engine: "openai", url: "http://127.0.0.1:1/v1", hardware: "h100", spec: "llama-3.1-8b", ...extra });
    const book = await rateBookFromConfig(parseFleetConfig({ models: [{ name: "m", replicas: [replica({}), replica({ profile: "slow.json" })] }] }), dir);
    const [plain, slow] = [book.replica("m/0")!, book.replica("m/1")!];
    assert.ok(slow.msPerInputToken > 2 * plain.msPerInputToken, `${slow.msPerInputToken} vs ${plain.msPerInputToken} ms per prompt token`);
    assert.ok(slow.perf!.gemmFlopsPerMs < plain.perf!.gemmFlopsPerMs / 2, "the twin's timing predictions use the profile");
    const refused = async (extra: Record<string, unknown>, message: RegExp) =>
      assert.rejects(rateBookFromConfig(parseFleetConfig({ models: [{ name: "m", replicas: [replica(extra)] }] }), dir), (err: Error) => err instanceof ConfigError && message.test(err.message));
    await refused({ profile: "a100-only.json" }, /models\.0\.replicas\.0\.profile: a100-only\.json was fitted on a100, not on h100 \(this replica's hardware\)/);
    await refused({ profile: "nope.json" }, /models\.0\.replicas\.0\.profile: cannot read .*nope\.json: no such file/);
    await refused({ profile: "slow.json", hardware: undefined }, /models\.0\.replicas\.0\.profile: a profile describes an engine on its hardware; set models\.0\.replicas\.0\.hardware too/);
  });

  test("the store: default SQLite in FLOTILLA_HOME, a path relative to the file, a URL from the environment, or none", () => {
    const base = { models: [{ name: "m", replicas: [{ engine: "local", path: "x.gguf" }] }] };
    const home = process.env.FLOTILLA_HOME;
    process.env.FLOTILLA_HOME = dir;
    try {
      assert.equal(storeUrl(parseFleetConfig(base), { baseDir: "/srv", env: {} }), `sqlite:${join(dir, "flotilla.db")}`);
    } finally {
      if (home === undefined) delete process.env.FLOTILLA_HOME;
      else process.env.FLOTILLA_HOME = home;
    }
    const withStore = (server: Record<string, unknown>) => parseFleetConfig({ ...base, server });
    assert.equal(storeUrl(withStore({ store: "sqlite:ledger.db" }), { baseDir: "/srv", env: {} }), "sqlite:/srv/ledger.db");
    assert.equal(storeUrl(withStore({ store: "none" }), { baseDir: "/srv", env: {} }), undefined);
    assert.equal(storeUrl(withStore({ store_env: "DB" }), { baseDir: "/srv", env: { DB: "postgres://u:p@h/db" } }), "postgres://u:p@h/db");
    assert.throws(() => storeUrl(withStore({ store_env: "DB" }), { baseDir: "/srv", env: {} }), /DB/);
    assert.throws(() => parseFleetConfig({ ...base, server: { stor: "x" } }), /stor/);
    assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("::1") && isLoopbackHost("localhost"));
    assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("10.0.0.5") && !isLoopbackHost("::"));
  });
});
