/**
 * Bad discovery input is an error at load naming its field, as every other
 * fleet-file problem is: in the schema (unknown kind, missing name or
 * service, a replica template with a url), and when the sections are built
 * (a kubeconfig that cannot be read or is plain http without saying so, a
 * replica setting that does not check out).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError, parseFleetConfig } from "../../src/fleet/config.js";
import { Discovery } from "../../src/gateway/discovery/index.js";

const withDiscovery = (discovery: unknown, more: Record<string, unknown> = {}): unknown => ({ models: [{ name: "m", discovery, ...more }] });

const problems = (raw: unknown): string => {
  try {
    parseFleetConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  return assert.fail("parsed");
};

describe("discovery in the fleet file", () => {
  it("a model needs replicas, a discovery section, or both", () => {
    assert.match(problems({ models: [{ name: "m" }] }), /models\.0\.replicas: a model needs replicas, a discovery section, or both/);
    assert.match(problems({ models: [{ name: "m", replicas: [] }] }), /models\.0\.replicas: a model needs replicas/);
    const both = parseFleetConfig(withDiscovery({ kind: "dns", name: "vllm.svc", port: 8000 }, { replicas: [{ engine: "openai", url: "http://a:1" }] }));
    assert.equal(both.models[0]!.replicas.length, 1);
    const only = parseFleetConfig(withDiscovery({ kind: "dns", name: "vllm.svc", port: 8000 }));
    assert.deepEqual(only.models[0]!.discovery, {
      kind: "dns",
      name: "vllm.svc",
      port: 8000,
      srv: false,
      interval_ms: 5_000,
      remove_wait_ms: 30_000,
      replica: { engine: "openai", parallel: 64, max_queue: 256, timeout_ms: 60_000, probe_interval_ms: 5_000, metrics_interval_ms: 1_000 },
    });
  });

  it("each mistake names its field", () => {
    const cases: [unknown, RegExp][] = [
      [{ kind: "consul", name: "x" }, /models\.0\.discovery\.kind: Invalid discriminator value\. Expected 'dns' \| 'kubernetes'/],
      [{ name: "x", port: 1 }, /models\.0\.discovery\.kind: Invalid discriminator value/],
      [{ kind: "dns", port: 8000 }, /models\.0\.discovery\.name: required: the DNS name whose addresses are the replicas/],
      [{ kind: "dns", name: "bad name!", port: 8000 }, /models\.0\.discovery\.name: a DNS name/],
      [{ kind: "dns", name: "vllm.svc" }, /models\.0\.discovery\.port: required: the port the engines listen on \(or srv: true/],
      [{ kind: "dns", name: "_http._tcp.vllm.svc", srv: true, port: 80 }, /models\.0\.discovery\.port: srv: true takes each replica's port from its SRV record/],
      [{ kind: "dns", name: "vllm.svc", port: 8000, interval_ms: 5 }, /models\.0\.discovery\.interval_ms/],
      [{ kind: "kubernetes" }, /models\.0\.discovery\.service: required: service \(the Service whose EndpointSlices to watch\) or selector/],
      [{ kind: "kubernetes", service: "a", selector: "app=a" }, /models\.0\.discovery\.service: required: service .* one of the two/],
      [{ kind: "kubernetes", service: "a", replica: { url: "http://x:1" } }, /models\.0\.discovery\.replica: Unrecognized key: "url"/],
      [{ kind: "kubernetes", service: "a", replica: { engine: "local" } }, /models\.0\.discovery\.replica\.engine/],
      [{ kind: "kubernetes", service: "a", namespce: "x" }, /models\.0\.discovery: Unrecognized key: "namespce"/],
    ];
    for (const [section, expected] of cases) assert.match(problems(withDiscovery(section)), expected, JSON.stringify(section));
  });
});

describe("Discovery.create checks each section", () => {
  const create = (section: unknown, opts: { baseDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Discovery> =>
    Discovery.create(parseFleetConfig(withDiscovery(section)), {
      membership: { add: async () => [], release: async () => undefined, setPhase: () => undefined },
      fleet: { declare: () => undefined },
      baseDir: opts.baseDir ?? ".",
      env: opts.env ?? {},
      log: () => undefined,
    });

  it("a kubeconfig that cannot be used is an error naming the field", async () => {
    const dir = await mkdtemp(join(tmpdir(), "flotilla-kubeconfig-"));
    try {
      await assert.rejects(create({ kind: "kubernetes", service: "vllm", kubeconfig: "missing.yaml" }, { baseDir: dir }), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, new RegExp(`^models\\.0\\.discovery\\.kubeconfig: cannot load ${dir}/missing\\.yaml: `));
        return true;
      });
      const cluster = (server: Record<string, unknown>) =>
        JSON.stringify({ clusters: [{ name: "c", cluster: server }], users: [{ name: "u", user: { token: "t" } }], contexts: [{ name: "x", context: { cluster: "c", user: "u" } }], "current-context": "x" });
      await writeFile(join(dir, "http.yaml"), cluster({ server: "http://127.0.0.1:1" }));
      await assert.rejects(create({ kind: "kubernetes", service: "vllm", kubeconfig: "http.yaml" }, { baseDir: dir }), /models\.0\.discovery\.kubeconfig: cluster c is plain http \(http:\/\/127\.0\.0\.1:1\): set insecure-skip-tls-verify: true/);
      await writeFile(join(dir, "nocontext.yaml"), JSON.stringify({ clusters: [], users: [], contexts: [] }));
      await assert.rejects(create({ kind: "kubernetes", service: "vllm", kubeconfig: "nocontext.yaml" }, { baseDir: dir }), /models\.0\.discovery\.kubeconfig: .*has no current context with a cluster/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the replica settings are checked as a file entry's are", async () => {
    const dns = { kind: "dns", name: "vllm.svc", port: 8000 };
    await assert.rejects(create({ ...dns, replica: { api_key_env: "NO_SUCH_KEY" } }), /models\.0\.discovery\.replica\.api_key_env: environment variable NO_SUCH_KEY is not set/);
    await assert.rejects(create({ ...dns, replica: { hardware: "no-such-chip" } }), /models\.0\.discovery\.replica\.hardware: /);
    const ok = await create({ ...dns, replica: { api_key_env: "KEY", hardware: "h100", spec: "llama-3.1-8b" } }, { env: { KEY: "k" } });
    assert.deepEqual([...ok.labels], [["m", "dns discovery of vllm.svc"]]);
  });
});
