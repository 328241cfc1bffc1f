/**
 * `flotilla serve --config FILE` follows its fleet file: an edit is applied
 * while it serves, SIGHUP reloads it, a broken file changes nothing, and a
 * server setting that needs a restart is reported rather than half-applied.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startFakeUpstream, type FakeUpstream } from "../chaos/fake-upstream.js";
import { eventually } from "../helpers.js";
import { CLI } from "../paths.js";


const fleetFile = (urls: readonly string[], server: Record<string, unknown> = {}): string =>
  JSON.stringify({ server: { store: "none", ...server }, models: [{ name: "m", replicas: urls.map((url) => ({ engine: "openai", url, upstream_model: "fake" })) }] });

describe("flotilla serve follows its fleet file", () => {
  let dir: string;
  let path: string;
  let fakes: FakeUpstream[];
  let child: ReturnType<typeof spawn>;
  let out = "";
  let err = "";
  let url = "";

  /** Writes the file as editors and ConfigMaps do: a new file renamed over the old one. */
  const replaceFile = async (text: string): Promise<void> => {
    await writeFile(`${path}.tmp`, text);
    await rename(`${path}.tmp`, path);
  };
  const ids = async (): Promise<string[]> => ((await (await fetch(`${url}/admin/replicas`)).json()) as { data: { id: string }[] }).data.map((r) => r.id);
  const reloads = (): number => out.split("fleet file reloaded").length - 1;

  before(async () => {
    fakes = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    dir = await mkdtemp(join(tmpdir(), "flotilla-reload-"));
    path = join(dir, "fleet.yaml");
    await writeFile(path, fleetFile([fakes[0]!.url]));
    child = spawn(process.execPath, [...CLI, "serve", "--config", path, "--port", "0"], { env: { ...process.env, FLOTILLA_HOME: dir } });
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    await eventually(() => /listening on (http:\/\/[\d.:]+)/.test(out) || child.exitCode !== null, "the gateway to listen", 60_000);
    url = /listening on (http:\/\/[\d.:]+)/.exec(out)?.[1] ?? assert.fail(`did not start: ${err}`);
  });
  after(async () => {
    child.kill("SIGKILL");
    await Promise.all(fakes.map((f) => f.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it("an edit adds a replica while serving", async () => {
    await replaceFile(fleetFile([fakes[0]!.url, fakes[1]!.url]));
    await eventually(async () => (await ids()).length === 2, "the new replica", 10_000);
    assert.deepEqual(await ids(), ["m/0", "m/1"]);
    assert.match(out, /fleet file reloaded \(file changed\): 1 added, 0 removed, 1 unchanged/);
  });

  it("a broken file changes nothing and says why", async () => {
    await replaceFile(fleetFile(["not a url"]));
    await eventually(() => /fleet file not reloaded \(file changed\): .*models\.0\.replicas\.0\.url/s.test(err), "the refusal", 10_000);
    assert.deepEqual(await ids(), ["m/0", "m/1"]);
  });

  it("SIGHUP reloads; a removed entry drains; a server setting is reported as needing a restart", async () => {
    const before = reloads();
    await replaceFile(fleetFile([fakes[1]!.url], { request_timeout_ms: 5_000 }));
    await eventually(() => reloads() > before, "the file change", 10_000);
    assert.deepEqual(await ids(), ["m/1"]);
    assert.match(out, /1 removed, 1 unchanged; server\.request_timeout_ms changed and take a restart/);
    const again = reloads();
    child.kill("SIGHUP");
    await eventually(() => reloads() > again, "the SIGHUP reload", 10_000);
    assert.match(out.slice(out.lastIndexOf("fleet file reloaded")), /\(SIGHUP\): 0 added, 0 removed, 1 unchanged/);
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 5 }) });
    assert.equal(r.status, 200);
  });
});

describe("flotilla serve follows a fleet file mounted from a ConfigMap", () => {
  let dir: string;
  let fakes: FakeUpstream[];
  let child: ReturnType<typeof spawn>;
  let out = "";
  let url = "";

  /** What the kubelet does (atomic_writer.go): the content in a new hidden folder, then the `..data` link swapped to it. */
  const publish = async (version: number, text: string): Promise<void> => {
    const folder = `..2026_12_04_${version}`;
    await mkdir(join(dir, folder));
    await writeFile(join(dir, folder, "fleet.yaml"), text);
    await symlink(folder, join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
  };

  before(async () => {
    fakes = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    dir = await mkdtemp(join(tmpdir(), "flotilla-configmap-"));
    await publish(1, fleetFile([fakes[0]!.url]));
    await symlink("..data/fleet.yaml", join(dir, "fleet.yaml"));
    child = spawn(process.execPath, [...CLI, "serve", "--config", join(dir, "fleet.yaml"), "--port", "0"], { env: { ...process.env, FLOTILLA_HOME: dir } });
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    await eventually(() => /listening on (http:\/\/[\d.:]+)/.test(out) || child.exitCode !== null, "the gateway to listen", 60_000);
    url = /listening on (http:\/\/[\d.:]+)/.exec(out)?.[1] ?? assert.fail("did not start");
  });
  after(async () => {
    child.kill("SIGKILL");
    await Promise.all(fakes.map((f) => f.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it("a ConfigMap update (the ..data link swapped) is applied", async () => {
    await publish(2, fleetFile([fakes[0]!.url, fakes[1]!.url]));
    const ids = async (): Promise<string[]> => ((await (await fetch(`${url}/admin/replicas`)).json()) as { data: { id: string }[] }).data.map((r) => r.id);
    await eventually(async () => (await ids()).length === 2, "the replica the new ConfigMap adds", 10_000);
    assert.match(out, /fleet file reloaded \(file changed\): 1 added/);
  });
});
