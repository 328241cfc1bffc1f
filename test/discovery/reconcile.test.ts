/**
 * The reconciler between a provider's reports and Membership, with a
 * Membership whose adds finish when the test says: the orders of events
 * that a live fleet only meets by chance.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Replica } from "../../src/fleet/fleet.js";
import { DiscoveredReplicas, type Section } from "../../src/gateway/discovery/reconcile.js";
import type { ReplicaPhase } from "../../src/scheduler/replica-state.js";

const SECTION: Section = { source: "dns", label: "dns discovery of t", template: { engine: "openai", parallel: 1, max_queue: 1, timeout_ms: 1000, probe_interval_ms: 100, metrics_interval_ms: 0 }, removeWaitMs: 0 };

/** A Membership whose adds wait for `finish()`, recording what happens. */
function slowMembership() {
  const pending: (() => void)[] = [];
  const released: string[] = [];
  let n = 0;
  const membership = {
    add: (_model: string, raw: unknown, joining: { phase?: ReplicaPhase } = {}) =>
      new Promise<Replica[]>((resolve) => {
        const replica = { id: `m/${n++}`, url: (raw as { url: string }).url, health: { phase: joining.phase ?? "serving" } } as unknown as Replica;
        pending.push(() => resolve([replica]));
      }),
    release: async (replica: Replica) => {
      replica.health.phase = "removed";
      released.push(replica.id);
    },
    setPhase: (replica: Replica, phase: Exclude<ReplicaPhase, "removed">) => {
      if (replica.health.phase !== "removed") replica.health.phase = phase;
    },
  };
  const finish = async (): Promise<void> => {
    for (const done of pending.splice(0)) done();
    await new Promise((r) => setImmediate(r));
  };
  return { membership, finish, released };
}

const targets = (entries: Record<string, "serving" | "terminating">) => new Map(Object.entries(entries));

describe("DiscoveredReplicas", () => {
  it("an endpoint gone while its replica starts leaves as soon as it joins; the latest report wins", async () => {
    const { membership, finish, released } = slowMembership();
    const logs: string[] = [];
    const set = new DiscoveredReplicas("m", SECTION, membership, (level, m) => logs.push(`${level}: ${m}`));
    set.sync(targets({ "http://a": "serving", "http://b": "serving" }));
    set.sync(targets({ "http://b": "terminating", "http://c": "serving" }));
    await finish(); // a and b join: a is no longer wanted, b joins terminating
    assert.deepEqual(released, ["m/0"]);
    await finish(); // c, asked for while the first adds ran
    const held = [...set.replicas].map(([url, r]) => `${url} ${r.id} ${r.health.phase}`);
    assert.deepEqual(held, ["http://b m/1 terminating", "http://c m/2 serving"]);
  });

  it("an operator's drain stands until the endpoint itself changes; a report with nothing is a warning", async () => {
    const { membership, finish, released } = slowMembership();
    const logs: string[] = [];
    const set = new DiscoveredReplicas("m", SECTION, membership, (level, m) => logs.push(`${level}: ${m}`));
    set.sync(targets({ "http://a": "serving" }));
    await finish();
    const a = set.replicas.get("http://a")!;
    a.health.phase = "draining";
    set.sync(targets({ "http://a": "serving" }));
    assert.equal(a.health.phase, "draining");
    set.sync(targets({ "http://a": "terminating" }));
    assert.equal(a.health.phase, "terminating");
    set.sync(new Map());
    assert.deepEqual(released, ["m/0"]);
    assert.equal(a.health.phase, "removed", "out of the router in the same turn as the report");
    assert.ok(logs.includes("warn: model m: dns discovery of t finds no endpoint; the model answers 503 until one comes"), logs.join("\n"));
  });
});
