/**
 * Live membership: replicas added, changed and removed while the gateway
 * serves. A rolling change of every replica under load loses no request and
 * every answer stays exact; a removed replica's running requests resume on
 * another; bad changes are 400s that change nothing.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { planReload } from "../../src/gateway/membership.js";
import { buildFleet } from "../../src/fleet/build.js";
import { expectedAnswer, type FakeUpstream } from "./fake-upstream.js";
import { assertExact, chatPrompt, frontOver, startFakes, stream, type Front } from "./harness.js";
import { totalActive } from "../helpers.js";

const post = async (url: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

const replicaIds = async (url: string): Promise<string[]> => {
  const { data } = (await (await fetch(`${url}/admin/replicas`)).json()) as { data: { id: string }[] };
  return data.map((r) => r.id);
};

const entry = (f: FakeUpstream): Record<string, unknown> => ({ engine: "openai", url: f.url, upstream_model: "fake", probe_interval_ms: 100, timeout_ms: 5_000 });

describe("live membership", () => {
  let fakes: FakeUpstream[] = [];
  let front: Front | undefined;
  afterEach(async () => {
    await front?.close();
    await Promise.all(fakes.map((f) => f.close()));
    front = undefined;
    fakes = [];
  });

  it("a rolling replacement of every replica under load loses no request, and every answer is exact", async () => {
    fakes = await startFakes(4, { tokenDelayMs: 2 });
    const [a, b, c, d] = fakes as [FakeUpstream, FakeUpstream, FakeUpstream, FakeUpstream];
    front = await frontOver([a, b]);
    const url = front.url;
    let sent = 0;
    const results: Promise<void>[] = [];
    let stop = false;
    // 16 clients in a closed loop, each answer checked against the fake's pure function.
    const client = async (k: number): Promise<void> => {
      while (!stop) {
        const messages = chatPrompt(k * 1000 + sent++, 30);
        assertExact(await stream(url, messages, 200), expectedAnswer(messages, 200), `request ${sent}`);
      }
    };
    for (let k = 0; k < 16; k++) results.push(client(k));
    // Under load: two new replicas join, then each old one leaves at once (wait 0): what it runs moves on mid-answer.
    const added = await post(url, "/admin/replicas", { model: "m", replica: { ...entry(c), count: 1 } });
    assert.equal(added.status, 201, JSON.stringify(added.json));
    assert.equal((await post(url, "/admin/replicas", { model: "m", replica: entry(d) })).status, 201);
    const removedA = await post(url, "/admin/remove", { replica: "m/0", wait_s: 0 });
    assert.equal(removedA.status, 200, JSON.stringify(removedA.json));
    const removedB = await post(url, "/admin/remove", { replica: "m/1", wait_s: 0 });
    assert.equal(removedB.status, 200);
    const moved = (removedA.json.moved_requests as number) + (removedB.json.moved_requests as number);
    // And one more change of a new replica's settings: replaced, never absent.
    const updated = await post(url, "/admin/update", { replica: "m/2", set: { parallel: 32 }, wait_s: 5 });
    assert.equal(updated.status, 200, JSON.stringify(updated.json));
    const before = sent;
    while (sent < before + 40) await new Promise((r) => setImmediate(r));
    stop = true;
    await Promise.all(results);
    assert.ok(sent >= 60, `load ran throughout (${sent} requests)`);
    assert.ok(moved > 0, "some requests were running on a removed replica and moved on");
    assert.deepEqual(await replicaIds(url), ["m/3", "m/4"], "ids are never reused: m/2 was replaced by m/4");
    assert.equal(totalActive(front.fleet), 0);
  });

  it("a rolling reload of the fleet file during 500 requests drops none, and every answer is exact", async () => {
    fakes = await startFakes(4, { tokenDelayMs: 2 });
    const [a, b, c, d] = fakes as [FakeUpstream, FakeUpstream, FakeUpstream, FakeUpstream];
    const file = (...fs: FakeUpstream[]) => parseFleetConfig({ models: [{ name: "m", replicas: fs.map(entry) }] });
    let current = file(a, b);
    front = await frontOver([a, b], { gateway: { membership: { build: { baseDir: ".", env: {} }, config: current, load: () => Promise.resolve(current) } } });
    const url = front.url;
    let sent = 0;
    const clients: Promise<void>[] = [];
    for (let k = 0; k < 16; k++) {
      clients.push((async () => {
        while (sent < 500) {
          const messages = chatPrompt(50_000 + k * 1000 + sent++, 30);
          assertExact(await stream(url, messages, 200), expectedAnswer(messages, 200), `request ${sent}`);
        }
      })());
    }
    // The file changes three times under load, each change reloaded: a replica added, then the old ones replaced.
    for (const [i, next] of [file(a, b, c), file(b, c, d), file(c, d)].entries()) {
      const at = 100 * (i + 1);
      while (sent < at) await new Promise((r) => setImmediate(r));
      current = next;
      const r = await post(url, "/admin/reload", {});
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    await Promise.all(clients);
    assert.ok(sent >= 500);
    assert.equal((await replicaIds(url)).length, 2, "the last file's two replicas serve");
    assert.equal(totalActive(front.fleet), 0);
  });

  it("bad changes are 400s naming the field, and change nothing", async () => {
    fakes = await startFakes(1);
    front = await frontOver(fakes);
    const url = front.url;
    const cases: [string, unknown, string][] = [
      ["/admin/replicas", { model: "m", replica: { engine: "openai", url: "not a url" } }, "replica.url"],
      ["/admin/replicas", { model: "m", replica: { engine: "openai", url: fakes[0]!.url, paralel: 4 } }, "replica"],
      ["/admin/replicas", { model: "m", replica: { engine: "tpu" } }, "replica.engine"],
      ["/admin/replicas", { model: "bad name!", replica: entry(fakes[0]!) }, "model"],
      ["/admin/replicas", { model: "m", replica: { ...entry(fakes[0]!), hardware: "no-such-chip" } }, "replica.hardware"],
      ["/admin/remove", { replica: "m/9" }, "replica"],
      ["/admin/update", { replica: "m/0", set: { count: 3 } }, "set.count"],
      ["/admin/update", { replica: "m/0", set: { parallel: 0 } }, "set.parallel"],
      ["/admin/reload", {}, null as unknown as string],
    ];
    for (const [path, body, param] of cases) {
      const r = await post(url, path, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      const error = r.json.error as { type: string; param: string | null; message: string };
      assert.equal(error.type, "invalid_request_error");
      if (param !== null) assert.equal(error.param, param, error.message);
    }
    assert.deepEqual(await replicaIds(url), ["m/0"]);
    const ok = await stream(url, chatPrompt(1), 50);
    assert.equal(ok.status, 200);
  });

  it("a model added live is served, and one whose every replica left answers 503, not 404", async () => {
    fakes = await startFakes(2);
    front = await frontOver([fakes[0]!], { server: { ready_wait_ms: 0 } });
    const url = front.url;
    assert.equal((await post(url, "/admin/replicas", { model: "other", replica: entry(fakes[1]!) })).status, 201);
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id).sort(), ["m", "other"]);
    const messages = chatPrompt(7);
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "other", messages, max_tokens: 20 }) });
    assert.equal(r.status, 200);
    assert.equal((await post(url, "/admin/remove", { replica: "other/0", wait_s: 0 })).status, 200);
    const gone = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "other", messages, max_tokens: 20 }) });
    assert.equal(gone.status, 503, await gone.text());
  });
});

describe("planReload", () => {
  const fileWith = (urls: Record<string, string[]>, extra: Record<string, unknown> = {}) =>
    parseFleetConfig({ models: Object.entries(urls).map(([name, list]) => ({ name, replicas: list.map((url) => ({ engine: "openai", url, ...extra })) })) });

  it("keeps replicas whose entry is unchanged, adds new entries, removes those gone, and forgets dropped models", () => {
    const fleet = buildFleet(fileWith({ m: ["http://a:1", "http://b:1"], old: ["http://c:1"] }), { baseDir: ".", env: {} });
    const plan = planReload(fleet, fileWith({ m: ["http://b:1", "http://d:1"], n: ["http://e:1"] }));
    assert.deepEqual(plan.add.map((x) => `${x.model} ${x.rc.engine === "openai" ? x.rc.url : ""}`), ["m http://d:1", "n http://e:1"]);
    assert.deepEqual(plan.remove.map((r) => r.id).sort(), ["m/0", "old/0"]);
    assert.deepEqual(plan.forget, ["old"]);
    assert.equal(plan.kept, 1);
  });

  it("a changed setting replaces the replica; an unchanged file changes nothing", () => {
    const config = fileWith({ m: ["http://a:1"] });
    const fleet = buildFleet(config, { baseDir: ".", env: {} });
    assert.deepEqual(planReload(fleet, config), { add: [], remove: [], forget: [], kept: 1 });
    const changed = planReload(fleet, fileWith({ m: ["http://a:1"] }, { parallel: 8 }));
    assert.equal(changed.add.length, 1);
    assert.deepEqual(changed.remove.map((r) => r.id), ["m/0"]);
  });
});
