/**
 * The autoscaler, live (gateway/autoscaling.ts): from the work on a model's
 * replicas and at its front door, the count scheduler/autoscale.ts decides
 * is exported as flotilla_desired_replicas{island} and handed to the
 * actuator command when it changes; a failing command is counted and
 * retried. The upstream holds its answers until the test lets them go, so
 * the load is exact.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { createGatewayWithShutdown } from "../../src/gateway/server.js";
import { eventually } from "../helpers.js";
import { K8sStub, writeKubeconfig } from "../discovery/k8s-stub.js";

const dir = mkdtempSync(join(tmpdir(), "flotilla-autoscaling-"));
const servers: Server[] = [];
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const close of closers) await close();
  rmSync(dir, { recursive: true, force: true });
});

/** An OpenAI-compatible upstream whose answers wait until `release()`. */
async function heldUpstream(): Promise<{ url: string; release(): void }> {
  const held: ServerResponse[] = [];
  let open = false;
  const answer = (res: ServerResponse): void => {
    // The gateway streams from its upstreams, whatever the client asked.
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text: "ok", finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`);
  };
  const server = createServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    req.resume();
    req.on("end", () => (open ? answer(res) : held.push(res)));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    release: () => {
      open = true;
      for (const res of held.splice(0)) answer(res);
    },
  };
}

/** A command that appends "desired current" to `file`: node, no shell. */
const recorder = (file: string): string[] => [process.execPath, "-e", "require('fs').appendFileSync(process.argv[1], process.env.FLOTILLA_MODEL + ' ' + process.env.FLOTILLA_DESIRED_REPLICAS + ' ' + process.env.FLOTILLA_CURRENT_REPLICAS + '\\n')", file];

async function gateway(upstream: string, autoscale: Record<string, unknown>): Promise<{ url: string; metric(name: string): Promise<string>; logs: string[] }> {
  const logs: string[] = [];
  const config = parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: upstream, parallel: 4, metrics_interval_ms: 0 }], autoscale: { interval_ms: 100, cooldown_ms: 0, ...autoscale } }] });
  const fleet = buildFleet(config, { baseDir: ".", env: {} });
  await fleet.start(() => undefined);
  const gw = createGatewayWithShutdown({ fleet, logLevel: "warn", observability: { logDestination: { write: (line: string) => void logs.push(line) } }, membership: { build: { baseDir: ".", env: {} }, config } });
  closers.push(async () => {
    gw.app.server.closeAllConnections();
    await gw.app.close();
  });
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`;
  return { url, logs, metric: async (name) => (await (await fetch(`${url}/metrics`)).text()).split("\n").filter((l) => l.startsWith(name)).join("\n") };
}

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n") : []);

describe("autoscaling, live", () => {
  it("exports the count the load needs and hands each change to the command: up under load, back down after it", async () => {
    const up = await heldUpstream();
    const file = join(dir, "scaled.txt");
    const gw = await gateway(up.url, { min: 1, max: 5, target_utilisation: 0.5, command: recorder(file) });
    await eventually(() => lines(file).includes("m 1 1"), "the first decision (min 1) handed over", 5_000);
    // 6 requests on 4 slots: 4 running, 2 waiting at the front door; 6 / (4 x 0.5) = 3 replicas.
    const pending = Array.from({ length: 6 }, (_, i) => fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: `p${i}`, max_tokens: 4 }) }));
    await eventually(() => lines(file).includes("m 3 1"), "3 replicas handed over under load", 5_000);
    assert.match(await gw.metric("flotilla_desired_replicas"), /flotilla_desired_replicas\{island="m"\} 3/);
    assert.match(await gw.metric("flotilla_autoscale_serving_replicas"), /island="m"\} 1/);
    up.release();
    for (const res of await Promise.all(pending)) assert.equal(res.status, 200);
    await eventually(() => lines(file).at(-1) === "m 1 1", "back to 1 once the load is gone (no cooldown here)", 5_000);
    // Requests arriving or finishing between two decisions may show a count on the way (2), never the same one twice in a row.
    const handed = lines(file);
    assert.ok(handed.every((l, i) => i === 0 || l !== handed[i - 1]), `handed over only when the count changed: ${handed.join(", ")}`);
    assert.equal(Math.max(...handed.map((l) => Number(l.split(" ")[1]))), 3);
    // The command wrote its line before it exited: the count of hand-overs follows its exit.
    await eventually(async () => new RegExp(`island="m",outcome="ok"\\} ${handed.length}$`, "m").test(await gw.metric("flotilla_autoscale_actions_total")), "every hand-over counted", 5_000);
  });

  it("a command that fails is counted, logged and tried again at the next decision", async () => {
    const up = await heldUpstream();
    const gw = await gateway(up.url, { min: 2, max: 4, command: [process.execPath, "-e", "process.stderr.write('no quota'); process.exit(3)"] });
    await eventually(async () => /outcome="failed"\} [2-9]/.test(await gw.metric("flotilla_autoscale_actions_total")), "two failed hand-overs", 5_000);
    assert.match(await gw.metric("flotilla_autoscale_actions_total"), /island="m",outcome="ok"\} 0/);
    assert.match(await gw.metric("flotilla_desired_replicas"), /island="m"\} 2/);
  });

  it("a command that runs past command_timeout_ms is killed, counted failed and logged as such", async () => {
    const up = await heldUpstream();
    const gw = await gateway(up.url, { min: 2, max: 4, command: [process.execPath, "-e", "setTimeout(() => {}, 30000)"], command_timeout_ms: 200 });
    await eventually(async () => /outcome="failed"\} [1-9]/.test(await gw.metric("flotilla_autoscale_actions_total")), "a failed hand-over", 5_000);
    assert.ok(gw.logs.some((l) => /the actuator for m failed to set 2 replicas \(will try again at the next decision\): \S+ killed after 200 ms/.test(l)), gw.logs.join("\n"));
  });

  it("the Kubernetes actuator sets a Deployment's replicas through its scale subresource, reading again after a conflict", async () => {
    const stub = await K8sStub.start();
    closers.push(() => stub.down());
    stub.setScale("deployments", "vllm", 1);
    stub.conflicts = 1;
    const kubeconfig = await writeKubeconfig(dir, stub);
    const up = await heldUpstream();
    const gw = await gateway(up.url, { min: 3, max: 4, kubernetes: { name: "vllm", kubeconfig } });
    await eventually(() => stub.scaleOf("deployments", "vllm") === 3, "the Deployment scaled to min 3", 5_000);
    // Another client wrote the Deployment between the read and the write: read it again, then write.
    assert.deepEqual(stub.requests.slice(0, 4), ["GET scale deployments/vllm", "PUT scale deployments/vllm replicas=3 conflict", "GET scale deployments/vllm", "PUT scale deployments/vllm replicas=3"]);
    await eventually(async () => /island="m",outcome="ok"\} 1$/m.test(await gw.metric("flotilla_autoscale_actions_total")), "one hand-over, counted once", 5_000);
  });

  it("a StatefulSet the API server does not have: the hand-over fails, is logged with the API's reason, and is tried again", async () => {
    const stub = await K8sStub.start();
    closers.push(() => stub.down());
    const kubeconfig = await writeKubeconfig(dir, stub);
    const up = await heldUpstream();
    const gw = await gateway(up.url, { min: 2, max: 4, kubernetes: { kind: "StatefulSet", name: "sglang", kubeconfig } });
    await eventually(async () => /outcome="failed"\} [2-9]/.test(await gw.metric("flotilla_autoscale_actions_total")), "two failed hand-overs", 5_000);
    assert.ok(gw.logs.some((l) => l.includes('reading the scale of StatefulSet inference/sglang failed: HTTP 404: statefulsets.apps \\"sglang\\" not found')), gw.logs.join("\n"));
    stub.setScale("statefulsets", "sglang", 1);
    await eventually(() => stub.scaleOf("statefulsets", "sglang") === 2, "set once the StatefulSet exists", 5_000);
  });

  it("refuses settings it cannot run, naming the key", () => {
    const bad = (autoscale: Record<string, unknown>, message: RegExp): void =>
      assert.throws(() => parseFleetConfig({ models: [{ name: "m", replicas: [{ engine: "openai", url: "http://127.0.0.1:1" }], autoscale }] }), message);
    bad({ min: 3, max: 2 }, /models\.0\.autoscale\.min: min 3 is above max 2/);
    bad({ max: 4, mode: "predictive" }, /models\.0\.autoscale\.replica_rps: required with mode: predictive/);
    bad({ max: 4, command: [] }, /models\.0\.autoscale\.command/);
    bad({ max: 4, target_utilisation: 1.5 }, /models\.0\.autoscale\.target_utilisation/);
    bad({ max: 4, intervall_ms: 100 }, /models\.0\.autoscale.*intervall_ms/);
    bad({ max: 4, command: ["true"], kubernetes: { name: "x" } }, /models\.0\.autoscale\.kubernetes: give one actuator: command or kubernetes, not both/);
    bad({ max: 4, kubernetes: { name: "x", kind: "ReplicaSet" } }, /models\.0\.autoscale\.kubernetes\.kind/);
  });
});
