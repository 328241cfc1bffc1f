import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { AdmissionQueue, type PriorityClass, type Waiter } from "../../src/scheduler/index.js";

interface Item extends Waiter {
  readonly id: number;
}
let ids = 0;
const item = (tenant: string, over: Partial<Item> = {}): Item => ({ id: ids++, tenant, ...over });

describe("AdmissionQueue basics", () => {
  it("serves one tenant first come, first served", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 10 });
    const a = item("t");
    const b = item("t");
    const c = item("t");
    for (const x of [a, b, c]) assert.deepEqual(q.enqueue(x, 0), { ok: true });
    assert.equal(q.size, 3);
    assert.deepEqual([q.next(1), q.next(1), q.next(1), q.next(1)], [a, b, c, undefined]);
    assert.equal(q.size, 0);
  });

  it("alternates equal tenants, and weights tilt the share", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 100, weights: { heavy: 2 } });
    for (let k = 0; k < 8; k++) {
      q.enqueue(item("light"), 0);
      q.enqueue(item("heavy"), 0);
    }
    const order = Array.from({ length: 8 }, () => q.next(0)!.tenant[0]);
    // finish tags: heavy 0.5, 1, 1.5, 2, ...; light 1, 2, 3: ties go to the earlier arrival (light)
    assert.deepEqual(order, ["h", "l", "h", "h", "l", "h", "h", "l"]);
  });

  it("serves interactive before batch", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 10 });
    const b = item("t", { priority: "batch" });
    const i = item("u");
    q.enqueue(b, 0);
    q.enqueue(i, 1);
    assert.equal(q.next(2), i);
    assert.equal(q.next(2), b);
    assert.equal(q.sizeOfClass("batch"), 0);
  });

  it("rejects beyond the bound with a Retry-After from the drain rate", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 4, drainWindowMs: 10_000 });
    for (let k = 0; k < 4; k++) assert.ok(q.enqueue(item("t"), 0).ok);
    const full = q.enqueue(item("t"), 0);
    assert.equal(full.ok, false);
    if (!full.ok) {
      assert.equal(full.reason, "queue_full");
      assert.equal(full.retryAfterS, 60, "nothing drained yet: the maximum");
      assert.match(full.message, /admission queue is full/);
    }
    // drain 2 over the window: 0.2 per second; refill; 4 queued → 20 s
    q.next(1000);
    q.next(2000);
    q.enqueue(item("t"), 3000);
    q.enqueue(item("t"), 3000);
    const again = q.enqueue(item("t"), 3000);
    assert.deepEqual(again.ok ? undefined : [again.reason, again.retryAfterS], ["queue_full", 20]);
    assert.equal(q.drainRatePerS(3000), 0.2);
    assert.equal(q.drainRatePerS(20_000), 0, "those dequeues left the window");
  });

  it("bounds each tenant separately when asked", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 10, maxQueuedPerTenant: 2 });
    assert.ok(q.enqueue(item("a"), 0).ok);
    assert.ok(q.enqueue(item("a", { priority: "batch" }), 0).ok);
    const r = q.enqueue(item("a"), 0);
    assert.equal(r.ok ? "" : r.reason, "tenant_queue_full");
    assert.ok(q.enqueue(item("b"), 0).ok, "another tenant still gets in");
    assert.equal(q.sizeOf("a"), 2);
  });

  it("drops waiters whose deadline passes, with a reason, and never serves them", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 10 });
    const late = item("a", { deadlineMs: 100 });
    const ok = item("a", { deadlineMs: 1000 });
    const none = item("b");
    q.enqueue(late, 0);
    q.enqueue(ok, 10);
    q.enqueue(none, 20);
    assert.deepEqual(q.expire(50), []);
    assert.equal(q.next(150), ok, "the expired head is skipped");
    assert.deepEqual(q.expire(150), [{ item: late, reason: "deadline_exceeded", waitedMs: 150 }]);
    assert.deepEqual(q.expire(2000), []);
    assert.equal(q.next(2000), none);
    const past = q.enqueue(item("a", { deadlineMs: 5 }), 5);
    assert.deepEqual(past.ok ? undefined : [past.reason, past.retryAfterS], ["deadline_exceeded", 0]);
  });

  it("removes a waiter whose client left", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 10 });
    const a = item("a");
    const b = item("a");
    q.enqueue(a, 0);
    q.enqueue(b, 0);
    assert.equal(q.remove(a), true);
    assert.equal(q.remove(a), false);
    assert.equal(q.size, 1);
    assert.equal(q.next(0), b);
  });

  it("validates its inputs", () => {
    assert.throws(() => new AdmissionQueue({ maxQueued: -1 }), /maxQueued/);
    const q = new AdmissionQueue<Item>({ maxQueued: 3, weights: () => 0 });
    assert.throws(() => q.enqueue(item("a"), 0), /weight of tenant "a"/);
    const q2 = new AdmissionQueue<Item>({ maxQueued: 3 });
    assert.throws(() => q2.enqueue(item("a", { cost: -1 }), 0), /cost/);
    assert.throws(() => q2.enqueue(item("a", { priority: "urgent" as PriorityClass }), 0), /priority/);
    const x = item("a");
    q2.enqueue(x, 0);
    assert.throws(() => q2.enqueue(x, 0), /already queued/);
  });
});

describe("AdmissionQueue properties", () => {
  const tenants = ["a", "b", "c", "d"];
  const op = fc.oneof(
    fc.record({ kind: fc.constant("enqueue" as const), tenant: fc.constantFrom(...tenants), batch: fc.boolean(), cost: fc.integer({ min: 1, max: 5 }), ttl: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }) }),
    fc.record({ kind: fc.constant("next" as const) }),
    fc.record({ kind: fc.constant("expire" as const) }),
  );

  it("never holds more than its bounds; interactive always before batch; never serves an expired waiter; loses nothing", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.array(fc.tuple(op, fc.integer({ min: 0, max: 10 })), { maxLength: 200 }), (max, perTenant, ops) => {
        const q = new AdmissionQueue<Item>({ maxQueued: max, maxQueuedPerTenant: perTenant, weights: { a: 2, b: 1, c: 0.5, d: 1 } });
        const queued = new Map<Item, Item>();
        let now = 0;
        let accepted = 0;
        let gone = 0;
        for (const [o, dt] of ops) {
          now += dt;
          if (o.kind === "enqueue") {
            const x = item(o.tenant, { priority: o.batch ? "batch" : "interactive", cost: o.cost, ...(o.ttl !== undefined ? { deadlineMs: now + o.ttl } : {}) });
            const r = q.enqueue(x, now);
            if (r.ok) {
              queued.set(x, x);
              accepted++;
            } else assert.ok(r.retryAfterS >= 0 && r.message.length > 0);
          } else if (o.kind === "next") {
            const live = [...queued.values()].filter((x) => (x.deadlineMs ?? Infinity) > now);
            const got = q.next(now);
            if (live.length === 0) assert.equal(got, undefined);
            else {
              assert.ok(got !== undefined && queued.has(got), "serves a queued item");
              assert.ok((got.deadlineMs ?? Infinity) > now, "not an expired one");
              if (live.some((x) => (x.priority ?? "interactive") === "interactive")) assert.equal(got.priority, "interactive");
              queued.delete(got);
              gone++;
            }
          } else {
            for (const e of q.expire(now)) {
              assert.ok(queued.delete(e.item), "expires a queued item");
              assert.ok(e.item.deadlineMs! <= now);
              assert.equal(e.reason, "deadline_exceeded");
              gone++;
            }
          }
          assert.ok(q.size <= max);
          for (const t of tenants) assert.ok(q.sizeOf(t) <= perTenant);
          // expired-but-unreported items still count as queued in the model until expire() hands them back
          const reported = q.size + [...queued.values()].filter((x) => (x.deadlineMs ?? Infinity) <= now).length;
          assert.ok(reported >= queued.size && q.size <= queued.size);
        }
        for (const e of q.expire(Infinity)) {
          queued.delete(e.item);
          gone++;
        }
        while (q.next(now) !== undefined) gone++;
        assert.equal(gone, accepted, "every accepted item is served or expired exactly once");
      }),
      { numRuns: 300 },
    );
  });

  it("under saturation no tenant starves and shares converge to the weights", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 5 }), fc.integer({ min: 1, max: 1000 }), (weights, seed) => {
        const names = weights.map((_, i) => `t${i}`);
        const w = Object.fromEntries(names.map((n, i) => [n, weights[i]!]));
        const q = new AdmissionQueue<Item>({ maxQueued: 10_000, weights: w });
        let s = seed;
        const cost = (): number => 1 + ((s = (s * 16807) % 2147483647) % 4);
        // every tenant keeps 3 items queued: saturation
        for (const n of names) for (let k = 0; k < 3; k++) q.enqueue(item(n, { cost: cost() }), 0);
        const served = Object.fromEntries(names.map((n) => [n, 0]));
        const lastServed = Object.fromEntries(names.map((n) => [n, 0]));
        const total = weights.reduce((a, b) => a + b, 0);
        // a tenant waits at most about (total weight / its weight) × max cost ratio items between services
        const maxGap = (t: number): number => Math.ceil((total / weights[t]!) * 4) + names.length;
        const rounds = 4000;
        for (let k = 1; k <= rounds; k++) {
          const x = q.next(k)!;
          served[x.tenant]! += x.cost!;
          const t = names.indexOf(x.tenant);
          assert.ok(k - lastServed[x.tenant]! <= maxGap(t), `${x.tenant} waited ${k - lastServed[x.tenant]!} dequeues`);
          lastServed[x.tenant] = k;
          q.enqueue(item(x.tenant, { cost: cost() }), k);
          for (const n of names) assert.ok(k - lastServed[n]! <= maxGap(names.indexOf(n)), `${n} starves`);
        }
        const sum = Object.values(served).reduce((a, b) => a + b, 0);
        names.forEach((n, i) => {
          const share = served[n]! / sum;
          assert.ok(Math.abs(share - weights[i]! / total) < 0.02, `${n}: share ${share.toFixed(3)}, weight ${weights[i]! / total}`);
        });
      }),
      { numRuns: 25 },
    );
  });

  it("an idle tenant banks no credit: coming back it competes from now, it does not flood", () => {
    const q = new AdmissionQueue<Item>({ maxQueued: 1000 });
    for (let k = 0; k < 100; k++) q.enqueue(item("busy"), 0);
    for (let k = 0; k < 50; k++) q.next(k);
    for (let k = 0; k < 10; k++) q.enqueue(item("late"), 50);
    const order = Array.from({ length: 10 }, () => q.next(60)!.tenant);
    assert.deepEqual(order.filter((t) => t === "late").length, 5);
  });
});
