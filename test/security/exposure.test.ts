/**
 * What an operator's pages and logs show, and to whom: /metrics and /ui name
 * tenants and their spend, so they take the admin rule unless opened on
 * purpose; credentials put in a URL never reach a log; a server bound to a
 * public address with no admin token says so when it starts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startGateway } from "../helpers.js";
import { ADMIN_TOKEN, securedGateway } from "./harness.js";
import { CLI } from "../paths.js";


describe("/metrics and /ui exposure", () => {
  it("with an admin token they need it: 401 without, and /ui asks a browser for it", async () => {
    const g = await securedGateway("admin-token");
    try {
      for (const path of ["/metrics", "/ui", "/ui/api/live", "/ui/api/sim"]) {
        const res = await fetch(g.url + path);
        assert.equal(res.status, 401, path);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Basic realm="flotilla"/, path);
        assert.doesNotMatch(await res.text(), /alice/, `${path} leaked a tenant name`);
      }
      const ok = await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(ok.status, 200);
    } finally {
      await g.close();
    }
  });

  it("metrics_public opens them to anyone, and only them", async () => {
    const g = await securedGateway("admin-token", { metricsPublic: true });
    try {
      assert.equal((await fetch(`${g.url}/metrics`)).status, 200);
      assert.equal((await fetch(`${g.url}/ui`)).status, 200);
      assert.equal((await fetch(`${g.url}/admin/replicas`)).status, 401);
    } finally {
      await g.close();
    }
  });
});

describe("credentials in URLs", () => {
  it("a key sent as ?api_key= is refused and never logged", async () => {
    const lines: string[] = [];
    const logDestination = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const g = await securedGateway("keys", { logLevel: "info", observability: { logDestination } });
    try {
      const res = await fetch(`${g.url}/v1/models?api_key=${g.key}&token=${g.key}&model=m`);
      assert.equal(res.status, 401);
      const log = lines.join("");
      assert.match(log, /api_key=\[redacted\]&token=\[redacted\]&model=m/);
      assert.ok(!log.includes(g.key!), "the key reached the log");
    } finally {
      await g.close();
    }
  });
});

describe("flotilla serve on a public address", () => {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-bind-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("warns at startup when no admin token is set", async () => {
    const fleet = join(dir, "fleet.yaml");
    writeFileSync(fleet, ["server:", "  store: none", "models:", "  - name: m", "    replicas:", "      - engine: openai", "        url: http://127.0.0.1:9", ""].join("\n"));
    const child = spawn(process.execPath, [...CLI, "serve", "--config", fleet, "--host", "0.0.0.0", "--port", "0"], { env: { ...process.env, FLOTILLA_HOME: dir } });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
    // Once it listens, stop it gracefully: every line it wrote has arrived by the time it exits.
    child.stdout.on("data", () => {
      if (out.includes("listening on")) child.kill("SIGTERM");
    });
    await new Promise((resolve) => child.on("close", resolve));
    assert.match(out, /listening on/);
    assert.match(out, /warning: bound to 0\.0\.0\.0 with no admin token/);
  });
});

describe("an engine's address", () => {
  it("never reaches a client: a failed replica is named by its id", async () => {
    // Ready on /health; every generation's connection is cut before an answer.
    const upstream = createServer((req, res) => (req.method === "GET" ? res.end("ok") : req.socket.destroy()));
    await new Promise<void>((done) => upstream.listen(0, "127.0.0.1", done));
    const address = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const gw = await startGateway({ models: [{ name: "m", replicas: [{ engine: "openai", url: `http://${address}`, metrics_interval_ms: 0 }] }] });
    try {
      for (const stream of [false, true]) {
        const res = await fetch(`${gw.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", prompt: "x", max_tokens: 4, stream }) });
        const text = await res.text();
        assert.ok(res.status >= 500, `${res.status} ${text}`);
        assert.match(text, /(cannot reach replica|replica) m\/0 /);
        assert.ok(!text.includes(address) && !text.includes("127.0.0.1"), `the answer names the engine's address: ${text}`);
      }
    } finally {
      await gw.close();
      upstream.close();
    }
  });
});
