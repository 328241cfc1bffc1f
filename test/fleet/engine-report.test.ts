/**
 * A fleet file's openai replica reads its engine's /metrics as configured:
 * `metrics_interval_ms` and the token from `metrics_token_env`; what the
 * engine reports reaches the router's candidates (load and KV share), and
 * `metrics_interval_ms: 0` reads nothing.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { candidatesOf } from "../../src/fleet/fleet.js";
import { eventually } from "../helpers.js";

const METRICS = [
  '# TYPE vllm:num_requests_running gauge',
  'vllm:num_requests_running{model_name="m"} 3',
  'vllm:num_requests_waiting{model_name="m"} 2',
  'vllm:kv_cache_usage_perc{model_name="m"} 0.8',
  "",
].join("\n");

describe("engine-reported load from the fleet file", () => {
  let server: Server;
  let url: string;
  const seen: (string | undefined)[] = [];

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === "/metrics") {
        seen.push(req.headers.authorization);
        if (req.headers.authorization !== "Bearer scrape-token") return void res.writeHead(401).end();
        return void res.writeHead(200, { "content-type": "text/plain" }).end(METRICS);
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((done) => server.close(() => done())));

  const fleetWith = (replica: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
    buildFleet(parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url, parallel: 4, max_queue: 16, ...replica }] }] }), { baseDir: ".", env });

  it("scrapes with the token named by metrics_token_env; the report reaches the candidates", async () => {
    const fleet = fleetWith({ metrics_interval_ms: 100, metrics_token_env: "SCRAPE" }, { SCRAPE: "scrape-token" });
    await fleet.start(() => {});
    try {
      const model = fleet.model("m")!;
      await eventually(() => model.replicas[0]!.engine.load().reported !== undefined, "the first report", 10_000);
      const [c] = candidatesOf(model);
      assert.equal(c!.active, 3);
      assert.equal(c!.queued, 2);
      assert.equal(c!.kvUsage, 0.8);
      assert.ok(seen.includes("Bearer scrape-token"));
    } finally {
      await fleet.close();
    }
  });

  it("metrics_interval_ms: 0 reads nothing; bad values and an unset token variable are refused by name", async () => {
    const before = seen.length;
    const fleet = fleetWith({ metrics_interval_ms: 0 });
    await fleet.start(() => {});
    await fleet.close();
    assert.equal(seen.length, before);
    assert.equal(candidatesOf(fleet.model("m")!)[0]!.kvUsage, undefined);
    assert.throws(() => fleetWith({ metrics_interval_ms: 50 }), /models\.0\.replicas\.0\.metrics_interval_ms: must be 0 \(off\) or at least 100 ms/);
    assert.throws(() => fleetWith({ metrics_token_env: "NOPE" }), /environment variable NOPE \(metrics_token_env\) is not set/);
  });
});
