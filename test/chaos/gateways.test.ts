/**
 * Two gateways in front of the same three replicas, with nothing shared
 * between them. Conversations carry no session id and no `user`; their turns
 * alternate between the gateways. With the prefix-owner policy each turn
 * lands where the conversation started (the owner is computed from the
 * request alone, over replicas keyed by their URLs), while the load stays
 * balanced; one gateway going away leaves the other's clients untouched.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { policyByName } from "../../src/scheduler/policies.js";
import { expectedAnswer, type FakeMessage, type FakeUpstream } from "./fake-upstream.js";
import { ask, frontOver, opening, startFakes, type Front } from "./harness.js";

describe("two gateways, nothing shared, the same three replicas", () => {
  let fakes: FakeUpstream[] = [];
  let a: Front;
  let b: Front;
  before(async () => {
    fakes = await startFakes(3);
    // The second gateway lists the replicas in another order: the owner follows their URLs, not positions.
    a = await frontOver(fakes, { gateway: { policy: policyByName("prefix-owner") } });
    b = await frontOver([...fakes].reverse(), { gateway: { policy: policyByName("prefix-owner") } });
  });
  after(async () => {
    await a.close().catch(() => undefined);
    await b.close();
    await Promise.all(fakes.map((f) => f.close()));
  });

  it("conversations whose turns alternate between the gateways stay on one replica, and load stays balanced", async () => {
    const urlOf = (front: Front, replica: string): string => (front === a ? fakes : [...fakes].reverse())[Number(replica.split("/")[1])]!.url;
    const CONVERSATIONS = 240;
    const TURNS = 4;
    let same = 0;
    let later = 0;
    const perReplica = new Map<string, number>();
    const conversation = async (c: number): Promise<void> => {
      const messages: FakeMessage[] = [{ role: "user", content: opening(c) }];
      let first: string | undefined;
      for (let turn = 0; turn < TURNS; turn++) {
        const front = (c + turn) % 2 === 0 ? a : b;
        const { replica, text } = await ask(front, messages);
        assert.equal(text, expectedAnswer(messages, 8).text);
        const url = urlOf(front, replica);
        perReplica.set(url, (perReplica.get(url) ?? 0) + 1);
        if (first === undefined) first = url;
        else {
          later++;
          if (url === first) same++;
        }
        messages.push({ role: "assistant", content: text }, { role: "user", content: `Turn ${turn + 1}: and then?` });
      }
    };
    // 12 conversations at a time, so that the replicas carry load while they are placed.
    for (let c = 0; c < CONVERSATIONS; c += 12) await Promise.all(Array.from({ length: 12 }, (_, k) => conversation(c + k)));
    const counts = [...perReplica.values()];
    const mean = (CONVERSATIONS * TURNS) / 3;
    assert.ok(same / later >= 0.95, `${same} of ${later} later turns on the conversation's first replica`);
    assert.equal(counts.length, 3);
    assert.ok(Math.max(...counts) / mean <= 1.25, `requests per replica ${counts.join(", ")} (mean ${mean})`);
  });

  it("one gateway going away leaves the other's clients untouched", async () => {
    await a.close();
    const results = await Promise.all(Array.from({ length: 30 }, (_, c) => ask(b, [{ role: "user", content: opening(1000 + c) }])));
    assert.equal(results.length, 30);
  });
});
