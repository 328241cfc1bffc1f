/**
 * The billing rule (docs/tenancy.md), end to end: an upstream that
 * over-generates, over-reports, dies mid-answer or sends several tokens a
 * chunk, and what the client receives and the ledger bills for each.
 */
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { eventually } from "../helpers.js";
import { readStream, startTenantGateway, sqliteBackend, type TenantGateway } from "./harness.js";

type Behaviour = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void;

const sse = (res: ServerResponse, chunk: unknown): boolean => res.write(`data: ${JSON.stringify(chunk)}\n\n`);
const text = (t: string, usage?: unknown): unknown => ({ choices: [{ index: 0, text: t, delta: { content: t }, finish_reason: null }], ...(usage === undefined ? {} : { usage }) });
const finish = (reason: string, usage?: unknown): unknown => ({ choices: [{ index: 0, text: "", delta: {}, finish_reason: reason }], ...(usage === undefined ? {} : { usage }) });

/** An upstream whose answer to each generation is whatever `behaviour` currently says. */
async function scriptedUpstream(): Promise<{ url: string; set(b: Behaviour): void; close(): void }> {
  let behaviour: Behaviour = (_req, res) => res.end();
  const server = createHttpServer((req, res) => {
    if (req.method === "GET") return void res.end("ok");
    let raw = "";
    req.setEncoding("utf8").on("data", (d: string) => (raw += d));
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      behaviour(req, res, JSON.parse(raw) as Record<string, unknown>);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    set: (b) => (behaviour = b),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Streams `n` chunks of `per` tokens each, with vLLM's running usage, then a final usage chunk claiming `claim`. */
function generous(n: number, per: number, claim?: { prompt_tokens: number; completion_tokens: number }): Behaviour {
  return (_req, res) => {
    for (let i = 1; i <= n; i++) sse(res, text("ab".repeat(per), { prompt_tokens: 4, completion_tokens: i * per }));
    sse(res, finish("stop"));
    sse(res, { choices: [], usage: claim ?? { prompt_tokens: 4, completion_tokens: n * per } });
    res.end("data: [DONE]\n\n");
  };
}

describe("the billing rule against misbehaving upstreams", () => {
  let upstream: Awaited<ReturnType<typeof scriptedUpstream>>;
  let db: Awaited<ReturnType<typeof sqliteBackend.fresh>>;
  let g: TenantGateway;
  let key: string;
  before(async () => {
    upstream = await scriptedUpstream();
    db = await sqliteBackend.fresh();
    g = await startTenantGateway(db.url, { config: { models: [{ name: "m", replicas: [{ engine: "openai", url: upstream.url, upstream_model: "m", context: 100_000 }] }] } });
    await g.tenancy.createTenant({ id: "t", tokensPerMinute: 1000 });
    key = (await g.tenancy.createKey("t")).key;
  });
  after(async () => {
    await g.close();
    upstream.close();
    await db.drop();
  });

  const call = (body: Record<string, unknown>): Promise<Response> =>
    fetch(`${g.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify({ model: "m", prompt: "four", ...body }) });
  const lastRow = async (): Promise<Awaited<ReturnType<TenantGateway["store"]["ledger"]>>[number]> => {
    let rows = await g.store.ledger({ tenantId: "t" });
    await eventually(async () => {
      rows = await g.store.ledger({ tenantId: "t" });
      return rows.at(-1)?.status !== "running";
    }, "the row to settle");
    return rows.at(-1)!;
  };

  it("holds an over-generating upstream to max_tokens: the answer is cut with finish_reason length, streamed or not", async () => {
    upstream.set(generous(1000, 1));
    const whole = (await (await call({ max_tokens: 10 })).json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    assert.equal(whole.choices[0]!.text, "ab".repeat(10));
    assert.equal(whole.choices[0]!.finish_reason, "length");
    assert.equal(whole.usage.completion_tokens, 10);
    assert.equal((await lastRow()).outputTokens, 10);

    const { events } = await readStream(await call({ max_tokens: 10, stream: true, stream_options: { include_usage: true } }));
    const streamed = events.map((e) => ((e.choices as { text?: string }[])[0]?.text ?? "")).join("");
    assert.equal(streamed, "ab".repeat(10));
    assert.equal((events.at(-2)!.choices as { finish_reason: string }[])[0]!.finish_reason, "length");
    assert.equal((events.at(-1)!.usage as { completion_tokens: number }).completion_tokens, 10);
  });

  it("counts a chunk of several tokens as several (running usage), so max_tokens holds after multi-token chunks", async () => {
    upstream.set(generous(20, 2));
    const whole = (await (await call({ max_tokens: 9 })).json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    // Four chunks of two fit; the fifth would make ten.
    assert.equal(whole.choices[0]!.text, "abab".repeat(4));
    assert.equal(whole.choices[0]!.finish_reason, "length");
    assert.equal(whole.usage.completion_tokens, 8);
  });

  it("clamps what an upstream claims to what is possible, and the tenant is not locked out by it", async () => {
    upstream.set(generous(3, 1, { prompt_tokens: 100_000, completion_tokens: 5_000 }));
    const whole = (await (await call({ max_tokens: 10 })).json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    assert.ok(whole.usage.prompt_tokens <= 6, `billed ${whole.usage.prompt_tokens} prompt tokens for a 4-byte prompt`);
    assert.ok(whole.usage.completion_tokens <= 7, `billed ${whole.usage.completion_tokens} tokens for 6 bytes of answer`);
    const row = await lastRow();
    assert.equal(row.inputTokens, whole.usage.prompt_tokens);
    assert.equal(row.outputTokens, whole.usage.completion_tokens);
    const t = await g.tenancy.getTenant("t");
    assert.ok((t!.state.tpmTokens ?? 0) >= -1000, `the tokens/minute bucket went to ${t!.state.tpmTokens}`);
    upstream.set(generous(1, 1));
    assert.equal((await call({ max_tokens: 5 })).status, 200, "the tenant was locked out");
  });

  it("a non-streaming request whose upstream dies mid-answer is an error, and bills nothing", async () => {
    upstream.set((_req, res) => {
      sse(res, text("ab", { prompt_tokens: 4, completion_tokens: 1 }));
      sse(res, text("ab", { prompt_tokens: 4, completion_tokens: 2 }));
      res.destroy();
    });
    const res = await call({ max_tokens: 10 });
    assert.ok(res.status >= 500, `status ${res.status}`);
    const row = await lastRow();
    assert.equal(row.status, "failed");
    assert.match(row.errorCode ?? "", /^engine_(unavailable|error)$/);
    assert.equal(row.inputTokens, 0);
    assert.equal(row.outputTokens, 0);
    assert.equal(row.costNusd, 0);
  });

  it("a stream cut short bills what it delivered, and its prompt by estimate, marked as estimated", async () => {
    upstream.set((_req, res) => {
      // No usage at all, as llama-server and Ollama stream.
      sse(res, text("abcd"));
      sse(res, text("efgh"));
      // Closed without finishing: what was written arrives, then the answer breaks off.
      res.end();
    });
    const cut = await call({ max_tokens: 10, stream: true });
    assert.equal(cut.status, 200, await cut.clone().text());
    const { events } = await readStream(cut);
    assert.ok(events.some((e) => e.error !== undefined), `the stream should end with an error event: ${JSON.stringify(events)}`);
    const row = await lastRow();
    assert.equal(row.status, "failed");
    assert.match(row.errorCode ?? "", /^engine_(unavailable|error)$/);
    // Each chunk counts one token (the upstream counts none), however many attempts resumed the answer.
    const delivered = events.filter((e) => ((e.choices as { text?: string }[] | undefined)?.[0]?.text ?? "") !== "").length;
    assert.ok(delivered >= 2);
    assert.equal(row.outputTokens, delivered);
    // "four": one token by estimate, not the 6 of the byte-count bound that admission reserves.
    assert.equal(row.inputTokens, 1);
    assert.equal(row.estimated, true);
  });
});
