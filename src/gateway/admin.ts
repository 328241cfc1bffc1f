import type { FastifyInstance } from "fastify";
import { FlotillaError } from "../core/errors.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import type { Clock } from "../core/clock.js";
import { ConfigError } from "../fleet/config.js";
import type { Membership } from "./membership.js";

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

/** The replica entry itself is checked by the fleet file's own schema (membership.ts), so its errors read the same. */
const addBody = {
  type: "object",
  required: ["model", "replica"],
  properties: { model: { type: "string", minLength: 1, maxLength: 200 }, replica: { type: "object" } },
  additionalProperties: false,
} as const;

const updateBody = {
  type: "object",
  required: ["replica", "set"],
  properties: { replica: { type: "string", minLength: 1 }, set: { type: "object" }, wait_s: { type: "number", minimum: 0, maximum: 3600 } },
  additionalProperties: false,
} as const;

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
    ...(r.config?.engine === "openai" ? { url: r.config.url } : {}),
    // Which discovery provider made it (gateway/discovery/); absent for the file's and this API's.
    ...(r.source === undefined ? {} : { source: r.source }),
  };
}

/**
 * Operator routes: list replicas, drain one (no new traffic; in-flight work
 * finishes) and resume it; add, change and remove replicas while serving,
 * and reload the fleet file (membership.ts). Their access is "admin"
 * (gateway/access.ts): the admin token, or with none configured direct
 * loopback clients only, so a gateway bound to a public address is not
 * drainable by strangers.
 */
export function registerAdminRoutes(app: FastifyInstance, fleet: Fleet, membership: Membership, clock: Clock, reload?: () => Promise<unknown>): void {
  const ADMIN = { config: { access: "admin" } } as const;
  app.register(async (admin) => {
    admin.get("/admin/replicas", ADMIN, () => ({ object: "list", data: fleet.replicas().map(describe) }));

    admin.post<{ Body: ReplicaBody }>("/admin/drain", { ...ADMIN, schema: { body: replicaBody } }, async (request) => {
      const replica = find(fleet, request.body.replica);
      replica.health.draining = true;
      const until = clock.now() + (request.body.wait_s ?? 30) * 1000;
      while (inFlight(replica) > 0 && clock.now() < until) await clock.sleep(50);
      return { ...describe(replica), state: inFlight(replica) === 0 ? "drained" : "draining" };
    });

    admin.post<{ Body: ReplicaBody }>("/admin/resume", { ...ADMIN, schema: { body: replicaBody } }, async (request) => {
      const replica = find(fleet, request.body.replica);
      replica.health.draining = false;
      return describe(replica);
    });

    admin.post<{ Body: { model: string; replica: unknown } }>("/admin/replicas", { ...ADMIN, schema: { body: addBody } }, async (request, reply) => {
      const added = await membership.add(request.body.model, request.body.replica);
      void reply.code(201);
      return { object: "list", data: added.map(describe) };
    });

    admin.post<{ Body: ReplicaBody }>("/admin/remove", { ...ADMIN, schema: { body: replicaBody } }, async (request) => {
      const { replica, evicted } = await membership.remove(request.body.replica, waitMs(request.body.wait_s));
      return { id: replica.id, model: replica.model, state: "removed", moved_requests: evicted };
    });

    admin.post<{ Body: { replica: string; set: unknown; wait_s?: number } }>("/admin/update", { ...ADMIN, schema: { body: updateBody } }, async (request) => {
      const fresh = await membership.update(request.body.replica, request.body.set, waitMs(request.body.wait_s));
      return { ...describe(fresh), replaces: request.body.replica };
    });

    admin.post("/admin/reload", ADMIN, async () => {
      if (reload === undefined) throw new FlotillaError("invalid_request", "this gateway was not started from a fleet file (--config), so there is none to reload");
      return reload().catch((err: unknown) => {
        // The file no longer parses: nothing changes, and the operator reads why.
        throw err instanceof ConfigError ? new FlotillaError("invalid_request", err.message, { param: "fleet file" }) : err;
      });
    });
  });
}

function waitMs(waitS: number | undefined): number | undefined {
  return waitS === undefined ? undefined : waitS * 1000;
}

/** This gateway's own requests on the replica: what a drain waits for (others' load, engine-reported, is not ours to wait on). */
function inFlight(r: Replica): number {
  const load = r.engine.load();
  const own = load.own ?? load;
  return own.active + own.queued;
}

function find(fleet: Fleet, id: string): Replica {
  const replica = fleet.replica(id);
  if (replica === undefined) {
    const known = fleet.replicas().map((r) => r.id).join(", ");
    throw new FlotillaError("invalid_request", `no replica "${id}"; replicas: ${known}`, { param: "replica" });
  }
  return replica;
}
