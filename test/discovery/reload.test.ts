/**
 * Reloads of the fleet file and discovery: discovered replicas are their
 * provider's, so a reload that changes only the file's own replicas leaves
 * them as they are; a changed discovery section restarts its provider (its
 * replicas replaced where their settings changed); a section or a model
 * gone takes its replicas with it; a bad new section refuses the reload.
 */
import assert from "node:assert/strict";
import { Resolver } from "node:dns/promises";
import { after, before, describe, it } from "node:test";
import { parseFleetConfig } from "../../src/fleet/config.js";
import type { FakeUpstream } from "../chaos/fake-upstream.js";
import { startFakes } from "../chaos/harness.js";
import { eventually } from "../helpers.js";
import { startDnsServer, type DnsServer } from "./dns-server.js";
import { ask, converges, discoveryFront, fakesOnAddresses, replicaRows, TEMPLATE, type DiscoveryFront } from "./harness.js";

describe("reloads and discovery", () => {
  let dns: DnsServer;
  let front: DiscoveryFront;
  let fakes: FakeUpstream[];
  let port: number;
  const at = (host: string): string => `http://${host}:${port}`;
  const dnsSection = (name: string, replica: Record<string, unknown> = {}) => ({ kind: "dns", name, port, interval_ms: 100, remove_wait_ms: 200, replica: { ...TEMPLATE, ...replica } });
  const staticEntry = (f: FakeUpstream) => ({ engine: "openai", url: f.url, ...TEMPLATE });
  const ids = async (): Promise<Record<string, string>> => Object.fromEntries((await replicaRows(front.url)).map((r) => [r.url!, r.id]));
  const reload = (raw: unknown) => front.membership.reload(parseFleetConfig(raw), 200);

  before(async () => {
    const onAddresses = await fakesOnAddresses(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    port = onAddresses.port;
    fakes = [...onAddresses.fakes.values(), ...(await startFakes(2))];
    dns = await startDnsServer({ "m.test": { A: ["127.0.0.2", "127.0.0.3"] }, "d.test": { A: ["127.0.0.4"] } });
    const resolver = new Resolver({ timeout: 150, tries: 1 });
    resolver.setServers([dns.address]);
    front = await discoveryFront(
      {
        models: [
          { name: "m", replicas: [staticEntry(fakes[3]!)], discovery: dnsSection("m.test") },
          { name: "d", discovery: dnsSection("d.test") },
        ],
      },
      { resolver },
    );
  });
  after(async () => {
    await front.close();
    await dns.close();
    await Promise.all(fakes.map((f) => f.close()));
  });

  it("walks a fleet through reloads", async () => {
    const s1 = fakes[3]!.url;
    const s2 = fakes[4]!.url;
    const all = { [s1]: "healthy", [at("127.0.0.2")]: "healthy", [at("127.0.0.3")]: "healthy", [at("127.0.0.4")]: "healthy" };
    await converges(front.url, all, "the file's replica and three discovered");
    const before = await ids();
    assert.deepEqual((await replicaRows(front.url)).map((r) => r.source ?? "file").sort(), ["dns", "dns", "dns", "file"]);
    // A discovered replica's settings are its section's: changing one by hand is refused.
    const update = await fetch(`${front.url}/admin/update`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ replica: before[at("127.0.0.2")], set: { parallel: 2 } }) });
    assert.equal(update.status, 400);
    assert.match(((await update.json()) as { error: { message: string } }).error.message, /comes from dns discovery; change the replica settings of its model's discovery section/);

    // The file's own replicas change: discovered ones are untouched (same ids).
    const withS2 = { models: [{ name: "m", replicas: [staticEntry(fakes[3]!), staticEntry(fakes[4]!)], discovery: dnsSection("m.test") }, { name: "d", discovery: dnsSection("d.test") }] };
    const r1 = await reload(withS2);
    assert.deepEqual({ added: r1.added.length, removed: r1.removed, discovery: r1.discovery }, { added: 1, removed: [], discovery: [] });
    await converges(front.url, { ...all, [s2]: "healthy" }, "one more file replica");
    const afterFileChange = await ids();
    for (const host of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) assert.equal(afterFileChange[at(host)], before[at(host)], `${host} kept`);

    // A changed discovery section restarts its provider: each endpoint's replica is replaced by one with the new settings.
    const r2 = await reload({ ...withS2, models: [{ ...withS2.models[0]!, discovery: dnsSection("m.test", { parallel: 8 }) }, withS2.models[1]!] });
    assert.deepEqual(r2.discovery, ["m"]);
    const moved = async (): Promise<boolean> => {
      const now = await ids();
      return now[at("127.0.0.2")] !== before[at("127.0.0.2")] && now[at("127.0.0.3")] !== before[at("127.0.0.3")];
    };
    await eventually(moved, "new replicas for both endpoints");
    await converges(front.url, { ...all, [s2]: "healthy" }, "both replaced");
    const replaced = await ids();
    assert.equal(replaced[at("127.0.0.4")], before[at("127.0.0.4")], "model d's section did not change");
    const parallel = front.fleet.replicas().filter((r) => r.source === "dns" && r.model === "m").map((r) => r.config?.engine === "openai" && r.config.parallel);
    assert.deepEqual(parallel, [8, 8]);

    // A model gone from the file: its provider stops and its replicas leave; a section gone: its replicas leave, the file's stay.
    const r3 = await reload({ models: [{ name: "m", replicas: [staticEntry(fakes[3]!)] }] });
    assert.deepEqual([...r3.discovery].sort(), ["d", "m"]);
    await converges(front.url, { [s1]: "healthy" }, "only the file's replica");
    const models = (await (await fetch(`${front.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ["m"]);
    dns.records.set("m.test", { A: ["127.0.0.3"] });
    assert.equal(await ask(front.url), 200);

    // A bad new section refuses the whole reload, naming the field; nothing changes.
    const bad = { models: [{ name: "m", replicas: [staticEntry(fakes[3]!)] }, { name: "k", discovery: { kind: "kubernetes", service: "vllm", kubeconfig: "/nonexistent/kubeconfig" } }] };
    await assert.rejects(reload(bad), /models\.1\.discovery\.kubeconfig: cannot load \/nonexistent\/kubeconfig/);
    await converges(front.url, { [s1]: "healthy" }, "unchanged");

    // A discovery-only model added by a reload is served once its name resolves.
    const r4 = await reload({ models: [{ name: "m", replicas: [staticEntry(fakes[3]!)] }, { name: "d", discovery: dnsSection("m.test") }] });
    assert.deepEqual(r4.discovery, ["d"]);
    await converges(front.url, { [s1]: "healthy", [at("127.0.0.3")]: "healthy" }, "the new model's replica");
    assert.equal(await ask(front.url, "d"), 200);
  });
});
