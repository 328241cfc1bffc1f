import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeMessages, parseMessage, PeerSync } from "../../src/gateway/peer-sync.js";
import { BROADCAST_MAX_BYTES, type Store } from "../../src/store/store.js";

/** An in-memory channel with the store's broadcast contract: every subscriber hears every message, the sender's own included. */
function bus(): { store: Store; sent: string[] } {
  const listeners: ((payload: string) => void)[] = [];
  const sent: string[] = [];
  const store = {
    broadcast: async (_channel: string, on: (payload: string) => void) => {
      listeners.push(on);
      return {
        publish: async (payload: string) => {
          assert.ok(Buffer.byteLength(payload) <= BROADCAST_MAX_BYTES, `a ${Buffer.byteLength(payload)}-byte message`);
          sent.push(payload);
          for (const l of listeners) l(payload);
        },
        close: async () => undefined,
      };
    },
  } as unknown as Store;
  return { store, sent };
}

async function pair(now: () => number = () => 0): Promise<{ a: PeerSync; b: PeerSync; sent: string[]; logs: string[] }> {
  const { store, sent } = bus();
  const logs: string[] = [];
  const opts = { syncMs: 60_000, expireMs: 1_000, now, log: (m: string) => logs.push(m) };
  const a = (await PeerSync.start(store, opts))!;
  const b = (await PeerSync.start(store, opts))!;
  return { a, b, sent, logs };
}

describe("peer sync: gateways tell each other what they route", () => {
  it("a peer's in-flight counts add up, its own messages are ignored, and an emptied replica goes to 0", async () => {
    const { a, b } = await pair();
    let own = new Map([[11, 3], [12, 1]]);
    a.countOwn(() => own);
    await a.flush();
    assert.equal(b.inFlight(11), 3);
    assert.equal(b.inFlight(12), 1);
    assert.equal(a.inFlight(11), 0, "a gateway's own counts are not its peers'");
    own = new Map([[11, 2]]);
    await a.flush();
    assert.deepEqual([b.inFlight(11), b.inFlight(12)], [2, 0]);
    await Promise.all([a.close(), b.close()]);
  });

  it("sends nothing when idle", async () => {
    const { a, b, sent } = await pair();
    await a.flush();
    await a.flush();
    assert.equal(sent.length, 0);
    await Promise.all([a.close(), b.close()]);
  });

  it("a peer not heard within expireMs counts for nothing", async () => {
    let t = 0;
    const { a, b } = await pair(() => t);
    a.countOwn(() => new Map([[5, 4]]));
    await a.flush();
    assert.equal(b.inFlight(5), 4);
    assert.deepEqual(b.stats(), { gateways: 1, placementsHeard: 0, failing: false });
    t = 1_001;
    assert.equal(b.inFlight(5), 0);
    assert.equal(b.stats().gateways, 0, "a peer not heard within expireMs is not counted");
    await Promise.all([a.close(), b.close()]);
  });

  it("placements reach the peers' hints, in several messages when one would be too long", async () => {
    const { a, b, sent } = await pair();
    const blocks = Array.from({ length: 64 }, (_, i) => 2 ** 52 + i);
    for (let i = 0; i < 400; i++) a.placed("m", 1000 + i, [i, ...blocks]);
    a.placed("other", 1, [1, 2, 3]);
    const heard = b.heardMoreThan(400);
    await a.flush();
    await heard;
    assert.ok(sent.length > 1, `${sent.length} messages`);
    assert.equal(b.placementsHeard, 401);
    assert.ok(b.hints("m")!.size > 400);
    assert.ok(b.hints("other")!.size > 0);
    await Promise.all([a.close(), b.close()]);
  });

  it("encodes counts of a large fleet in parts, each a valid message", () => {
    const counts = Array.from({ length: 1000 }, (_, i): [number, number] => [2 ** 40 + i, 7]);
    const messages = encodeMessages("g", counts, new Map([["m", [[1, 1, 5]]]]));
    let total = 0;
    for (const m of messages) {
      assert.ok(Buffer.byteLength(m) <= BROADCAST_MAX_BYTES);
      total += parseMessage(m)!.c.length;
    }
    assert.equal(total, 1000);
  });

  it("drops malformed messages whole, saying so once", async () => {
    const { b, logs } = await pair();
    for (const bad of ["not json", "[]", '{"g":"x","c":[[1,-1]],"p":{}}', '{"g":"x","c":[],"p":{"m":[[1,2]]}}', '{"g":"x","c":[],"p":{"m":[[1,2,1.5]]}}', '{"g":1,"c":[],"p":{}}']) {
      assert.equal(parseMessage(bad), undefined, bad);
      b.receive(bad);
    }
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /malformed/);
    assert.equal(b.placementsHeard, 0);
    await b.close();
  });

  it("a broadcast that fails is said once per outage, and again when it works", async () => {
    let down = true;
    const logs: string[] = [];
    const store = {
      broadcast: async () => ({
        publish: async () => {
          if (down) throw new Error("connection refused");
        },
        close: async () => undefined,
      }),
    } as unknown as Store;
    const sync = (await PeerSync.start(store, { syncMs: 60_000, log: (m) => logs.push(m) }))!;
    sync.countOwn(() => new Map([[1, 1]]));
    for (let i = 0; i < 5; i++) await sync.flush();
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /broadcast failed.*connection refused/);
    down = false;
    await sync.flush();
    await sync.flush();
    assert.deepEqual(logs.slice(1), ["peer sync: broadcasting again"]);
    await sync.close();
  });

  it("one broadcast at a time: while one is stuck the next skip, and nothing placed is lost", async () => {
    let release: () => void = () => undefined;
    const payloads: string[] = [];
    let calls = 0;
    const store = {
      broadcast: async () => ({
        publish: async (payload: string) => {
          calls++;
          if (calls === 1) await new Promise<void>((r) => (release = r));
          payloads.push(payload);
        },
        close: async () => undefined,
      }),
    } as unknown as Store;
    const sync = (await PeerSync.start(store, { syncMs: 60_000, log: () => undefined }))!;
    sync.placed("m", 1, [1, 2]);
    const stuck = sync.flush();
    sync.placed("m", 2, [3, 4]);
    await sync.flush();
    await sync.flush();
    assert.equal(calls, 1, "the stuck broadcast is the only one in flight");
    release();
    await stuck;
    await sync.flush();
    assert.equal(calls, 2);
    const replicas = payloads.flatMap((p) => parseMessage(p)!.p.m!.map((row) => row[0]));
    assert.deepEqual(replicas, [1, 2]);
    await sync.close();
  });

  it("refuses a non-positive interval, and starts nowhere on a store without a channel", async () => {
    assert.throws(() => new PeerSync({ syncMs: 0, log: () => undefined }), /positive/);
    assert.equal(await PeerSync.start({} as Store, { syncMs: 50, log: () => undefined }), undefined);
  });
});
