import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { ConfigError, parseFleetConfig } from "../../src/fleet/config.js";
import { buildFleet } from "../../src/fleet/build.js";

const example = `
server:
  port: 9000
models:
  - name: llama-3.1-8b
    replicas:
      - engine: local
        path: models/llama-3.1-8b-q4.gguf
        parallel: 8
        count: 2
      - engine: openai
        url: http://gpu-7.internal:8000
        upstream_model: meta-llama/Llama-3.1-8B-Instruct
        api_key_env: VLLM_KEY
`;

describe("the fleet file", () => {
  it("parses the README example with defaults filled in", () => {
    const cfg = parseFleetConfig(parse(example));
    assert.equal(cfg.server.port, 9000);
    const [local, remote] = cfg.models[0]!.replicas;
    assert.equal(local?.engine, "local");
    assert.equal(local?.count, 2);
    assert.equal(remote?.engine === "openai" && remote.parallel, 64);
  });

  it("builds one replica per count, named by model and position", () => {
    const fleet = buildFleet(parseFleetConfig(parse(example)), { baseDir: "/srv", env: { VLLM_KEY: "k" } });
    assert.deepEqual(fleet.replicas().map((r) => `${r.id}:${r.engine.kind}`), ["llama-3.1-8b/0:local", "llama-3.1-8b/1:local", "llama-3.1-8b/2:openai"]);
  });

  it("refuses a missing API key variable by name", () => {
    assert.throws(() => buildFleet(parseFleetConfig(parse(example)), { baseDir: "/srv", env: {} }), /VLLM_KEY/);
  });

  it("lists every problem with its path", () => {
    const bad = { models: [{ name: "m", replicas: [{ engine: "local", paht: "x.gguf" }, { engine: "openai", url: "not a url" }] }, { name: "m", replicas: [{ engine: "tpu" }] }] };
    assert.throws(
      () => parseFleetConfig(bad, "fleet.yaml"),
      (e: Error) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /^fleet.yaml is not valid/);
        assert.match(e.message, /models\.0\.replicas\.0\.path/);
        assert.match(e.message, /models\.0\.replicas\.0: Unrecognized key.*paht/);
        assert.match(e.message, /models\.0\.replicas\.1\.url/);
        assert.match(e.message, /models\.1\.replicas\.0\.engine/);
        return true;
      },
    );
  });

  it("refuses a peer sync interval out of range, naming it", () => {
    const models = [{ name: "m", replicas: [{ engine: "local", path: "a.gguf" }] }];
    for (const peer_sync_ms of [-1, 0.5, 60_001, "50"]) assert.throws(() => parseFleetConfig({ server: { peer_sync_ms }, models }), /server\.peer_sync_ms/);
    assert.equal(parseFleetConfig({ server: { peer_sync_ms: 0 }, models }).server.peer_sync_ms, 0);
  });

  it("refuses spare sequences out of range, naming the replica's key", () => {
    const replica = (spare_sequences: unknown) => ({ models: [{ name: "m", replicas: [{ engine: "local", path: "a.gguf", spare_sequences }] }] });
    for (const bad of [-1, 1.5, 257]) assert.throws(() => parseFleetConfig(replica(bad)), /models\.0\.replicas\.0\.spare_sequences/);
    assert.doesNotThrow(() => parseFleetConfig(replica(0)));
  });

  it("refuses a model listed twice", () => {
    const twice = { models: [{ name: "m", replicas: [{ engine: "local", path: "a.gguf" }] }, { name: "m", replicas: [{ engine: "local", path: "b.gguf" }] }] };
    assert.throws(() => parseFleetConfig(twice), /"m" is listed twice/);
  });
});
