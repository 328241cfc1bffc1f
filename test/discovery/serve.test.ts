/**
 * `flotilla serve --config FILE` with a discovery section: the providers
 * start once it listens (its banner says what each model follows), their
 * health signals reach stderr, a reload that changes the section restarts
 * the provider, and a signal stops them with the gateway.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FakeUpstream } from "../chaos/fake-upstream.js";
import { eventually } from "../helpers.js";
import { ask, converges, fakesOnAddresses, healthy, TEMPLATE } from "./harness.js";
import { K8sStub, writeKubeconfig } from "./k8s-stub.js";
import { CLI } from "../paths.js";


describe("flotilla serve with kubernetes discovery", () => {
  let dir: string;
  let stub: K8sStub;
  let port: number;
  let byHost: Map<string, FakeUpstream>;
  let child: ReturnType<typeof spawn>;
  let out = "";
  let err = "";
  let url = "";
  const fleetFile = (replica: Record<string, unknown> = {}): string =>
    JSON.stringify({ server: { store: "none" }, models: [{ name: "m", discovery: { kind: "kubernetes", service: "vllm", kubeconfig: "kubeconfig.yaml", remove_wait_ms: 200, replica: { ...TEMPLATE, ...replica } } }] });
  const at = (host: string): string => `http://${host}:${port}`;
  const slice = (...hosts: string[]) => ({ service: "vllm", endpoints: hosts.map((address) => ({ address })), ports: [{ name: "http", port }] });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-serve-discovery-"));
    ({ port, fakes: byHost } = await fakesOnAddresses(["127.0.0.2", "127.0.0.3"]));
    stub = await K8sStub.start();
    stub.put("vllm-a", slice("127.0.0.2"));
    await writeKubeconfig(dir, stub);
    await writeFile(join(dir, "fleet.yaml"), fleetFile());
    child = spawn(process.execPath, [...CLI, "serve", "--config", join(dir, "fleet.yaml"), "--port", "0"], { env: { ...process.env, FLOTILLA_HOME: dir } });
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    await eventually(() => /listening on (http:\/\/[\d.:]+)/.test(out) || child.exitCode !== null, "the gateway to listen", 60_000);
    url = /listening on (http:\/\/[\d.:]+)/.exec(out)?.[1] ?? assert.fail(`did not start: ${err}`);
  });
  after(async () => {
    if (child.exitCode === null) child.kill("SIGKILL");
    await stub.down().catch(() => undefined);
    await Promise.all([...byHost.values()].map((f) => f.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it("serves what the EndpointSlices list, follows them, restarts on a changed section, and stops on SIGTERM", async () => {
    assert.match(out, /m: 0\/0 replicas ready, more from kubernetes discovery of service vllm in namespace inference/);
    await converges(url, healthy(at("127.0.0.2")), "the endpoint from the slice");
    assert.equal(await ask(url), 200);
    stub.put("vllm-a", slice("127.0.0.2", "127.0.0.3"));
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3")), "scaled up");

    stub.put("vllm-b", { service: "vllm", endpoints: [{ address: "nope" }], ports: [{ name: "http", port }] });
    await eventually(() => err.includes('flotilla: model m: kubernetes discovery of service vllm in namespace inference: EndpointSlice inference/vllm-b endpoint 0 (Pod vllm-0): address "nope" is not an IPv4 address; skipped'), "the health signal on stderr");

    await writeFile(join(dir, "fleet.yaml.tmp"), fleetFile({ parallel: 8 }));
    await rename(join(dir, "fleet.yaml.tmp"), join(dir, "fleet.yaml"));
    await eventually(() => out.includes("; discovery restarted for m"), "the reload", 10_000);
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3")), "still both after the restart");

    child.kill("SIGTERM");
    await eventually(() => child.exitCode !== null, "the gateway to stop", 10_000);
    assert.equal(child.exitCode, 0, err);
  });
});
