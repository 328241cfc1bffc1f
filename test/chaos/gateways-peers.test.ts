/**
 * Two gateways on one Postgres store in front of the same three replicas,
 * telling each other what they route (gateway/peer-sync.ts). The policy is
 * plain prefix-aware: no owner, no session id, no `user`. A conversation's
 * turns alternate between the gateways; each gateway's own index knows only
 * the turns it routed, so without its peer's placements it would send the
 * next turn wherever load says. With them the turn lands where the
 * conversation's cache is, and load stays balanced. Each gateway also counts
 * the other's requests in flight into a replica's load.
 *
 * The interval timer is set far out and the test flushes by hand between
 * turns, as a conversation's think time would: so it waits on the messages
 * themselves, never on a clock.
 */
import assert from "node:assert/strict";
import pg from "pg";
import { after, before, describe, it } from "node:test";
import { PeerSync } from "../../src/gateway/peer-sync.js";
import { policyByName } from "../../src/scheduler/policies.js";
import { PostgresStore } from "../../src/store/postgres.js";
import { pgSkip, postgresBackend } from "../metering/harness.js";
import { expectedAnswer, type FakeMessage, type FakeUpstream } from "./fake-upstream.js";
import { ask, frontOver, opening, startFakes, type Front } from "./harness.js";

interface Side {
  front: Front;
  peers: PeerSync | undefined;
  store: PostgresStore;
}

describe("two gateways sharing placements and load through Postgres", { skip: pgSkip }, () => {
  let fakes: FakeUpstream[] = [];
  let db: { url: string; drop(): Promise<void> };
  const sides: Side[] = [];

  async function side(order: readonly FakeUpstream[], share: boolean): Promise<Side> {
    const store = await PostgresStore.open(db.url);
    const peers = share ? await PeerSync.start(store, { syncMs: 3_600_000, log: (m) => assert.fail(m) }) : undefined;
    const front = await frontOver(order, { gateway: { policy: policyByName("prefix-aware"), hedge: false, ...(peers === undefined ? {} : { peers }) } });
    const s = { front, peers, store };
    sides.push(s);
    return s;
  }

  before(async () => {
    db = await postgresBackend.fresh();
    fakes = await startFakes(3, { tokenDelayMs: 1 });
  });
  after(async () => {
    for (const s of sides) {
      await s.front.close();
      await s.peers?.close();
      await s.store.close();
    }
    await Promise.all(fakes.map((f) => f.close()));
    await db.drop();
  });

  /** Conversations of four turns alternating between a and b, twelve at a time; the share of later turns on the first turn's replica, and requests per replica. */
  async function converse(a: Side, b: Side, first: number): Promise<{ same: number; perReplica: number[] }> {
    const urlOf = (s: Side, replica: string): string => (s === a ? fakes : [...fakes].reverse())[Number(replica.split("/")[1])]!.url;
    const CONVERSATIONS = 60;
    const TURNS = 4;
    let same = 0;
    let later = 0;
    const perReplica = new Map<string, number>();
    for (let c0 = first; c0 < first + CONVERSATIONS; c0 += 12) {
      const talks = Array.from({ length: 12 }, (_, k) => ({ c: c0 + k, messages: [{ role: "user", content: opening(c0 + k) }] as FakeMessage[], replica: "" }));
      for (let turn = 0; turn < TURNS; turn++) {
        const sideOf = (c: number): Side => ((c + turn) % 2 === 0 ? a : b);
        await Promise.all(talks.map(async (t) => {
          const s = sideOf(t.c);
          const { replica, text } = await ask(s.front, t.messages);
          assert.equal(text, expectedAnswer(t.messages, 8).text);
          const url = urlOf(s, replica);
          perReplica.set(url, (perReplica.get(url) ?? 0) + 1);
          if (turn === 0) t.replica = url;
          else {
            later++;
            if (url === t.replica) same++;
          }
          t.messages.push({ role: "assistant", content: text }, { role: "user", content: `Turn ${turn + 1}: and then?` });
        }));
        await exchange(a, b, talks.filter((t) => sideOf(t.c) === a).length, talks.filter((t) => sideOf(t.c) === b).length);
      }
    }
    return { same: same / later, perReplica: [...perReplica.values()] };
  }

  /** Each side publishes what it placed since its last message; returns once the other has heard all of it. */
  async function exchange(a: Side, b: Side, placedByA: number, placedByB: number): Promise<void> {
    if (a.peers === undefined || b.peers === undefined) return;
    const heard = [b.peers.heardMoreThan(b.peers.placementsHeard + placedByA - 1), a.peers.heardMoreThan(a.peers.placementsHeard + placedByB - 1)];
    await Promise.all([a.peers.flush(), b.peers.flush()]);
    await Promise.all(heard);
  }

  it("conversations whose turns alternate between the gateways stay on one replica, and load stays balanced", async () => {
    const a = await side(fakes, true);
    const b = await side([...fakes].reverse(), true);
    const { same, perReplica } = await converse(a, b, 0);
    assert.ok(same >= 0.95, `${(same * 100).toFixed(1)}% of later turns on the conversation's first replica`);
    const mean = perReplica.reduce((x, y) => x + y, 0) / 3;
    assert.equal(perReplica.length, 3);
    assert.ok(Math.max(...perReplica) / mean <= 1.25, `requests per replica ${perReplica.join(", ")}`);
    const metrics = await (await fetch(`${b.front.url}/metrics`)).text();
    assert.match(metrics, /^flotilla_peer_gateways 1$/m);
    const heard = /^flotilla_peer_placements_heard_total (\d+)$/m.exec(metrics);
    assert.equal(Number(heard?.[1]), 120, "b heard every turn a placed: half of 60 conversations' 4 turns");
    assert.match(metrics, /^flotilla_peer_broadcast_failing 0$/m);
  });

  it("without the peers' placements, the same conversations scatter", async () => {
    const a = await side(fakes, false);
    const b = await side([...fakes].reverse(), false);
    const { same } = await converse(a, b, 10_000);
    assert.ok(same < 0.8, `${(same * 100).toFixed(1)}% of later turns on the first replica even without peers`);
  });

  it("a gateway counts its peer's requests in flight into each replica's load", async () => {
    const [a, b] = sides as [Side, Side];
    const slow = await startFakes(3, { tokenDelayMs: 25 });
    try {
      const sa = await side(slow, true);
      const sb = await side([...slow].reverse(), true);
      const running = Array.from({ length: 6 }, (_, i) => ask(sa.front, [{ role: "user", content: opening(20_000 + i) }], 40));
      // Every request has been placed once the gateway has sent all six on.
      while ([...sa.front.fleet.model("m")!.replicas].reduce((n, r) => n + r.engine.load().active, 0) < 6) await new Promise((r) => setImmediate(r));
      const heard = sb.peers!.heardMoreThan(sb.peers!.placementsHeard + 5);
      await sa.peers!.flush();
      await heard;
      const seen = sb.front.fleet.model("m")!.replicas.map((r) => r.engine.load().active + r.engine.load().queued);
      assert.equal(seen.reduce((x, y) => x + y, 0), 6, `b sees ${seen.join(", ")} on the replicas`);
      await Promise.all(running);
    } finally {
      await Promise.all(slow.map((f) => f.close()));
    }
    assert.ok(a && b);
  });

  it("a listening connection that breaks reconnects, and the peers hear each other again", async () => {
    // A database of its own: the two listeners here are the only ones on it.
    const own = await postgresBackend.fresh();
    const said: string[] = [];
    let back: () => void = () => undefined;
    const again = new Promise<void>((resolve) => (back = resolve));
    const store = await PostgresStore.open(own.url, {
      onError: (e) => {
        said.push(e.message);
        if (/again/.test(e.message)) back();
      },
    });
    const listener = (await PeerSync.start(store, { syncMs: 3_600_000, log: (m) => assert.fail(m) }))!;
    const other = await PostgresStore.open(own.url);
    const teller = (await PeerSync.start(other, { syncMs: 3_600_000, log: (m) => assert.fail(m) }))!;
    try {
      const admin = new pg.Client({ connectionString: own.url });
      await admin.connect();
      // The first LISTEN connection (the listener's, not the teller's): the server drops it, as a restart or a network cut would.
      const { rows } = await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' ORDER BY backend_start LIMIT 1");
      assert.equal(rows.length, 1, "the listener's connection is found");
      await admin.query("SELECT pg_terminate_backend($1)", [rows[0].pid]);
      await admin.end();
      await again;
      assert.match(said[0]!, /broke; reconnecting/);
      const heard = listener.heardMoreThan(0);
      teller.placed("m", 1, [1, 2, 3]);
      await teller.flush();
      await heard;
    } finally {
      await listener.close();
      await teller.close();
      await store.close();
      await other.close();
      await own.drop();
    }
  });
});
