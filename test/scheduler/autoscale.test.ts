import { test } from "node:test";
import assert from "node:assert/strict";
import { Autoscaler, AUTOSCALE_DEFAULTS, scalingActions, type AutoscaleSettings } from "../../src/scheduler/autoscale.js";

const settings = (over: Partial<AutoscaleSettings> = {}): AutoscaleSettings => ({ ...AUTOSCALE_DEFAULTS, min: 1, max: 20, ...over });

test("reactive: enough replicas for the running and waiting work at the target utilisation, within min and max", () => {
  const rows: [string, Partial<AutoscaleSettings>, number, number, number][] = [
    // name, settings, running, waiting, want (4 slots a replica, 0.7 target: 2.8 sequences a replica)
    ["idle pool keeps min", { min: 2 }, 0, 0, 2],
    ["14 sequences of work", {}, 10, 4, 5],
    ["an exact multiple is not rounded up", {}, 28, 0, 10],
    ["one sequence over needs one more", {}, 28, 1, 11],
    ["capped at max", { max: 6 }, 100, 50, 6],
    ["min 0 lets an idle pool go to nothing", { min: 0 }, 0, 0, 0],
    ["target 1: every slot", { targetUtilisation: 1 }, 12, 0, 3],
  ];
  for (const [name, over, running, waiting, want] of rows) {
    assert.equal(new Autoscaler(settings(over)).desired(0, { running, waiting, slotsPerReplica: 4 }), want, name);
  }
});

test("scaling up is at once; scaling down waits until every recommendation over the cooldown was lower", () => {
  const a = new Autoscaler(settings({ cooldownMs: 300_000 }));
  const at = (s: number, running: number): number => a.desired(s * 1000, { running, waiting: 0, slotsPerReplica: 4 });
  assert.equal(at(0, 6), 3);
  assert.equal(at(30, 17), 7, "up at once");
  assert.equal(at(60, 3), 7, "a dip inside the cooldown removes nothing");
  assert.equal(at(200, 3), 7);
  assert.equal(at(329, 3), 7, "the 7 is 299 s old");
  assert.equal(at(331, 3), 2, "past the cooldown, down to what the work needs");
  assert.equal(at(340, 12), 5, "and up again at once");
});

test("predictive: the arrival trend over the window, extrapolated by the provisioning delay, sizes the pool ahead of the work", () => {
  const a = new Autoscaler(settings({ mode: "predictive", provisioningMs: 180_000, windowMs: 600_000 }));
  // Arrivals rising by 1 req/s every 10 s: 0 req/s in the first 10 s bucket, 59 in the last.
  for (let i = 0; i < 60; i++) a.arrived(i * 10_000 + 5_000, 10 * i);
  assert.equal(a.forecastRps(600_000, 0), 59.5, "the line at now");
  assert.equal(a.forecastRps(600_000, 180_000), 77.5, "and 180 s on");
  // 77.5 req/s over 10 req/s a replica at 0.7: 11.07, so 12; the work now alone would need 1.
  assert.equal(a.desired(600_000, { running: 2, waiting: 0, slotsPerReplica: 4, replicaRps: 10 }), 12);
  // Reactive mode, or no capacity figure, ignores the forecast.
  const r = new Autoscaler(settings({ provisioningMs: 180_000 }));
  for (let i = 0; i < 60; i++) r.arrived(i * 10_000 + 5_000, 10 * i);
  assert.equal(r.desired(600_000, { running: 2, waiting: 0, slotsPerReplica: 4, replicaRps: 10 }), 1);
  assert.equal(a.desired(600_001, { running: 2, waiting: 0, slotsPerReplica: 4 }), 12, "held by the cooldown, not the forecast");
});

test("the forecast: flat and falling rates, short and empty histories, arrivals older than the window", () => {
  const flat = new Autoscaler(settings({ windowMs: 100_000 }));
  for (let i = 0; i < 30; i++) flat.arrived(i * 10_000, 50);
  assert.equal(flat.forecastRps(300_000, 600_000), 5, "a flat 5 req/s stays 5 however far ahead; only the last 10 buckets count");
  const falling = new Autoscaler(settings());
  for (let i = 0; i < 20; i++) falling.arrived(i * 10_000, 200 - 10 * i);
  assert.equal(falling.forecastRps(200_000, 600_000), 0, "a falling rate is never forecast below 0");
  const empty = new Autoscaler(settings());
  assert.equal(empty.forecastRps(0, 180_000), 0);
  const short = new Autoscaler(settings());
  short.arrived(1_000, 40);
  assert.equal(short.forecastRps(5_000, 180_000), 0, "the current bucket is not whole yet");
  assert.equal(short.forecastRps(15_000, 180_000), 4, "one whole bucket: its rate");
});

test("settings that cannot work are refused", () => {
  assert.throws(() => new Autoscaler(settings({ min: 3, max: 2 })), /min <= max/);
  assert.throws(() => new Autoscaler(settings({ min: 0, max: 0 })), /max >= 1/);
  assert.throws(() => new Autoscaler(settings({ targetUtilisation: 0 })), /target utilisation/);
  assert.throws(() => new Autoscaler(settings({ targetUtilisation: 1.5 })), /target utilisation/);
});

test("scaling actions: order the shortfall; for a surplus cancel orders before removing replicas", () => {
  const rows: [number, number, number, { order: number; cancel: number; remove: number }][] = [
    [5, 3, 0, { order: 2, cancel: 0, remove: 0 }],
    [5, 3, 1, { order: 1, cancel: 0, remove: 0 }],
    [5, 3, 2, { order: 0, cancel: 0, remove: 0 }],
    [3, 3, 2, { order: 0, cancel: 2, remove: 0 }],
    [2, 3, 2, { order: 0, cancel: 2, remove: 1 }],
    [0, 4, 0, { order: 0, cancel: 0, remove: 4 }],
  ];
  for (const [desired, serving, provisioning, want] of rows) assert.deepEqual(scalingActions(desired, serving, provisioning), want, `${desired} from ${serving} + ${provisioning}`);
});

test("the forecast trusts a trend only over two minutes of history: before, it is the mean rate", () => {
  const a = new Autoscaler(settings());
  // 11 whole buckets rising steeply: still the mean.
  for (let i = 0; i < 11; i++) a.arrived(i * 10_000, 10 * i);
  assert.equal(a.forecastRps(110_000, 180_000), 5);
  a.arrived(110_000, 110);
  assert.ok(a.forecastRps(120_000, 180_000) > 20, "12 buckets: the trend, read 180 s on");
});
