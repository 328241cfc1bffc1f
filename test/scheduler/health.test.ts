import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/core/clock.js";
import { ReplicaHealth } from "../../src/scheduler/health.js";

describe("the replica circuit breaker", () => {
  const make = (): { clock: ManualClock; h: ReplicaHealth } => {
    const clock = new ManualClock();
    return { clock, h: new ReplicaHealth(clock, { failureThreshold: 3, cooldownMs: 1000 }) };
  };

  it("ejects after consecutive failures, not scattered ones", () => {
    const { h } = make();
    h.failed();
    h.failed();
    h.succeeded();
    h.failed();
    h.failed();
    assert.equal(h.admits(), true, "two failures since the last success");
    h.failed();
    assert.equal(h.admits(), false);
    assert.equal(h.state(true), "ejected");
  });

  it("lets exactly one trial through after the cooldown; success closes it", () => {
    const { clock, h } = make();
    for (let i = 0; i < 3; i++) h.failed();
    clock.advanceTo(999);
    assert.equal(h.admits(), false);
    clock.advanceTo(1000);
    assert.equal(h.state(true), "half-open");
    assert.equal(h.admits(), true);
    h.dispatched();
    assert.equal(h.admits(), false, "one trial at a time");
    h.succeeded();
    assert.equal(h.admits(), true);
    assert.equal(h.state(true), "healthy");
  });

  it("re-opens for a full cooldown when the trial fails", () => {
    const { clock, h } = make();
    for (let i = 0; i < 3; i++) h.failed();
    clock.advanceTo(1500);
    h.dispatched();
    h.failed();
    assert.equal(h.admits(), false);
    clock.advanceTo(2499);
    assert.equal(h.admits(), false);
    clock.advanceTo(2500);
    assert.equal(h.admits(), true);
  });

  it("frees the trial when it ends without a verdict (cancelled)", () => {
    const { clock, h } = make();
    for (let i = 0; i < 3; i++) h.failed();
    clock.advanceTo(1000);
    h.dispatched();
    h.released();
    assert.equal(h.admits(), true, "the next request may be the trial");
  });

  it("forgets old failures when the engine comes back from being down", () => {
    const { h } = make();
    for (let i = 0; i < 3; i++) h.failed();
    h.observe(true);
    assert.equal(h.admits(), false, "still up: the failures stand");
    h.observe(false);
    h.observe(true);
    assert.equal(h.admits(), true, "a restarted engine starts with a clean record");
  });

  it("keeps a draining replica out whatever its health", () => {
    const { h } = make();
    h.draining = true;
    assert.equal(h.admits(), false);
    assert.equal(h.state(true), "draining");
    h.draining = false;
    assert.equal(h.admits(), true);
  });
});
