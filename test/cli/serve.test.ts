import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { TINY_MODEL } from "../helpers.js";
import { CLI } from "../paths.js";


interface Cli {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function flotilla(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, ...env } });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function listeningUrl(cli: Cli): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const m = /listening on (http:\/\/[\d.:]+)/.exec(cli.stdout());
    if (m) return m[1]!;
    if (cli.child.exitCode !== null) throw new Error(`flotilla exited: ${cli.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`flotilla did not start: ${cli.stdout()} ${cli.stderr()}`);
}

describe("flotilla serve with no model given", () => {
  let home: string;
  let cli: Cli;
  let url: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), "flotilla-home-"));
    cli = flotilla(["serve", "--port", "0"], { FLOTILLA_HOME: home });
    url = await listeningUrl(cli);
  });
  after(async () => {
    cli.child.kill("SIGKILL");
    await rm(home, { recursive: true, force: true });
  });

  it("writes its own model, says the output is gibberish, and how to serve a real one", () => {
    assert.match(cli.stdout(), /gibberish/);
    assert.match(cli.stdout(), /flotilla serve --model PATH\.gguf/);
    assert.match(cli.stdout(), new RegExp(`model file: ${home}/flotilla-tiny-random-v1\\.gguf \\(written just now\\)`));
    assert.match(cli.stdout(), /flotilla-tiny-random-v1: 1\/1 replicas ready/);
  });

  it("binds loopback by default and serves the openai client", async () => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none", maxRetries: 0 });
    const [model] = (await client.models.list()).data;
    assert.equal(model?.id, "flotilla-tiny-random-v1");
    const res = await client.chat.completions.create({ model: model.id, messages: [{ role: "user", content: "Hello" }], max_tokens: 8 });
    assert.ok((res.choices[0]?.message.content ?? "").length > 0);
  });

  it("shuts down cleanly on SIGTERM", async () => {
    cli.child.kill("SIGTERM");
    assert.equal(await cli.exited, 0);
    assert.match(cli.stdout(), /shutting down/);
  });
});

describe("flotilla serve, sad paths", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-cfg-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("names every problem in a bad fleet file and exits non-zero", async () => {
    const file = join(dir, "fleet.yaml");
    await writeFile(file, "models:\n  - name: m\n    replicas:\n      - engine: local\n        parallel: 0\n");
    const cli = flotilla(["serve", "--config", file, "--port", "0"]);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr(), /fleet\.yaml is not valid/);
    assert.match(cli.stderr(), /models\.0\.replicas\.0\.path/);
    assert.match(cli.stderr(), /models\.0\.replicas\.0\.parallel/);
  });

  it("says which file is missing", async () => {
    const cli = flotilla(["serve", "--config", join(dir, "nope.yaml")]);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr(), /cannot read fleet file .*nope\.yaml: no such file/);
  });

  it("--model with no such file exits with the reason instead of serving nothing", async () => {
    const cli = flotilla(["serve", "--model", join(dir, "nope.gguf"), "--port", "0"]);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr(), /--model .*nope\.gguf: no such file; give the path of a GGUF model file/);
    assert.doesNotMatch(cli.stdout(), /listening/);
  });

  it("--model with a file llama.cpp cannot read exits non-zero, saying so", async () => {
    const file = join(dir, "broken.gguf");
    await writeFile(file, "not a model");
    const cli = flotilla(["serve", "--model", file, "--port", "0"]);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr(), /the model did not load \(.*GGUF.*\); give --model the path of a GGUF file/);
    assert.doesNotMatch(cli.stdout(), /listening/);
  });

  it("rejects a bad port before starting anything", async () => {
    const cli = flotilla(["serve", "--port", "http"]);
    assert.notEqual(await cli.exited, 0);
    assert.match(cli.stderr(), /port must be an integer from 0 to 65535/);
  });

  it("measures a replica that names its hardware against the hardware's physical limit, in /metrics and the dashboard's API", async () => {
    const file = join(dir, "limit.yaml");
    await writeFile(file, `server:\n  port: 0\n  store: none\nmodels:\n  - name: cpu\n    replicas:\n      - engine: local\n        path: ${TINY_MODEL}\n        hardware: cpu-zen5-core\n        context: 256\n`);
    const cli = flotilla(["serve", "--config", file]);
    try {
      const url = await listeningUrl(cli);
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "cpu", prompt: `count ${i}`, max_tokens: 8 }) });
        assert.equal(res.status, 200);
      }
      const metric = (text: string, name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1]);
      // The sampler folds the requests into the window at its next tick (every second).
      let text = "";
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
        text = await (await fetch(`${url}/metrics`)).text();
        if (metric(text, "flotilla_fleet_efficiency_ratio") > 0) break;
      }
      assert.equal(metric(text, "flotilla_replica_requests_ended_total"), 3);
      assert.ok(metric(text, "flotilla_replica_roofline_seconds_total") > 0, "the work's time at the limit is counted");
      const fleet = metric(text, "flotilla_fleet_efficiency_ratio");
      assert.ok(fleet > 0 && fleet <= 1, `fleet efficiency ${fleet}`);
      assert.equal(metric(text, "flotilla_replica_efficiency_ratio"), fleet, "one replica: the fleet's is its own");
      const kpis = ((await (await fetch(`${url}/ui/api/live`)).json()) as { kpis: Record<string, number> }).kpis;
      assert.ok(kpis.efficiency! > 0 && kpis.goodput === 1, JSON.stringify(kpis));
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  it("serves a fleet file of local GGUF replicas", async () => {
    const file = join(dir, "two.yaml");
    await writeFile(file, `server:\n  port: 0\nmodels:\n  - name: pair\n    replicas:\n      - engine: local\n        path: ${TINY_MODEL}\n        count: 2\n        context: 256\n`);
    const cli = flotilla(["serve", "--config", file]);
    try {
      const url = await listeningUrl(cli);
      assert.match(cli.stdout(), /pair: 2\/2 replicas ready/);
      const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "pair", prompt: "hi", max_tokens: 4 }) });
      assert.equal(res.status, 200);
    } finally {
      cli.child.kill("SIGKILL");
    }
  });
});
