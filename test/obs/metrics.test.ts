import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import parsePrometheus, { type PromFamily, type PromSample } from "parse-prometheus-text-format";
import type { Tenancy, Ticket } from "../../src/metering/tenancy.js";
import { TINY_MODEL } from "../helpers.js";
import { fakeUpstream, post, startObserved, usageOf, type ObservedGateway } from "./harness.js";
import { repoPath } from "../paths.js";

/** A tenancy that knows one tenant and prices every generation at fixed energy and cost. */
const ENERGY_J = 2.5;
const COST_USD = 0.001;
const pricedTicket: Ticket = { price: () => ({ energy_j: ENERGY_J, cost_usd: COST_USD }), settle: async () => {} };
const pricedTenancy: Tenancy = {
  authenticate: async (authorization) => (authorization === undefined ? undefined : { tenantId: "acme", keyId: "k1" }),
  admit: async () => pricedTicket,
  close: async () => {},
};

async function scrape(url: string): Promise<{ families: Map<string, PromFamily>; text: string; contentType: string | null }> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { families: new Map(parsePrometheus(text).map((f) => [f.name, f])), text, contentType: res.headers.get("content-type") };
}

function samples(families: Map<string, PromFamily>, name: string, where: Record<string, string> = {}): PromSample[] {
  const family = families.get(name);
  assert.ok(family !== undefined, `${name} is exported`);
  return family.metrics.filter((m) => Object.entries(where).every(([k, v]) => m.labels?.[k] === v));
}

/**
 * One series of a histogram. parse-prometheus-text-format merges the series of
 * a labelled histogram into one (and drops their _sum and _count), so each
 * series is cut out of the exposition and parsed on its own.
 */
function histogram(text: string, name: string, where: Record<string, string>): PromSample {
  const wanted = Object.entries(where).map(([k, v]) => `${k}="${v}"`);
  const lines = text
    .split("\n")
    .filter((l) => /^[a-z_]+[{ ]/.test(l) && [`${name}_bucket`, `${name}_sum`, `${name}_count`].includes(l.slice(0, l.search(/[{ ]/))))
    .filter((l) => wanted.every((w) => l.includes(w)))
    .map((l) => l.replace(/\{([^}]*)\}/, (_all, inner: string) => {
      const le = /le="([^"]*)"/.exec(inner);
      return le === null ? "" : `{le="${le[1]}"}`;
    }));
  const [family] = parsePrometheus(`# TYPE ${name} histogram\n${lines.join("\n")}\n`);
  assert.equal(family?.metrics.length, 1, `${name}${JSON.stringify(where)} is one series`);
  return family.metrics[0]!;
}

function total(families: Map<string, PromFamily>, name: string, where: Record<string, string> = {}): number {
  return samples(families, name, where).reduce((n, m) => n + Number(m.value), 0);
}

describe("/metrics after known traffic", () => {
  let gw: ObservedGateway;
  const bad = { hits: 0 };
  let failing: Awaited<ReturnType<typeof fakeUpstream>>;
  let staller: Awaited<ReturnType<typeof fakeUpstream>>;
  let stallerHits = 0;

  before(async () => {
    failing = await fakeUpstream((_req, res) => {
      bad.hits++;
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom"}}');
    });
    // Streams one piece of an answer, then dies: the answer must be continued elsewhere.
    staller = await fakeUpstream((_req, res) => {
      stallerHits++;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: "Once", finish_reason: null }] })}\n\n`, () => setTimeout(() => res.socket?.destroy(), 20));
    });
    const local = { engine: "local", path: TINY_MODEL, parallel: 2, context: 512 };
    gw = await startObserved(
      {
        server: { eject_after_failures: 100 },
        models: [
          { name: "tiny", replicas: [local] },
          { name: "m", replicas: [{ engine: "openai", url: failing.url, upstream_model: "tiny", context: 512 }, local] },
          { name: "c", replicas: [{ engine: "openai", url: staller.url, upstream_model: "tiny", context: 512 }, local] },
        ],
      },
      { tenancy: pricedTenancy },
    );
  });
  after(async () => {
    await gw.close();
    failing.close();
    staller.close();
  });

  it("counts requests, tokens, energy and cost, and fills the latency histograms", async () => {
    const auth = { authorization: "Bearer sk-test-123" };
    let promptTokens = 0;
    let completionTokens = 0;
    let cachedTokens = 0;
    for (let i = 0; i < 3; i++) {
      const r = await post(gw.url, "/v1/completions", { model: "tiny", prompt: `count ${i}`, max_tokens: 8 }, { ...auth, "x-request-id": `known-${i}` });
      assert.equal(r.status, 200, r.text);
      const u = usageOf(r.text);
      promptTokens += u.prompt_tokens;
      completionTokens += u.completion_tokens;
      cachedTokens += u.prompt_tokens_details.cached_tokens;
    }
    for (let i = 0; i < 2; i++) {
      const r = await post(gw.url, "/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: `stream ${i}` }], max_tokens: 6, stream: true, stream_options: { include_usage: true } }, auth);
      assert.equal(r.status, 200, r.text);
      const u = usageOf(r.text);
      promptTokens += u.prompt_tokens;
      completionTokens += u.completion_tokens;
      cachedTokens += u.prompt_tokens_details.cached_tokens;
    }
    assert.equal((await post(gw.url, "/v1/completions", { model: "nope", prompt: "x" })).status, 404);
    assert.equal((await post(gw.url, "/v1/completions", { model: "tiny" })).status, 400);

    const { families, text, contentType } = await scrape(gw.url);
    assert.match(contentType ?? "", /^text\/plain; version=0\.0\.4/);
    const tiny = { model: "tiny", replica: "tiny/0" };
    assert.equal(total(families, "flotilla_requests_total", { model: "tiny", endpoint: "completion", status: "ok" }), 3);
    assert.equal(total(families, "flotilla_requests_total", { model: "tiny", endpoint: "chat", status: "ok" }), 2);
    assert.equal(total(families, "flotilla_output_tokens_total", tiny), completionTokens);
    assert.equal(total(families, "flotilla_input_tokens_total", tiny), promptTokens);
    assert.equal(total(families, "flotilla_cached_input_tokens_total", tiny), cachedTokens);
    assert.equal(total(families, "flotilla_energy_joules_total", { tenant: "acme", model: "tiny", hardware: "cpu" }), 5 * ENERGY_J);
    assert.ok(Math.abs(total(families, "flotilla_cost_usd_total", { tenant: "acme", model: "tiny", hardware: "cpu" }) - 5 * COST_USD) < 1e-12);
    assert.equal(total(families, "flotilla_http_requests_total", { method: "POST", route: "/v1/completions", code: "404" }), 1);
    assert.equal(total(families, "flotilla_http_requests_total", { method: "POST", route: "/v1/completions", code: "400" }), 1);
    assert.equal(total(families, "flotilla_http_requests_total", { method: "POST", route: "/v1/chat/completions", code: "200" }), 2, "streamed replies are counted too");
    assert.equal(total(families, "flotilla_requests_in_flight"), 0);

    for (const name of ["flotilla_time_to_first_token_seconds", "flotilla_time_per_output_token_seconds", "flotilla_request_duration_seconds"]) {
      const family = families.get(name);
      assert.equal(family?.type, "HISTOGRAM", name);
      const h = histogram(text, name, tiny);
      assert.ok(h.buckets !== undefined, `${name} has buckets for tiny/0`);
      assert.equal(Number(h.count), 5, `${name}: one observation per request`);
      assert.ok(Number(h.sum) > 0, `${name}: a positive sum`);
      const bounds = Object.keys(h.buckets).map((b) => (b === "+Inf" ? Infinity : Number(b))).sort((a, b) => a - b);
      assert.equal(bounds.at(-1), Infinity);
      let previous = 0;
      for (const b of bounds) {
        const c = Number(h.buckets[b === Infinity ? "+Inf" : String(b)]);
        assert.ok(c >= previous, `${name}: buckets are cumulative`);
        previous = c;
      }
      assert.equal(previous, 5, `${name}: the +Inf bucket holds every observation`);
    }
    // The tiny model answers in well under a second, and no request ends before its first token.
    const ttft = histogram(text, "flotilla_time_to_first_token_seconds", tiny);
    const e2e = histogram(text, "flotilla_request_duration_seconds", tiny);
    assert.equal(Number(ttft.buckets!["1"]), 5);
    assert.ok(Number(e2e.sum) >= Number(ttft.sum));

    // Gauges, read at scrape time.
    assert.equal(total(families, "flotilla_replica_up", tiny), 1);
    assert.equal(total(families, "flotilla_replica_slots", tiny), 2);
    assert.equal(total(families, "flotilla_replica_running_requests", tiny), 0);
    assert.equal(total(families, "flotilla_replica_queue_depth", tiny), 0);
    assert.equal(total(families, "flotilla_replica_kv_utilization_ratio", tiny), 0);
    assert.equal(total(families, "flotilla_replica_health_state", { ...tiny, state: "healthy" }), 1);
    assert.equal(total(families, "flotilla_replica_health_state", tiny), 1, "exactly one state is 1");
    assert.equal(total(families, "flotilla_replica_info", { ...tiny, engine: "local", hardware: "cpu" }), 1);
    assert.ok(families.has("flotilla_cascade_escalations_total"));
    assert.ok(families.has("process_cpu_seconds_total"), "the process's own metrics too");

    // Names and labels follow Prometheus conventions: units and _total in names, bounded labels.
    const replicaIds = new Set(gw.fleet.replicas().map((r) => r.id));
    for (const f of families.values()) {
      if (!f.name.startsWith("flotilla_")) continue;
      assert.match(f.name, /^flotilla_[a-z0-9_]+$/);
      if (f.type === "COUNTER") assert.match(f.name, /_total$/, `${f.name} is a counter`);
      if (f.type === "HISTOGRAM") assert.match(f.name, /_seconds$/, `${f.name} says its unit`);
      assert.ok(f.help.length > 10, `${f.name} has help`);
      for (const m of f.metrics) {
        for (const [k, v] of Object.entries(m.labels ?? {})) {
          assert.ok(["model", "replica", "endpoint", "status", "tenant", "hardware", "engine", "state", "reason", "priority", "method", "route", "code", "le"].includes(k), `${f.name} label ${k} is a bounded one`);
          if (k === "replica") assert.ok(replicaIds.has(v), `replica label ${v} is a fleet replica`);
        }
      }
    }
    assert.doesNotMatch(text, /known-\d|sk-test-123|count \d/, "no request id, key or prompt in any metric");

    // The Grafana dashboard in the repo asks only for metrics this exports, with their labels.
    const dashboard = JSON.parse(await readFile(repoPath("grafana/flotilla-fleet.json"), "utf8")) as { panels: { targets?: { expr: string }[] }[]; templating: { list: { definition?: string }[] } };
    const exprs = [...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...dashboard.templating.list.flatMap((v) => (v.definition === undefined ? [] : [v.definition]))];
    assert.ok(exprs.length > 20);
    for (const expr of exprs) {
      for (const [, name, labels] of expr.matchAll(/\b(flotilla_[a-z0-9_]+)(?:\{([^}]*)\})?/g)) {
        const family = name!.replace(/_(bucket|sum|count)$/, "");
        const f = families.get(family) ?? families.get(name!);
        assert.ok(f !== undefined, `the dashboard's ${name} is exported`);
        for (const [, label] of (labels ?? "").matchAll(/(\w+)\s*=~?/g)) {
          const has = f.type === "HISTOGRAM" ? text.includes(`${family}_count{`) && new RegExp(`^${family}_count\\{[^}]*\\b${label}="`, "m").test(text) : f.metrics.some((m) => m.labels?.[label!] !== undefined);
          assert.ok(f.metrics.length === 0 || label === "le" || has, `${family} has label ${label}`);
        }
      }
    }
  });

  it("counts failovers by the replica that failed, and mid-stream continuations", async () => {
    // Least-loaded breaks ties at random: send until the failing replica was tried twice.
    for (let i = 0; i < 40 && bad.hits < 2; i++) {
      const r = await post(gw.url, "/v1/completions", { model: "m", prompt: "fail over", max_tokens: 4 });
      assert.equal(r.status, 200, "every request still succeeds");
      assert.equal(r.headers.get("x-flotilla-replica"), "m/1");
    }
    assert.equal(bad.hits, 2);

    // Keep the good replica out of rotation so the stream starts on the staller, then let it back in.
    const admin = (path: string, body: unknown): Promise<unknown> => post(gw.url, path, body);
    await admin("/admin/drain", { replica: "c/1", wait_s: 0 });
    const pending = post(gw.url, "/v1/completions", { model: "c", prompt: "Once", max_tokens: 12, stream: true, stream_options: { include_usage: true } });
    while (stallerHits === 0) await new Promise((r) => setTimeout(r, 10));
    await admin("/admin/resume", { replica: "c/1" });
    const r = await pending;
    assert.equal(r.status, 200);
    assert.match(r.text, /"continuations":1/);

    const { families } = await scrape(gw.url);
    assert.equal(total(families, "flotilla_failovers_total", { model: "m", replica: "m/0" }), 2);
    assert.equal(total(families, "flotilla_failovers_total", { model: "m", replica: "m/1" }), 0);
    assert.equal(total(families, "flotilla_continuations_total", { model: "c", replica: "c/0" }), 1);
    assert.equal(total(families, "flotilla_requests_total", { model: "c", status: "ok" }), 1);
    assert.equal(total(families, "flotilla_output_tokens_total", { model: "c" }), usageOf(r.text).completion_tokens, "tokens are counted once, by the replica that made them");
    assert.equal(total(families, "flotilla_output_tokens_total", { replica: "c/0" }), 1);
    // Without an Authorization header the caller is anonymous, and still priced.
    assert.ok(total(families, "flotilla_energy_joules_total", { tenant: "anonymous", model: "m", hardware: "cpu" }) > 0);
  });
});
