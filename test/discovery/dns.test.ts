/**
 * DNS discovery against a real UDP DNS server of the test's own
 * (dns-server.ts), the provider's resolver pointed at it: the replica set
 * follows the name's A/AAAA records (or its SRV records), replicas really
 * serve (fake upstreams at those addresses), and a lookup that fails, times
 * out or finds nothing keeps the last set and says so.
 */
import assert from "node:assert/strict";
import { Resolver } from "node:dns/promises";
import { afterEach, describe, it } from "node:test";
import type { FakeUpstream } from "../chaos/fake-upstream.js";
import { startFakes } from "../chaos/harness.js";
import { eventually } from "../helpers.js";
import { startDnsServer, type DnsServer } from "./dns-server.js";
import { ask, converges, discoveryFront, fakesOnAddresses, healthy, liveReplicas, TEMPLATE, type DiscoveryFront } from "./harness.js";

const resolverFor = (dns: DnsServer): Resolver => {
  const r = new Resolver({ timeout: 150, tries: 1 });
  r.setServers([dns.address]);
  return r;
};

const dnsFleet = (section: Record<string, unknown>): unknown => ({
  models: [{ name: "m", discovery: { kind: "dns", interval_ms: 100, remove_wait_ms: 500, replica: TEMPLATE, ...section } }],
});

describe("dns discovery", () => {
  let dns: DnsServer | undefined;
  let front: DiscoveryFront | undefined;
  let fakes: FakeUpstream[] = [];
  afterEach(async () => {
    await front?.close();
    await dns?.close();
    await Promise.all(fakes.map((f) => f.close()));
    front = undefined;
    dns = undefined;
    fakes = [];
  });

  it("follows the A and AAAA records: scale up, scale down, and a failed lookup keeps the set", async () => {
    const hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"];
    const { port, fakes: byHost } = await fakesOnAddresses(hosts);
    fakes = [...byHost.values()];
    const at = (host: string): string => `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
    dns = await startDnsServer({ "vllm.test": { A: ["127.0.0.2"] } });
    front = await discoveryFront(dnsFleet({ name: "vllm.test", port }), { resolver: resolverFor(dns) });
    const url = front.url;

    await converges(url, healthy(at("127.0.0.2")), "one address, one replica");
    assert.equal(await ask(url), 200);

    dns.records.set("vllm.test", { A: ["127.0.0.2", "127.0.0.3", "127.0.0.4"], AAAA: ["::1"] });
    await converges(url, healthy(...hosts.map(at)), "scaled up, IPv6 in brackets");
    for (let i = 0; i < 8; i++) assert.equal(await ask(url), 200);

    dns.records.set("vllm.test", { A: ["127.0.0.3"] });
    await converges(url, healthy(at("127.0.0.3")), "scaled down");
    const before = byHost.get("127.0.0.3")!.stats.requests;
    for (let i = 0; i < 4; i++) assert.equal(await ask(url), 200);
    assert.equal(byHost.get("127.0.0.3")!.stats.requests, before + 4, "the one replica left serves everything");

    // Every kind of failure keeps the set: SERVFAIL, no answer at all (timeout), the name gone (NXDOMAIN).
    for (const [fail, code] of [["servfail", "ESERVFAIL"], ["drop", "ETIMEOUT"], ["nxdomain", "no A or AAAA record"]] as const) {
      if (fail === "nxdomain") dns.records.delete("vllm.test");
      else dns.mode = fail;
      await eventually(() => front!.logs.some((l) => l.startsWith("warn: model m: dns discovery of vllm.test:") && l.includes(code)), `the ${fail} failure logged`);
      const queries = dns.queries;
      await eventually(() => dns!.queries >= queries + 4, "a few more lookups");
      assert.deepEqual(await liveReplicas(url), healthy(at("127.0.0.3")), `${fail}: the last set stays`);
      assert.equal(await ask(url), 200);
      dns.mode = "answer";
    }

    dns.records.set("vllm.test", { A: ["127.0.0.2", "127.0.0.4"] });
    await converges(url, healthy(at("127.0.0.2"), at("127.0.0.4")), "resolving again");
    assert.ok(front.logs.some((l) => l === "info: model m: dns discovery of vllm.test: resolves again (2 addresses)"), front.logs.join("\n"));
  });

  it("with srv: true, each SRV record's target and port is a replica", async () => {
    fakes = await startFakes(3);
    const [a, b, c] = fakes as [FakeUpstream, FakeUpstream, FakeUpstream];
    const srv = (...fs: FakeUpstream[]) => ({ SRV: fs.map((f, i) => ({ target: `r${i}.vllm.test`, port: f.port })) });
    dns = await startDnsServer({ "_http._tcp.vllm.test": srv(a, b), "r0.vllm.test": { A: ["127.0.0.1"] }, "r1.vllm.test": { A: ["127.0.0.1"] }, "r2.vllm.test": { A: ["127.0.0.1"] } });
    front = await discoveryFront(dnsFleet({ name: "_http._tcp.vllm.test", srv: true }), { resolver: resolverFor(dns) });
    await converges(front.url, healthy(a.url, b.url), "two SRV records");
    dns.records.set("_http._tcp.vllm.test", srv(c, b));
    await converges(front.url, healthy(b.url, c.url), "one SRV record replaced");
    assert.equal(await ask(front.url), 200);
    // A target that no longer resolves fails the whole lookup: no partial set.
    dns.records.delete("r1.vllm.test");
    await eventually(() => front!.logs.some((l) => l.includes("r1.vllm.test has no A or AAAA record")), "the failed target logged");
    assert.deepEqual(await liveReplicas(front.url), healthy(b.url, c.url));
  });
});
