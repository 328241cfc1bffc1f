/**
 * The audit's attacks on authentication, in every auth mode: the same route
 * reached through encoded paths, absolute-form request lines, dot segments,
 * odd credentials and repeated headers. The rule under test: no request
 * reaches an engine, a tenant's data or an operator's route without its
 * credential, whatever bytes spell the path.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { ADMIN_TOKEN, CHAT_BODY, COMPLETION_BODY, raw, securedGateway, type AuthMode, type SecuredGateway } from "./harness.js";

interface Target {
  readonly method: "GET" | "POST";
  readonly path: string;
  readonly body?: string;
}

const TENANT_ROUTES: readonly Target[] = [
  { method: "POST", path: "/v1/chat/completions", body: CHAT_BODY },
  { method: "POST", path: "/v1/completions", body: COMPLETION_BODY },
  { method: "POST", path: "/v1/messages", body: JSON.stringify({ model: "m", max_tokens: 4, messages: [{ role: "user", content: "hi" }] }) },
  { method: "GET", path: "/v1/models" },
  { method: "GET", path: "/v1/models/m" },
  { method: "GET", path: "/v1/usage" },
  { method: "GET", path: "/v1/batches" },
  { method: "GET", path: "/v1/files" },
];

const ADMIN_ROUTES: readonly Target[] = [
  { method: "GET", path: "/admin/replicas" },
  { method: "POST", path: "/admin/drain", body: JSON.stringify({ replica: "m/0", wait_s: 0 }) },
  { method: "GET", path: "/admin/tenants" },
  { method: "POST", path: "/admin/tenants", body: JSON.stringify({ name: "mallory" }) },
  { method: "GET", path: "/admin/keys" },
  { method: "POST", path: "/admin/keys", body: JSON.stringify({ tenant: "alice" }) },
  { method: "GET", path: "/admin/usage" },
  { method: "GET", path: "/admin/batches" },
];

const OBSERVER_ROUTES: readonly Target[] = [
  { method: "GET", path: "/metrics" },
  { method: "GET", path: "/ui" },
  { method: "GET", path: "/ui/api/live" },
  { method: "GET", path: "/ui/api/events" },
  { method: "GET", path: "/ui/api/sim" },
];

const pct = (c: string, lower = false): string => {
  const hex = c.charCodeAt(0).toString(16).padStart(2, "0");
  return `%${lower ? hex : hex.toUpperCase()}`;
};

/** The spellings of one path the audit tried, and more: each is the same route or none. */
function pathVariants(path: string): string[] {
  const out = [path, `${path}?x=1`, `${path}/`, `/${path}`, path.replace("/", "//"), `/.${path}`, `/x/..${path}`, path.replace(/\/([^/]+)$/, "/./$1"), path.toUpperCase()];
  for (let i = 1; i < path.length; i++) {
    if (path[i] === "/") continue;
    out.push(path.slice(0, i) + pct(path[i]!) + path.slice(i + 1));
    out.push(path.slice(0, i) + pct(path[i]!, true) + path.slice(i + 1));
  }
  out.push([...path].map((c) => (c === "/" ? c : pct(c))).join(""));
  out.push(path.replace(/\//g, "%2F"));
  out.push(`http://127.0.0.1${path}`, `http://evil.example${path}`, `HTTP://127.0.0.1:1${path}?a=b`);
  out.push(`${path}${"/a".repeat(3000)}`, `${path};jsessionid=1`, `${path}%00`, `${path}#frag`);
  return out;
}

const isSuccess = (status: number): boolean => status >= 200 && status < 300;

async function send(g: SecuredGateway, t: Target, path: string, headers: readonly string[] = []): Promise<number> {
  const head = [`${t.method} ${path} HTTP/1.1`, ...headers].join("\r\n");
  return (await raw(g.port, head, t.body)).status;
}

/** The attacks that must fail in a mode where `targets` need a credential the request lacks. */
async function assertNoVariantGetsIn(g: SecuredGateway, targets: readonly Target[], headers: readonly string[] = []): Promise<void> {
  const before = g.upstream.generations;
  for (const t of targets) {
    for (const path of pathVariants(t.path)) {
      const status = await send(g, t, path, headers);
      assert.ok(!isSuccess(status) && status !== 0 && status < 500, `${t.method} ${path} without a credential answered ${status} in mode ${g.mode}`);
    }
  }
  assert.equal(g.upstream.generations, before, "a request without a credential reached the engine");
}

const modes: readonly AuthMode[] = ["keys", "admin-token", "require-keys"];

for (const mode of modes) {
  describe(`auth mode "${mode}": /v1 routes`, () => {
    let g: SecuredGateway;
    before(async () => {
      g = await securedGateway(mode);
    });
    after(() => g.close());

    it("no spelling of a /v1 path is served without a key (encoded, absolute-form, dot segments, slashes, case)", async () => {
      await assertNoVariantGetsIn(g, TENANT_ROUTES);
    });

    it("the audit's exact requests are refused with 401", async () => {
      for (const path of ["/%761/chat/completions", "/v%31/chat/completions", "http://host/v1/chat/completions"]) {
        assert.equal(await send(g, TENANT_ROUTES[0]!, path), 401, path);
      }
      assert.equal(await send(g, TENANT_ROUTES[4]!, "/%761/usage"), 401);
      assert.equal(g.upstream.generations, 0);
    });

    it("a key in the query string is no credential", async () => {
      if (g.key === undefined) return;
      assert.equal(await send(g, TENANT_ROUTES[0]!, `/v1/chat/completions?api_key=${g.key}`), 401);
      assert.equal(await send(g, TENANT_ROUTES[0]!, `/v1/chat/completions?key=${g.key}&access_token=${g.key}`), 401);
    });
  });
}

describe("credentials in headers (keys required)", () => {
  let g: SecuredGateway;
  before(async () => {
    g = await securedGateway("keys");
  });
  after(() => g.close());
  const chat = TENANT_ROUTES[0]!;

  it("a valid key is served, as Authorization: Bearer or as x-api-key (what Anthropic's SDK sends)", async () => {
    assert.equal(await send(g, chat, "/v1/chat/completions", [`authorization: Bearer ${g.key}`]), 200);
    assert.equal(await send(g, chat, "/v1/chat/completions", [`x-api-key: ${g.key}`]), 200);
    assert.equal(await send(g, chat, "/v1/chat/completions", [`authorization: bearer   ${g.key}  `]), 200);
  });

  it("odd schemes, bare keys and garbage are 401", async () => {
    const key = g.key!;
    for (const h of [
      `authorization: ${key}`,
      `authorization: Token ${key}`,
      `authorization: Basic ${Buffer.from(`${key}:`).toString("base64")}`,
      `authorization: Bearer`,
      `authorization: Bearer ${key}x`,
      `authorization: Bearer ${key.slice(0, -1)}`,
      "authorization: Bearer flt-unused",
      "x-api-key: garbage",
      "x-api-key: ",
      `proxy-authorization: Bearer ${key}`,
    ]) {
      assert.equal(await send(g, chat, "/v1/chat/completions", [h]), 401, h);
    }
  });

  it("a repeated or contradictory credential is refused (400), never resolved by picking one", async () => {
    const key = g.key!;
    for (const headers of [
      [`authorization: Bearer ${key}`, `authorization: Bearer ${key}`],
      ["authorization: Bearer flt-bogus", `authorization: Bearer ${key}`],
      [`authorization: Bearer ${key}`, "authorization: Bearer flt-bogus"],
      [`x-api-key: ${key}`, "x-api-key: other"],
      [`x-api-key: ${key}`, "authorization: Bearer other"],
      ["x-api-key: other", `authorization: Bearer ${key}`],
    ]) {
      assert.equal(await send(g, chat, "/v1/chat/completions", headers), 400, headers.join(" + "));
    }
  });

  it("property: generated paths and credentials never reach the engine without the key", async () => {
    const key = g.key!;
    const before = g.upstream.generations;
    const spelling = fc.constantFrom(...TENANT_ROUTES).chain((t) => fc.tuple(fc.constant(t), fc.array(fc.constantFrom("keep", "upper", "lower", "case"), { minLength: t.path.length, maxLength: t.path.length }), fc.constantFrom("", "http://127.0.0.1", "http://x"), fc.constantFrom("", "?api_key=KEY", "?x=1", "/", "?key=KEY#")));
    const wrongCredential = fc.array(
      fc.constantFrom("authorization: Bearer flt-AAAA", "authorization: Basic Og==", "x-api-key: nope", `authorization: Bearer ${key.toUpperCase()}`, "authorization:  ", `cookie: key=${key}`, `x-api-key: ${key.slice(4)}`),
      { maxLength: 2 },
    );
    await fc.assert(
      fc.asyncProperty(spelling, wrongCredential, async ([t, edits, origin, tail], headers) => {
        const path = [...t.path].map((c, i) => (c === "/" || edits[i] === "keep" ? c : edits[i] === "case" ? c.toUpperCase() : pct(c, edits[i] === "lower"))).join("");
        const status = await send(g, t, origin + path + tail.replace("KEY", key), headers);
        return !isSuccess(status) && status < 500;
      }),
      { numRuns: 300 },
    );
    assert.equal(g.upstream.generations, before);
  });
});

describe("operator routes (admin token configured)", () => {
  let g: SecuredGateway;
  before(async () => {
    g = await securedGateway("admin-token");
  });
  after(() => g.close());

  it("no spelling of an admin or observer path is served without the token, even with a tenant's key", async () => {
    await assertNoVariantGetsIn(g, [...ADMIN_ROUTES, ...OBSERVER_ROUTES]);
    await assertNoVariantGetsIn(g, [...ADMIN_ROUTES, ...OBSERVER_ROUTES], [`authorization: Bearer ${g.key}`]);
    await assertNoVariantGetsIn(g, [...ADMIN_ROUTES, ...OBSERVER_ROUTES], ["authorization: Bearer wrong-token"]);
    assert.equal(await g.tenancy.getTenant("mallory"), undefined, "a tenant was created without the token");
    assert.equal((await g.tenancy.listKeys("alice")).length, 1, "a key was created without the token");
    assert.equal(g.fleet.replicas()[0]!.health.draining, false, "a replica was drained without the token");
  });

  it("the token opens them, as Bearer or as a browser's Basic password", async () => {
    assert.equal(await send(g, ADMIN_ROUTES[0]!, "/admin/replicas", [`authorization: Bearer ${ADMIN_TOKEN}`]), 200);
    assert.equal(await send(g, OBSERVER_ROUTES[0]!, "/metrics", [`authorization: Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}`]), 200);
    assert.equal(await send(g, ADMIN_ROUTES[0]!, "/admin/replicas", [`authorization: Bearer ${ADMIN_TOKEN}`, "authorization: Bearer x"]), 400);
  });
});

describe("operator routes (no admin token: direct loopback only)", () => {
  let g: SecuredGateway;
  before(async () => {
    g = await securedGateway("open");
  });
  after(() => g.close());

  it("a direct loopback caller is the operator", async () => {
    assert.equal(await send(g, ADMIN_ROUTES[0]!, "/admin/replicas"), 200);
    assert.equal(await send(g, OBSERVER_ROUTES[0]!, "/metrics"), 200);
  });

  it("a request relayed by a proxy on this host is not (Forwarded, X-Forwarded-For, X-Real-IP)", async () => {
    for (const h of ["x-forwarded-for: 203.0.113.9", "forwarded: for=203.0.113.9", "x-real-ip: 203.0.113.9"]) {
      await assertNoVariantGetsIn(g, [...ADMIN_ROUTES, ...OBSERVER_ROUTES], [h]);
    }
  });
});
