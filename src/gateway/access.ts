/**
 * Who may call each route. Every route declares its access in its own
 * options (`config: { access }`), and the decision is made on the route the
 * router matched, never on the raw request line: percent-encoding, an
 * absolute-form request line or a query string cannot move a request from
 * one policy to another, because they reach the same matched route. A route
 * that declares nothing cannot be registered (the server does not start),
 * and one that somehow has no policy at request time is refused: default-deny.
 *
 * - public: anyone (liveness, readiness).
 * - tenant: an API key when keys are required (the Tenancy decides), else
 *   loopback callers as tenant "anonymous". The /v1 routes.
 * - admin: the admin token; with none configured, direct loopback callers
 *   only. A tenant's API key is never an operator.
 * - observer: /metrics and the dashboard. They name tenants and their spend,
 *   so they take the admin rule, unless `server.metrics_public` opens them.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FlotillaError } from "../core/errors.js";
import { isLoopbackHost } from "../core/loopback.js";
import { looksLikeKey, parseAuthorization } from "../metering/keys.js";
import type { Principal, Tenancy } from "../metering/tenancy.js";
import { errorBody } from "./errors.js";

export const ACCESS = ["public", "tenant", "admin", "observer"] as const;
export type Access = (typeof ACCESS)[number];

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call the route; required on every route (see gateway/access.ts). */
    access?: Access;
  }
}

export interface AccessOptions {
  readonly tenancy: Tenancy;
  /** The operator's token; without one, admin and observer routes answer direct loopback callers only. */
  readonly adminToken?: string | undefined;
  /** /metrics, /ui and its data routes answer anyone (server.metrics_public). */
  readonly metricsPublic?: boolean | undefined;
}

export interface AccessControl {
  /** The tenant a tenant route's caller authenticated as (undefined: anonymous). */
  principalOf(request: FastifyRequest): Principal | undefined;
  /** Every route registered so far, with its access: what an audit reads. */
  routes(): readonly RoutePolicy[];
}

export interface RoutePolicy {
  readonly method: string;
  readonly url: string;
  readonly access: Access;
}

/**
 * Installs the policy on `app`. Call it before any route is registered: the
 * registration check sees only routes added after it.
 */
export function enforceAccess(app: FastifyInstance, opts: AccessOptions): AccessControl {
  const principals = new WeakMap<FastifyRequest, Principal | undefined>();
  const routes: RoutePolicy[] = [];
  app.addHook("onRoute", (route) => {
    const access = route.config?.access;
    if (access === undefined || !(ACCESS as readonly string[]).includes(access)) {
      throw new Error(`route ${String(route.method)} ${route.url} declares no access policy; give it config.access: ${ACCESS.join(" | ")}`);
    }
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, access });
  });
  app.addHook("onRequest", async (request, reply) => {
    // No route matched: the 404 runs nothing and tells nothing.
    if (request.is404) return;
    const access = request.routeOptions.config.access;
    switch (access) {
      case "public":
        return;
      case "tenant":
        principals.set(request, await opts.tenancy.authenticate(tenantCredential(request.raw), request.socket.remoteAddress));
        return;
      case "observer":
        if (opts.metricsPublic === true) return;
        return denyUnlessAdmin(request, reply, opts.adminToken, true);
      case "admin":
        return denyUnlessAdmin(request, reply, opts.adminToken, false);
      default:
        return reply.code(403).send(errorBody("this route declares no access policy", "authentication_error", null, "forbidden"));
    }
  });
  return { principalOf: (request) => principals.get(request), routes: () => routes };
}

function denyUnlessAdmin(request: FastifyRequest, reply: FastifyReply, token: string | undefined, browser: boolean): FastifyReply | undefined {
  const denied = checkAdmin(request.raw, request.socket.remoteAddress, token);
  if (denied === undefined) return undefined;
  // A browser opening /ui asks its user for the token (any user name, the token as password).
  if (browser && denied.status === 401) void reply.header("www-authenticate", 'Basic realm="flotilla", charset="UTF-8"');
  return reply.code(denied.status).send(errorBody(denied.message, "authentication_error", null, denied.code));
}

/** Headers that credentials arrive in: exactly one of each, or the request is ambiguous. */
const CREDENTIAL_HEADERS = ["authorization", "x-api-key"] as const;

/**
 * The tenant's credential as an Authorization value. `x-api-key` (what
 * Anthropic's SDK sends) is the same credential as `Authorization: Bearer`.
 * A repeated header, or two headers that disagree, is refused rather than
 * guessed at: a proxy and this server might pick different ones.
 */
export function tenantCredential(raw: IncomingMessage): string | undefined {
  const values = credentialValues(raw);
  const authorization = values.get("authorization");
  const apiKey = values.get("x-api-key")?.trim();
  if (apiKey === undefined) return authorization;
  if (authorization !== undefined) {
    const cred = parseAuthorization(authorization);
    if (cred.kind !== "bearer" || cred.token !== apiKey) {
      throw new FlotillaError("invalid_request", "Authorization and x-api-key carry different credentials; send the key in one of them", { param: "x-api-key" });
    }
  }
  return `Bearer ${apiKey}`;
}

function credentialValues(raw: IncomingMessage): Map<string, string> {
  const found = new Map<string, string>();
  const headers = raw.rawHeaders;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    if (!(CREDENTIAL_HEADERS as readonly string[]).includes(name)) continue;
    if (found.has(name)) throw new FlotillaError("invalid_request", `the ${name} header appears more than once; send it once`, { param: name });
    found.set(name, headers[i + 1]!);
  }
  return found;
}

export interface Denial {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

/**
 * The operator's rule: the admin token (as `Authorization: Bearer`, or as a
 * Basic password for browsers), else — with no token configured — a direct
 * loopback caller. A request relayed by a proxy on this host (it carries
 * Forwarded or X-Forwarded-For) is not direct: the proxy's clients are not
 * on loopback. A tenant's API key is never accepted.
 */
export function checkAdmin(raw: IncomingMessage, remoteAddress: string | undefined, token: string | undefined): Denial | undefined {
  let presented: string | undefined;
  try {
    presented = adminCredential(raw);
  } catch (err) {
    return { status: 400, code: "ambiguous_credentials", message: (err as Error).message };
  }
  if (presented !== undefined && looksLikeKey(presented)) {
    return { status: 403, code: "admin_forbidden", message: "an API key cannot use admin routes; they need the admin token (server.admin_token_env)" };
  }
  if (token === undefined) {
    if (isLoopbackHost(remoteAddress) && !relayed(raw)) return undefined;
    return { status: 403, code: "admin_forbidden", message: "admin routes answer direct loopback clients only; set server.admin_token_env to use them from other hosts or through a proxy" };
  }
  if (presented !== undefined && sameSecret(presented, token)) return undefined;
  return { status: 401, code: "invalid_admin_token", message: "admin routes need Authorization: Bearer <admin token>" };
}

/** The secret an admin request presents: a Bearer token, or a Basic password; exactly one Authorization header. */
function adminCredential(raw: IncomingMessage): string | undefined {
  const header = credentialValues(raw).get("authorization");
  if (header === undefined) return undefined;
  const basic = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic !== null) {
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return colon < 0 ? undefined : decoded.slice(colon + 1);
  }
  const cred = parseAuthorization(header);
  return cred.kind === "bearer" ? cred.token : undefined;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function relayed(raw: IncomingMessage): boolean {
  const h = raw.headers;
  return h.forwarded !== undefined || h["x-forwarded-for"] !== undefined || h["x-real-ip"] !== undefined;
}
