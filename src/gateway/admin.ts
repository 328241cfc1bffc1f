import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { FlotillaError } from "../core/errors.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import { looksLikeKey, parseAuthorization } from "../metering/keys.js";
import { errorBody } from "./errors.js";
import { sleep } from "./sleep.js";


const replicaBody = {
  type: "object",
  required: ["replica"],
  properties: {
    replica: { type: "string", minLength: 1 },
    /** How long to wait for in-flight requests before answering. */
    wait_s: { type: "number", minimum: 0, maximum: 3600 },
  },
  additionalProperties: false,
} as const;

interface ReplicaBody {
  replica: string;
  wait_s?: number;
}

function describe(r: Replica): Record<string, unknown> {
  const load = r.engine.load();
  return {
    id: r.id,
    model: r.model,
    engine: r.engine.kind,
    state: r.health.state(r.engine.isReady()),
    active: load.active,
    queued: load.queued,
    slots: load.slots,
    context_size: r.engine.contextSize ?? null,
  };
}

/**
 * Operator routes: list replicas, drain one (no new traffic; in-flight work
 * finishes) and resume it. With no admin token configured they answer only
 * clients on loopback, so a gateway bound to a public address is not
 * drainable by strangers.
 */
export function registerAdminRoutes(app: FastifyInstance, fleet: Fleet, adminToken: string | undefined): void {
  app.register(async (admin) => {
    admin.addHook("onRequest", async (request, reply) => {
      const denied = checkAdmin(request, adminToken);
      if (denied !== undefined) return reply.code(denied.status).send(errorBody(denied.message, "authentication_error", null, denied.code));
    });

    admin.get("/admin/replicas", () => ({ object: "list", data: fleet.replicas().map(describe) }));

    admin.post<{ Body: ReplicaBody }>("/admin/drain", { schema: { body: replicaBody } }, async (request) => {
      const replica = find(fleet, request.body.replica);
      replica.health.draining = true;
      const until = Date.now() + (request.body.wait_s ?? 30) * 1000;
      while (inFlight(replica) > 0 && Date.now() < until) await sleep(50);
      return { ...describe(replica), state: inFlight(replica) === 0 ? "drained" : "draining" };
    });

    admin.post<{ Body: ReplicaBody }>("/admin/resume", { schema: { body: replicaBody } }, async (request) => {
      const replica = find(fleet, request.body.replica);
      replica.health.draining = false;
      return describe(replica);
    });
  });
}

function inFlight(r: Replica): number {
  const load = r.engine.load();
  return load.active + load.queued;
}

function find(fleet: Fleet, id: string): Replica {
  const replica = fleet.replica(id);
  if (replica === undefined) {
    const known = fleet.replicas().map((r) => r.id).join(", ");
    throw new FlotillaError("invalid_request", `no replica "${id}"; replicas: ${known}`, { param: "replica" });
  }
  return replica;
}

/** The fleet admin routes' rule (admin token, else loopback only), and never a tenant's API key. */
export function checkAdmin(request: FastifyRequest, token: string | undefined): { status: number; code: string; message: string } | undefined {
  const cred = parseAuthorization(request.headers.authorization);
  if (cred.kind === "bearer" && looksLikeKey(cred.token)) {
    return { status: 403, code: "admin_forbidden", message: "an API key cannot use admin routes; they need the admin token (server.admin_token_env)" };
  }
  if (token === undefined) {
    if (isLoopback(request.socket.remoteAddress)) return undefined;
    return { status: 403, code: "admin_forbidden", message: "admin routes answer loopback clients only; set server.admin_token_env to use them from other hosts" };
  }
  const given = Buffer.from(cred.kind === "bearer" ? cred.token : "");
  const expected = Buffer.from(token);
  if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined;
  return { status: 401, code: "invalid_admin_token", message: "admin routes need Authorization: Bearer <admin token>" };
}

function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127."));
}
