/**
 * Kubernetes discovery with the official client against a stub API server
 * that speaks the list-then-watch protocol (k8s-stub.ts), through a
 * kubeconfig file as an operator would point it. The endpoints' engines are
 * fake upstreams on 127.0.0.x, so the replicas really serve. Each test waits
 * for the gateway's /admin/replicas to converge, never for a fixed time.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import type { FakeUpstream } from "../chaos/fake-upstream.js";
import { eventually } from "../helpers.js";
import { ask, converges, discoveryFront, fakesOnAddresses, healthy, liveReplicas, TEMPLATE, type DiscoveryFront } from "./harness.js";
import { K8sStub, writeKubeconfig, type StubEndpoint, type WatchEvent } from "./k8s-stub.js";

const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

const k8sFleet = (section: Record<string, unknown> = {}): unknown => ({
  models: [{ name: "m", discovery: { kind: "kubernetes", service: "vllm", kubeconfig: "kubeconfig.yaml", port_name: "http", remove_wait_ms: 500, replica: TEMPLATE, ...section } }],
});

describe("kubernetes discovery", () => {
  let dir: string;
  let port: number;
  let byHost: Map<string, FakeUpstream>;
  let stub: K8sStub;
  let front: DiscoveryFront | undefined;
  const at = (host: string): string => `http://${host}:${port}`;
  const ep = (host: string, more: Omit<StubEndpoint, "address"> = {}): StubEndpoint => ({ address: host, ...more });
  const slice = (...endpoints: StubEndpoint[]) => ({ service: "vllm", endpoints, ports: [{ name: "http", port }] });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-k8s-"));
    ({ port, fakes: byHost } = await fakesOnAddresses(HOSTS));
  });
  after(async () => {
    await Promise.all([...byHost.values()].map((f) => f.close()));
    await rm(dir, { recursive: true, force: true });
  });
  const startWith = async (slices: Record<string, ReturnType<typeof slice>>, section: Record<string, unknown> = {}): Promise<string> => {
    stub = await K8sStub.start();
    for (const [name, s] of Object.entries(slices)) stub.put(name, s);
    await writeKubeconfig(dir, stub);
    front = await discoveryFront(k8sFleet(section), { baseDir: dir });
    return front.url;
  };
  afterEach(async () => {
    await front?.close();
    await stub.down().catch(() => undefined);
    front = undefined;
  });

  it("scales up and down; an address in two slices is one replica", async () => {
    const url = await startWith({ "vllm-a": slice(ep("127.0.0.2")) });
    await converges(url, healthy(at("127.0.0.2")), "the first endpoint");
    assert.equal(await ask(url), 200);
    // The provider asks for bookmarks: they move its resourceVersion on and change nothing else.
    stub.bookmark();
    stub.put("vllm-a", slice(ep("127.0.0.2"), ep("127.0.0.3")));
    stub.put("vllm-b", slice(ep("127.0.0.4"), ep("127.0.0.3")));
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3"), at("127.0.0.4")), "scaled up over two slices");
    for (let i = 0; i < 6; i++) assert.equal(await ask(url), 200);
    stub.put("vllm-a", slice(ep("127.0.0.2")));
    stub.delete("vllm-b");
    await converges(url, healthy(at("127.0.0.2")), "scaled down: an endpoint dropped from a slice, a slice deleted");
    assert.deepEqual(stub.requests.filter((r) => r === "GET list"), ["GET list"], "one list, then the watch carried every change");
  });

  it("a terminating endpoint takes no new request, and leaves once it stops serving", async () => {
    const url = await startWith({ "vllm-a": slice(ep("127.0.0.2"), ep("127.0.0.3")) });
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3")), "two endpoints");
    stub.put("vllm-a", slice(ep("127.0.0.2"), ep("127.0.0.3", { ready: false, serving: true, terminating: true })));
    await converges(url, { ...healthy(at("127.0.0.2")), [at("127.0.0.3")]: "terminating" }, "ready false, serving true: terminating");
    const before = byHost.get("127.0.0.3")!.stats.requests;
    for (let i = 0; i < 6; i++) assert.equal(await ask(url), 200);
    assert.equal(byHost.get("127.0.0.3")!.stats.requests, before, "no new request to a terminating endpoint");
    stub.put("vllm-a", slice(ep("127.0.0.2"), ep("127.0.0.3", { ready: false, serving: false, terminating: true })));
    await converges(url, healthy(at("127.0.0.2")), "serving false: removed");
  });

  for (const expiry of ["event", "http"] as const) {
    it(`a watch that expires (${expiry === "event" ? "ERROR event with code 410" : "HTTP 410"}) is listed again, with the changes made while it was down`, async () => {
      const url = await startWith({ "vllm-a": slice(ep("127.0.0.2")), "vllm-b": slice(ep("127.0.0.3")) });
      await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3")), "before");
      stub.expiry = expiry;
      // Changes no watch hears of: only a new list can see them.
      stub.put("vllm-a", slice(ep("127.0.0.4"), ep("127.0.0.5")), { unseen: true });
      stub.delete("vllm-b", { unseen: true });
      stub.expireWatches();
      await converges(url, healthy(at("127.0.0.4"), at("127.0.0.5")), "after the relist");
      assert.equal(stub.requests.filter((r) => r === "GET list").length, 2, stub.requests.join("\n"));
      if (expiry === "http") assert.ok(stub.requests.some((r, i) => r.startsWith("GET watch rv=") && stub.requests[i + 1] === "GET list" && i > 1), "the resumed watch was refused, then a list");
      assert.ok(front!.logs.includes(`info: model m: kubernetes discovery of service vllm in namespace ${stub.namespace}: watch expired; listed again`), front!.logs.join("\n"));
      // And the new watch carries changes again.
      stub.put("vllm-a", slice(ep("127.0.0.4")));
      await converges(url, healthy(at("127.0.0.4")), "a change after the relist");
    });
  }

  it("an API server that goes down keeps the set; the watch restarts with backoff and converges when it is back", async () => {
    const url = await startWith({ "vllm-a": slice(ep("127.0.0.2")) });
    await converges(url, healthy(at("127.0.0.2")), "before");
    await stub.down();
    await eventually(() => front!.logs.filter((l) => l.includes("listing again in")).length >= 2, "two restarts logged", 5_000);
    const restarts = front!.logs.filter((l) => l.includes("listing again in"));
    assert.match(restarts[0]!, /^warn: model m: kubernetes discovery of service vllm in namespace inference: .*; keeping the last 1 replicas, listing again in 250 ms \(restart 1\)$/);
    assert.match(restarts[1]!, /ECONNREFUSED.*listing again in 500 ms \(restart 2\)$/);
    assert.deepEqual(await liveReplicas(url), healthy(at("127.0.0.2")), "the last set stays while the API server is away");
    assert.equal(await ask(url), 200);
    stub.put("vllm-a", slice(ep("127.0.0.3"), ep("127.0.0.4")));
    await stub.up();
    await converges(url, healthy(at("127.0.0.3"), at("127.0.0.4")), "after the API server is back", 15_000);
  });

  it("a malformed EndpointSlice is reported, naming the model, the slice and the endpoint; the rest serve", async () => {
    const url = await startWith({
      "vllm-a": slice(ep("127.0.0.2"), ep("not-an-ip", { pod: "vllm-7" }), ep("127.0.0.3", { noAddresses: true, pod: "vllm-8" })),
      "vllm-b": { service: "vllm", endpoints: [ep("127.0.0.4")], ports: [{ name: "metrics", port: 9000 }] },
    });
    await converges(url, healthy(at("127.0.0.2")), "only the well-formed endpoint");
    const label = `model m: kubernetes discovery of service vllm in namespace ${stub.namespace}`;
    await eventually(() => front!.logs.filter((l) => l.startsWith(`warn: ${label}: EndpointSlice`)).length === 3, "three problems");
    assert.deepEqual(front!.logs.filter((l) => l.startsWith("warn:")).sort(), [
      `warn: ${label}: EndpointSlice inference/vllm-a endpoint 1 (Pod vllm-7): address "not-an-ip" is not an IPv4 address; skipped`,
      `warn: ${label}: EndpointSlice inference/vllm-a endpoint 2 (Pod vllm-8): no addresses; skipped`,
      `warn: ${label}: EndpointSlice inference/vllm-b: no port named "http" (ports: "metrics"); skipped`,
    ]);
    assert.equal(await ask(url), 200);
    // Fixed: it serves, and nothing is reported again.
    stub.put("vllm-b", slice(ep("127.0.0.4")));
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.4")), "the fixed slice");
    assert.equal(front!.logs.filter((l) => l.startsWith("warn:")).length, 3);
  });

  it("an unreachable API server: the model is served (503), restarts are logged, nothing crashes", async () => {
    stub = await K8sStub.start();
    const closed = stub.url;
    await stub.down();
    await writeKubeconfig(dir, stub, closed);
    front = await discoveryFront(k8sFleet(), { baseDir: dir });
    await eventually(() => front!.logs.some((l) => /^warn: model m: kubernetes discovery .*: listing EndpointSlices failed: connect ECONNREFUSED/.test(l)), "the failure logged");
    const models = (await (await fetch(`${front.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ["m"]);
    assert.equal(await ask(front.url), 503);
  });

  it("credentials the API server refuses are logged with its status, and retried", async () => {
    stub = await K8sStub.start();
    stub.put("vllm-a", slice(ep("127.0.0.2")));
    await writeKubeconfig(dir, { url: stub.url, namespace: stub.namespace, token: "wrong" });
    front = await discoveryFront(k8sFleet(), { baseDir: dir });
    await eventually(() => front!.logs.filter((l) => l.includes("listing EndpointSlices failed: HTTP 401")).length >= 2, "two refusals logged");
    assert.equal(await ask(front.url), 503);
  });

  it("the stub speaks the protocol: a token is required, BOOKMARK events only for allowWatchBookmarks=true", async () => {
    stub = await K8sStub.start();
    stub.put("vllm-a", slice(ep("127.0.0.2")));
    const path = `${stub.url}/apis/discovery.k8s.io/v1/namespaces/${stub.namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dvllm`;
    assert.equal((await fetch(path)).status, 401);
    const auth = { authorization: `Bearer ${stub.token}` };
    const list = (await (await fetch(path, { headers: auth })).json()) as { kind: string; metadata: { resourceVersion: string }; items: unknown[] };
    assert.equal(list.kind, "EndpointSliceList");
    assert.equal(list.items.length, 1);
    const watch = async (bookmarks: boolean): Promise<string[]> => {
      const res = await fetch(`${path}&watch=1&resourceVersion=${list.metadata.resourceVersion}${bookmarks ? "&allowWatchBookmarks=true" : ""}`, { headers: auth });
      const reader = res.body!.getReader();
      const types: string[] = [];
      const decoder = new TextDecoder();
      let text = "";
      while (!types.includes("DELETED")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        types.splice(0, types.length, ...text.split("\n").filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { type: string }).type));
      }
      await reader.cancel();
      return types;
    };
    const plain = watch(false);
    const withBookmarks = watch(true);
    await eventually(() => stub.watches === 2, "both watches open");
    stub.bookmark();
    stub.put("vllm-a", slice(ep("127.0.0.3")));
    stub.delete("vllm-a");
    assert.deepEqual(await plain, ["MODIFIED", "DELETED"]);
    assert.deepEqual(await withBookmarks, ["BOOKMARK", "MODIFIED", "DELETED"]);
  });

  it("no new request is routed to an endpoint after its DELETED event", async () => {
    const url = await startWith({ "vllm-2": slice(ep("127.0.0.2")), "vllm-3": slice(ep("127.0.0.3")), "vllm-4": slice(ep("127.0.0.4")) });
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.3"), at("127.0.0.4")), "three endpoints");
    const doomed = byHost.get("127.0.0.3")!;
    // Which requests (numbered in the order the clients start them) reached the doomed engine.
    const reached: number[] = [];
    const onRequest = (info: { requestId: string | undefined }): void => void reached.push(Number(info.requestId?.slice(2)));
    doomed.events.on("request", onRequest);
    let started = 0;
    let deletedAfter: number | undefined;
    stub.onEvent = (e: WatchEvent) => {
      if (e.type === "DELETED") deletedAfter = started;
    };
    const statuses: number[] = [];
    const client = async (): Promise<void> => {
      while (deletedAfter === undefined ? started < 40 || reached.length === 0 : started < deletedAfter + 60) statuses.push(await ask(url, "m", `r-${++started}`));
    };
    const load = Promise.all(Array.from({ length: 8 }, client));
    await eventually(() => reached.length > 0 && started >= 40, "load on every endpoint");
    stub.delete("vllm-3");
    await load;
    doomed.events.off("request", onRequest);
    assert.ok(deletedAfter !== undefined && reached.some((n) => n <= deletedAfter!), "the endpoint served before it was deleted");
    assert.deepEqual(reached.filter((n) => n > deletedAfter!), [], `no request started after the DELETED event reached it (${statuses.length} requests)`);
    assert.ok(statuses.every((s) => s === 200), `every request answered: ${statuses.filter((s) => s !== 200).join(", ")}`);
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.4")), "the deleted endpoint gone");
  });
});
