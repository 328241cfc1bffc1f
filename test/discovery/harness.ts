/**
 * The discovery tests' common parts: a gateway built as `flotilla serve`
 * builds it (fleet, Membership, Discovery started once it listens, reloads
 * told to Discovery), fake upstreams on several loopback addresses that
 * share one port (as pods of one Service do), and a view of the replicas
 * as GET /admin/replicas shows them.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { buildFleet } from "../../src/fleet/build.js";
import { parseFleetConfig, type FleetConfig } from "../../src/fleet/config.js";
import type { Fleet } from "../../src/fleet/fleet.js";
import { Discovery } from "../../src/gateway/discovery/index.js";
import type { DnsResolver } from "../../src/gateway/discovery/dns.js";
import type { Membership } from "../../src/gateway/membership.js";
import { createGatewayWithShutdown } from "../../src/gateway/server.js";
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from "../chaos/fake-upstream.js";
import { eventually } from "../helpers.js";

export interface DiscoveryFront {
  readonly url: string;
  readonly fleet: Fleet;
  readonly membership: Membership;
  readonly discovery: Discovery;
  /** Every line discovery logged, "warn: ..." or "info: ...". */
  readonly logs: string[];
  close(): Promise<void>;
}

/** The replica settings discovery tests give every discovered replica: quick probes, any model name (the fakes accept it). */
export const TEMPLATE = { upstream_model: "fake", probe_interval_ms: 100, timeout_ms: 5_000 };

export async function discoveryFront(raw: unknown, opts: { resolver?: DnsResolver; baseDir?: string } = {}): Promise<DiscoveryFront> {
  const config: FleetConfig = parseFleetConfig(raw);
  const baseDir = opts.baseDir ?? ".";
  const fleet = buildFleet(config, { baseDir, env: {} });
  await fleet.start(() => undefined);
  const gw = createGatewayWithShutdown({ logLevel: "silent", requestTimeoutMs: 30_000, readyWaitMs: 300, fleet, membership: { build: { baseDir, env: {} }, config } });
  const logs: string[] = [];
  const discovery = await Discovery.create(config, {
    membership: gw.membership,
    fleet,
    baseDir,
    env: {},
    log: (level, message) => logs.push(`${level}: ${message}`),
    ...(opts.resolver === undefined ? {} : { resolver: opts.resolver }),
  });
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  discovery.start();
  gw.membership.onReload(discovery);
  const url = `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    await discovery.stop();
    const closing = gw.app.close();
    gw.app.server.closeAllConnections();
    await closing;
  };
  return { url, fleet, membership: gw.membership, discovery, logs, close };
}

/**
 * Fake upstreams on 127.0.0.<first>, <first+1>, ... all on one port, so a
 * DNS A record or an EndpointSlice address names each. Retries with another
 * port if one address has it taken.
 */
export async function fakesOnAddresses(hosts: readonly string[], opts: FakeUpstreamOptions = {}): Promise<{ port: number; fakes: Map<string, FakeUpstream> }> {
  for (let attempt = 0; ; attempt++) {
    const first = await startFakeUpstream({ ...opts, host: hosts[0]! });
    const started = await Promise.allSettled(hosts.slice(1).map((host) => startFakeUpstream({ ...opts, host, port: first.port })));
    const ok = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    if (ok.length === hosts.length - 1) return { port: first.port, fakes: new Map([first, ...ok].map((f, i) => [hosts[i]!, f])) };
    await Promise.all([first, ...ok].map((f) => f.close()));
    if (attempt === 5) assert.fail(`no port free on all of ${hosts.join(", ")}`);
  }
}

export interface ReplicaRow {
  readonly id: string;
  readonly url?: string;
  readonly state: string;
  readonly source?: string;
}

export async function replicaRows(url: string): Promise<ReplicaRow[]> {
  return ((await (await fetch(`${url}/admin/replicas`)).json()) as { data: ReplicaRow[] }).data;
}

/** The replicas that are not on their way out, as url -> state ("healthy", "terminating", ...). */
export async function liveReplicas(url: string): Promise<Record<string, string>> {
  const rows = (await replicaRows(url)).filter((r) => r.state !== "removed");
  return Object.fromEntries(rows.map((r) => [r.url ?? r.id, r.state]).sort(([a], [b]) => a!.localeCompare(b!)));
}

/** Waits until the live replicas are exactly `expected` (url -> state), and every removed one has left the list. */
export async function converges(url: string, expected: Record<string, string>, what: string, timeoutMs = 10_000): Promise<void> {
  const want = JSON.stringify(Object.fromEntries(Object.entries(expected).sort(([a], [b]) => a.localeCompare(b))));
  let last = "";
  await eventually(
    async () => {
      const rows = await replicaRows(url);
      last = JSON.stringify(rows);
      return JSON.stringify(await liveReplicas(url)) === want && rows.every((r) => r.state !== "removed");
    },
    `${what}: ${want}`,
    timeoutMs,
  ).catch((err: Error) => assert.fail(`${err.message}; last seen ${last}`));
}

/** `{ url: "healthy" }` for each of `urls`. */
export const healthy = (...urls: string[]): Record<string, string> => Object.fromEntries(urls.map((u) => [u, "healthy"]));

/** One non-streaming chat request; resolves with its status. */
export async function ask(url: string, model = "m", requestId?: string): Promise<number> {
  const headers: Record<string, string> = { "content-type": "application/json", ...(requestId === undefined ? {} : { "x-request-id": requestId }) };
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 5 }) });
  await res.arrayBuffer();
  return res.status;
}
