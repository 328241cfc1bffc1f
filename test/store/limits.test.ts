import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { EMPTY_STATE, decide, nextPeriodStart, periodOf, refill, release } from "../../src/store/limits.js";
import type { TenantLimits, TenantState } from "../../src/store/types.js";

const NONE: TenantLimits = { requestsPerMinute: null, tokensPerMinute: null, maxConcurrent: null, monthlyBudgetNusd: null };
const T0 = Date.UTC(2026, 10, 15, 12, 0, 0);

describe("limits arithmetic", () => {
  test("a bucket starts full, refills at limit per minute, and never runs time backwards", () => {
    assert.deepEqual(refill(null, null, 60, T0), { tokens: 60, at: T0 });
    assert.deepEqual(refill(0, T0, 60, T0 + 10_000), { tokens: 10, at: T0 + 10_000 });
    assert.deepEqual(refill(59, T0, 60, T0 + 10_000), { tokens: 60, at: T0 + 10_000 });
    // Another process's clock a second behind: no refill, and the bucket keeps its time.
    assert.deepEqual(refill(5, T0, 60, T0 - 1_000), { tokens: 5, at: T0 });
  });

  test("requests/minute admits the limit at once, then one per 60/limit seconds", () => {
    const limits = { ...NONE, requestsPerMinute: 3 };
    let state: TenantState = EMPTY_STATE;
    for (let i = 0; i < 3; i++) {
      const d = decide(limits, state, { tokens: 1, costNusd: 0 }, T0);
      assert.equal(d.ok, true);
      state = d.state;
    }
    const refused = decide(limits, state, { tokens: 1, costNusd: 0 }, T0);
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.limit, "requests_per_minute");
    assert.equal(!refused.ok && refused.resetAt, T0 + 20_000);
    assert.equal(decide(limits, state, { tokens: 1, costNusd: 0 }, T0 + 19_999).ok, false);
    assert.equal(decide(limits, state, { tokens: 1, costNusd: 0 }, T0 + 20_000).ok, true);
  });

  test("tokens/minute takes the worst case, refunds the unused part, and lets a huge request run on a full bucket (in debt)", () => {
    const limits = { ...NONE, tokensPerMinute: 1000 };
    const a = decide(limits, EMPTY_STATE, { tokens: 600, costNusd: 0 }, T0);
    assert.ok(a.ok);
    assert.equal(a.state.tpmTokens, 400);
    const b = decide(limits, a.state, { tokens: 600, costNusd: 0 }, T0);
    assert.equal(b.ok, false);
    assert.equal(!b.ok && b.resetAt, T0 + 12_000);
    // The first request used 100 of its 600.
    const settled = release(limits, { ...a.state, period: periodOf(T0) }, { reservedTokens: 600, actualTokens: 100, reservedNusd: 0, costNusd: 0, period: periodOf(T0), holdsReservation: true }, T0);
    assert.equal(settled.tpmTokens, 900);
    const huge = decide(limits, EMPTY_STATE, { tokens: 5000, costNusd: 0 }, T0);
    assert.ok(huge.ok);
    // In debt, but never past the burst floor: one minute's allowance.
    assert.equal(huge.state.tpmTokens, -1000);
    assert.equal(decide(limits, huge.state, { tokens: 1, costNusd: 0 }, T0 + 60_000).ok, false);
    assert.equal(decide(limits, huge.state, { tokens: 1, costNusd: 0 }, T0 + 120_060).ok, true);
  });

  test("a settlement that claims far more than was reserved leaves the bucket at its burst floor, not minutes in debt", () => {
    const limits = { ...NONE, tokensPerMinute: 1000 };
    const a = decide(limits, EMPTY_STATE, { tokens: 30, costNusd: 0 }, T0);
    assert.ok(a.ok);
    const settled = release(limits, { ...a.state, period: periodOf(T0) }, { reservedTokens: 30, actualTokens: 100_000, reservedNusd: 0, costNusd: 0, period: periodOf(T0), holdsReservation: true }, T0);
    assert.equal(settled.tpmTokens, -1000);
    assert.equal(decide(limits, settled, { tokens: 10, costNusd: 0 }, T0 + 121_000).ok, true);
  });

  test("concurrency counts admitted, unsettled requests", () => {
    const limits = { ...NONE, maxConcurrent: 2 };
    const a = decide(limits, EMPTY_STATE, { tokens: 1, costNusd: 0 }, T0);
    assert.ok(a.ok);
    const b = decide(limits, a.state, { tokens: 1, costNusd: 0 }, T0);
    assert.ok(b.ok);
    const c = decide(limits, b.state, { tokens: 1, costNusd: 0 }, T0);
    assert.equal(!c.ok && c.limit, "max_concurrent");
    assert.equal(!c.ok && c.resetAt, null);
    const freed = release(limits, b.state, { reservedTokens: 1, actualTokens: 1, reservedNusd: 0, costNusd: 0, period: periodOf(T0), holdsReservation: true }, T0);
    assert.equal(freed.inFlight, 1);
    assert.ok(decide(limits, freed, { tokens: 1, costNusd: 0 }, T0).ok);
  });

  test("the budget holds spent + reserved; it resets with the month, and only then when spending alone is over", () => {
    const limits = { ...NONE, monthlyBudgetNusd: 1000 };
    const a = decide(limits, EMPTY_STATE, { tokens: 1, costNusd: 600 }, T0);
    assert.ok(a.ok);
    assert.equal(a.state.reservedNusd, 600);
    const b = decide(limits, a.state, { tokens: 1, costNusd: 600 }, T0);
    assert.equal(!b.ok && b.limit, "monthly_budget");
    assert.equal(!b.ok && b.resetAt, null, "reservations free up as requests finish");
    const settled = release(limits, a.state, { reservedTokens: 1, actualTokens: 1, reservedNusd: 600, costNusd: 500, period: periodOf(T0), holdsReservation: true }, T0);
    assert.equal(settled.spentNusd, 500);
    assert.equal(settled.reservedNusd, 0);
    const c = decide(limits, settled, { tokens: 1, costNusd: 600 }, T0);
    assert.equal(!c.ok && c.resetAt, nextPeriodStart(T0));
    assert.equal(nextPeriodStart(T0), Date.UTC(2026, 11, 1));
    // Next month: spending starts again from zero.
    const december = Date.UTC(2026, 11, 1, 0, 0, 1);
    const d = decide(limits, settled, { tokens: 1, costNusd: 600 }, december);
    assert.ok(d.ok);
    assert.equal(d.state.period, "2026-12");
    assert.equal(d.state.spentNusd, 0);
  });

  test("a request admitted last month is charged to last month; a released reservation is not released twice", () => {
    const limits = { ...NONE, monthlyBudgetNusd: 1000 };
    const nov = { ...EMPTY_STATE, period: "2026-12", inFlight: 1, reservedNusd: 300 };
    const after = release(limits, nov, { reservedTokens: 0, actualTokens: 0, reservedNusd: 300, costNusd: 200, period: "2026-11", holdsReservation: true }, Date.UTC(2026, 11, 2));
    assert.deepEqual([after.inFlight, after.reservedNusd, after.spentNusd], [0, 0, 0]);
    const recovered = release(limits, { ...EMPTY_STATE, period: "2026-11" }, { reservedTokens: 0, actualTokens: 0, reservedNusd: 300, costNusd: 200, period: "2026-11", holdsReservation: false }, T0);
    assert.deepEqual([recovered.inFlight, recovered.reservedNusd, recovered.spentNusd], [0, 0, 200]);
  });

  test("when several limits refuse, the one that frees last is named", () => {
    const limits = { ...NONE, requestsPerMinute: 1, monthlyBudgetNusd: 10 };
    const state = { ...EMPTY_STATE, rpmTokens: 0, rpmAt: T0, period: periodOf(T0), spentNusd: 10 };
    const d = decide(limits, state, { tokens: 1, costNusd: 1 }, T0);
    assert.equal(!d.ok && d.limit, "monthly_budget");
  });

  test("property: no interleaving of admissions and settlements spends past the budget", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 }), fc.double({ min: 0, max: 1, noNaN: true })), { maxLength: 60 }),
        (budget, ops) => {
          const limits = { ...NONE, monthlyBudgetNusd: budget };
          let state: TenantState = EMPTY_STATE;
          const running: number[] = [];
          for (const [admit, cost, share] of ops) {
            if (admit || running.length === 0) {
              const d = decide(limits, state, { tokens: 1, costNusd: cost }, T0);
              if (d.ok) {
                state = d.state;
                running.push(cost);
              }
            } else {
              const reserved = running.shift()!;
              state = release(limits, state, { reservedTokens: 1, actualTokens: 1, reservedNusd: reserved, costNusd: Math.floor(reserved * share), period: periodOf(T0), holdsReservation: true }, T0);
            }
            assert.ok(state.spentNusd + state.reservedNusd <= budget);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
