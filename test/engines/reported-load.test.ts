/**
 * Engine-reported load steers routing: a replica whose engine reports work
 * from another client is passed over, through the whole gateway; and a
 * Flotilla upstream's own /metrics, behind its admin token, shows what
 * another client runs there.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { wallClock } from "../../src/core/clock.js";
import { OpenAIEngine } from "../../src/engines/openai.js";
import { Fleet } from "../../src/fleet/fleet.js";
import { createGateway } from "../../src/gateway/server.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";
import { eventually, startGateway, tinyFleet, totalActive, type RunningGateway } from "../helpers.js";
import { startMetricsUpstream, vllmText, type MetricsUpstream } from "./metrics-upstream.js";

describe("routing by what the engines report", () => {
  let ups: MetricsUpstream[];
  let fleet: Fleet;
  let app: FastifyInstance;
  let url: string;
  before(async () => {
    ups = await Promise.all([startMetricsUpstream({ status: 200, body: vllmText("m", 0, 30) }), startMetricsUpstream({ status: 200, body: vllmText("m", 0, 0) })]);
    fleet = new Fleet([
      {
        name: "m",
        replicas: ups.map((up, i) => ({
          id: `m/${i}`,
          model: "m",
          // Each report fresh for 3 s, each scrape given 1 s: a busy test machine must not let one go stale between two requests.
          engine: new OpenAIEngine({ url: up.url, upstreamModel: "m", parallel: 4, maxQueue: 8, metricsIntervalMs: 1_000, name: `m/${i}`, log: () => undefined }),
          health: new ReplicaHealth(wallClock),
        })),
      },
    ]);
    await fleet.start((r, err) => assert.fail(`${r.id}: ${String(err)}`));
    app = createGateway({ fleet, logLevel: "silent" });
    await app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app.close();
    await fleet.close();
    await Promise.all(ups.map((u) => u.close()));
  });

  /** Sends `n` chat requests one after another; the replicas that answered. */
  async function route(n: number): Promise<string[]> {
    const served: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: `q${i}` }] }) });
      assert.equal(res.status, 200);
      served.push(res.headers.get("x-flotilla-replica")!);
      await res.arrayBuffer();
    }
    return served;
  }

  const waiting = (i: number): number | undefined => fleet.replicas()[i]!.engine.load().reported?.waiting;

  it("sends nothing to the replica whose engine reports 30 requests waiting from another client", async () => {
    await eventually(() => waiting(0) === 30 && waiting(1) === 0, "both reports", 5_000);
    assert.deepEqual(await route(12), Array(12).fill("m/1"));
    assert.deepEqual([ups[0]!.completions, ups[1]!.completions], [0, 12]);
  });

  it("follows the reports when the load moves", async () => {
    ups[0]!.metrics = { status: 200, body: vllmText("m", 0, 0) };
    ups[1]!.metrics = { status: 200, body: vllmText("m", 3, 30) };
    await eventually(() => waiting(0) === 0 && waiting(1) === 30, "the new reports", 5_000);
    assert.deepEqual(await route(12), Array(12).fill("m/0"));
  });
});

describe("a Flotilla upstream's own metrics", () => {
  let upstream: RunningGateway;
  const engines: OpenAIEngine[] = [];
  before(async () => {
    upstream = await startGateway(tinyFleet({ name: "tiny", context: 4096 }), { adminToken: "op-secret" });
  });
  after(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await upstream.close();
  });

  function engine(opts: { metricsToken?: string; log: (m: string) => void }): OpenAIEngine {
    const e = new OpenAIEngine({ url: upstream.url, upstreamModel: "tiny", parallel: 4, metricsIntervalMs: 50, name: "remote-tiny/0", ...opts });
    engines.push(e);
    return e;
  }

  it("wants its admin token, and says so once", async () => {
    const logs: string[] = [];
    await engine({ log: (m) => logs.push(m) }).start();
    const denied = (): string[] => logs.filter((l) => /answers 401/.test(l));
    await eventually(() => denied().length > 0, "the log line", 5_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(denied().length, 1, logs.join("\n"));
    assert.match(denied()[0]!, /^remote-tiny\/0: .*\/metrics answers 401: it wants a credential \(a Flotilla upstream: its admin token/);
  });

  it("shows a stream another client runs there as load on the replica", async () => {
    const logs: string[] = [];
    const front = engine({ metricsToken: "op-secret", log: (m) => logs.push(m) });
    await front.start();
    await eventually(() => front.load().reported !== undefined, "a report", 5_000);
    assert.deepEqual(front.load().reported?.running, 0);
    const other = new AbortController();
    const res = await fetch(`${upstream.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: "a long story", max_tokens: 3000, stream: true }),
      signal: other.signal,
    });
    await res.body!.getReader().read();
    try {
      await eventually(() => front.load().reported?.running === 1, "the other client's stream in the report", 5_000);
      const load = front.load();
      assert.deepEqual([load.active, load.queued, load.own], [1, 0, { active: 0, queued: 0 }]);
      assert.ok(load.reported!.kvUsage !== undefined && load.reported!.kvUsage > 0, "the upstream's KV estimate comes along");
    } finally {
      other.abort();
    }
    // The upstream's engine has let go of the stream before the upstream closes.
    await eventually(() => totalActive(upstream.fleet) === 0, "the other client's stream to end", 5_000);
    assert.ok(!logs.some((l) => /answers|not Prometheus|no load gauge/.test(l)), logs.join("\n"));
  });
});
