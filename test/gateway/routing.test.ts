import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { leastLoaded, policyByName, policyFromConfig } from "../../src/scheduler/policies.js";
import { parseFleetConfig } from "../../src/fleet/config.js";
import { rateBookFromConfig } from "../../src/metering/config.js";
import type { RateBook } from "../../src/metering/pricing.js";
import type { Policy } from "../../src/scheduler/pipeline.js";
import { startGateway, TINY_MODEL, tinyFleet, type RunningGateway, LLAMA2_ABSENT } from "../helpers.js";

async function servedBy(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "tiny", max_tokens: 2, ...body }),
  });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  return res.headers.get("x-flotilla-replica") ?? "";
}

// A long shared system prompt, as agents and chat apps send on every turn.
const system = "You are the fleet's assistant. ".repeat(40);
const turn = (i: number): Record<string, unknown> => ({ messages: [{ role: "system", content: system }, { role: "user", content: `question ${i}` }] });

describe("live routing policies over real local engines", { skip: LLAMA2_ABSENT }, () => {
  const gateways: RunningGateway[] = [];
  after(() => Promise.all(gateways.map((g) => g.close())));
  const start = async (policy: Parameters<typeof startGateway>[1]): Promise<RunningGateway> => {
    const gw = await startGateway(tinyFleet({ count: 2, parallel: 2, context: 1024 }), policy);
    gateways.push(gw);
    return gw;
  };

  it("prefix-aware: repeated long prefixes land on the replica that served them", async () => {
    const gw = await start({ policy: policyByName("prefix-aware") });
    const first = await servedBy(gw.url, turn(0));
    for (let i = 1; i <= 8; i++) assert.equal(await servedBy(gw.url, turn(i)), first, `turn ${i} follows its prefix`);
    // A different prefix is free to go elsewhere, and then sticks there.
    const other = { messages: [{ role: "system", content: "Another tenant entirely. ".repeat(40) }, { role: "user", content: "hi" }] };
    const second = await servedBy(gw.url, other);
    assert.equal(await servedBy(gw.url, other), second);
  });

  it("least-loaded ignores prefixes: the same turns spread over both replicas", async () => {
    const gw = await start({ policy: leastLoaded });
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) seen.add(await servedBy(gw.url, turn(i)));
    assert.deepEqual([...seen].sort(), ["tiny/0", "tiny/1"], "idle ties are broken at random");
  });

  it("session affinity by the user field or x-flotilla-session sticks a session to one replica", async () => {
    const gw = await start({ policy: policyFromConfig({ name: "sticky", scorers: [{ name: "affinity", weight: 10 }, { name: "load", weight: 1 }], picker: "argmax" }) });
    for (const user of ["alice", "bob", "carol"]) {
      const home = await servedBy(gw.url, { user, messages: [{ role: "user", content: "first" }] });
      for (let i = 0; i < 4; i++) assert.equal(await servedBy(gw.url, { user, messages: [{ role: "user", content: `turn ${i}` }] }), home, `${user} stays home`);
      assert.equal(await servedBy(gw.url, { messages: [{ role: "user", content: "via header" }] }, { "x-flotilla-session": user }), home);
    }
  });
});

describe("live cost- and energy-aware routing from each replica's hardware", { skip: LLAMA2_ABSENT }, () => {
  // One model on two kinds of accelerator: the fleet file's hardware prices
  // each replica, and the router reads those prices.
  const config = {
    models: [
      {
        name: "tiny",
        replicas: [
          { engine: "local", path: TINY_MODEL, parallel: 2, context: 1024, hardware: "h100" },
          { engine: "local", path: TINY_MODEL, parallel: 2, context: 1024, hardware: "b200" },
        ],
      },
    ],
  };
  const gateways: RunningGateway[] = [];
  after(() => Promise.all(gateways.map((g) => g.close())));
  const start = async (policy: Policy): Promise<{ gw: RunningGateway; rates: RateBook }> => {
    const rates = await rateBookFromConfig(parseFleetConfig(config), process.cwd());
    const gw = await startGateway(config, { policy, routeHints: (id) => rates.hints(id) });
    gateways.push(gw);
    return { gw, rates };
  };

  it("cost-aware sends every request to the cheaper replica while it meets the TTFT objective", async () => {
    const { gw, rates } = await start(policyByName("cost-aware"));
    const [a, b] = [rates.hints("tiny/0")!, rates.hints("tiny/1")!];
    assert.notEqual(a.usdPerMTok, b.usdPerMTok, "the two accelerators price a token differently");
    const cheaper = a.usdPerMTok < b.usdPerMTok ? "tiny/0" : "tiny/1";
    for (let i = 0; i < 10; i++) assert.equal(await servedBy(gw.url, turn(i)), cheaper, `request ${i}`);
  });

  it("an energy-first mix sends every request to the replica with fewer joules per token", async () => {
    const { gw, rates } = await start(policyFromConfig({ name: "green", scorers: [{ name: "energy", weight: 1 }, { name: "load", weight: 0.01 }] }));
    const [a, b] = [rates.hints("tiny/0")!, rates.hints("tiny/1")!];
    const greener = a.joulesPerToken < b.joulesPerToken ? "tiny/0" : "tiny/1";
    for (let i = 0; i < 10; i++) assert.equal(await servedBy(gw.url, turn(i)), greener, `request ${i}`);
  });
});
