import type { FastifyInstance } from "fastify";
import { FlotillaError } from "../core/errors.js";
import type { Fleet, Replica } from "../fleet/fleet.js";
import type { Clock } from "../core/clock.js";

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
 * finishes) and resume it. Their access is "admin" (gateway/access.ts): the
 * admin token, or with none configured direct loopback clients only, so a
 * gateway bound to a public address is not drainable by strangers.
 */
export function registerAdminRoutes(app: FastifyInstance, fleet: Fleet, clock: Clock): void {
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
