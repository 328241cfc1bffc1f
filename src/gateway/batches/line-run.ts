/**
 * One Batch API line through the same completion run as an HTTP request
 * (admission, fair turn in the batch class, routing, failover, settlement),
 * answered whole into a result that commits with the line's ledger row.
 */
import { Ajv, type ValidateFunction } from "ajv";
import type { FastifyBaseLogger } from "fastify";
import { FlotillaError } from "../../core/errors.js";
import type { Principal } from "../../metering/tenancy.js";
import { batchPlans, type BatchLine, type BatchLineResult } from "../../store/index.js";
import { completionReader, runApi, type ApiReader, type CompletionServices, type Exchange } from "../completions.js";
import { embeddingsReader, embeddingsSchema } from "../embeddings.js";
import { toHttpError, type HttpError } from "../errors.js";
import { responsesReader, responsesSchema } from "../openai-responses-request.js";
import { chatCompletionSchema, completionSchema } from "../schemas.js";
import { chatRequest, completionRequest } from "../translate.js";
import type { BatchEndpoint } from "./input-file.js";

/** Why a runner aborts a line: its batch was cancelled or expired (the line ends so), or the runner is stopping (the line runs again later). */
export const BATCH_STOPPED = "batch_stopped";
export const RUNNER_STOPPING = "runner_stopping";

interface EndpointRun {
  /** The body's validator, compiled on a batch's first line of this endpoint: compiling all four cost every gateway ~75 ms of CPU at start. */
  readonly validator: () => ValidateFunction;
  readonly read: ApiReader<never>;
}

/** Per batch endpoint: its route's body schema (checked as the route checks it) and its reader. */
export function endpointRuns(services: CompletionServices): Readonly<Record<BatchEndpoint, EndpointRun>> {
  // The options the gateway gives Fastify's validator (server.ts): nothing coerced, added or removed.
  let ajv: Ajv | undefined;
  const compiled = (schema: object): (() => ValidateFunction) => {
    let validate: ValidateFunction | undefined;
    return () => (validate ??= (ajv ??= new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, strict: false })).compile(schema));
  };
  return {
    "/v1/chat/completions": { validator: compiled(chatCompletionSchema), read: completionReader("chat", chatRequest) },
    "/v1/completions": { validator: compiled(completionSchema), read: completionReader("completion", completionRequest) },
    "/v1/embeddings": { validator: compiled(embeddingsSchema), read: embeddingsReader(services) },
    "/v1/responses": { validator: compiled(responsesSchema), read: responsesReader },
  };
}

/**
 * What became of a line: its result committed with its ledger row
 * (`committed`), or a result to write now (the request was refused before
 * it had a row), or neither: it is to run again (the fleet or the tenant's
 * limits were full, or the runner is stopping).
 */
export type LineOutcome = { readonly committed: true } | { readonly committed: false; readonly result?: BatchLineResult; readonly retryAfterS?: number };

/** The tenant a batch's lines run as, as the store has it now (undefined: gone, or the anonymous tenant's batch). */
export type BatchTenant = { readonly id: string; readonly uid: string; readonly weight: number; readonly priority: "interactive" | "batch" } | undefined;

export async function runLine(services: CompletionServices, runs: Readonly<Record<BatchEndpoint, EndpointRun>>, line: BatchLine, tenant: BatchTenant, signal: AbortSignal, log: FastifyBaseLogger): Promise<LineOutcome> {
  const id = batchPlans.lineRequestId(line.batchId, line.line);
  let committed = false;
  const resultOf = (answer: unknown, failure: unknown, started: boolean): BatchLineResult | undefined => lineResult(line, id, { answer, failure, started }, signal);
  try {
    const exchange: Exchange = {
      id,
      headers: {},
      log,
      principal: batchPrincipal(line, tenant),
      explain: false,
      batch: true,
      onGone: (cancel) => signal.addEventListener("abort", cancel, { once: true }),
      send: async () => {},
      result: (answer, failure, started) => {
        const r = resultOf(answer, failure, started);
        committed = r !== undefined;
        return r;
      },
    };
    const run = runs[line.endpoint as BatchEndpoint];
    const body: unknown = JSON.parse(line.body);
    const validate = run.validator();
    if (!validate(body)) throw Object.assign(new Error("invalid body"), { validation: validate.errors ?? [] });
    await runApi(services, exchange, run.read({ id, body: body as never, headers: {} }));
    return { committed: true };
  } catch (err) {
    if (committed) return { committed: true };
    const result = resultOf(undefined, err, false);
    return result === undefined ? { committed: false, retryAfterS: toHttpError(err).retryAfterS ?? 1 } : { committed: false, result };
  }
}

/** The output or error file's line for what happened; undefined when the line is to run again. */
function lineResult(line: BatchLine, id: string, ended: { answer: unknown; failure: unknown; started: boolean }, signal: AbortSignal): BatchLineResult | undefined {
  const { answer, failure } = ended;
  const at = { batchId: line.batchId, line: line.line, attempt: line.attempt };
  if (answer !== undefined) return { ...at, state: "completed", result: resultJson(id, line.customId, 200, answer) };
  if (signal.aborted) {
    if (signal.reason !== BATCH_STOPPED) return undefined;
    return { ...at, state: "cancelled", result: batchPlans.unrunResult(line.batchId, line.line, line.customId, "cancelled") };
  }
  const http = toHttpError(failure);
  if (retryable(http, ended.started)) return undefined;
  return { ...at, state: "failed", result: resultJson(id, line.customId, http.status, http.body) };
}

/**
 * A full fleet, a tenant at its limits, a replica not ready, a deadline
 * spent waiting behind interactive traffic for a slot: the line waits and
 * runs again, as a client would retry. A deadline passed while generating is
 * the line's own failure.
 */
function retryable(http: HttpError, started: boolean): boolean {
  return http.status === 429 || http.status === 503 || (http.status === 504 && !started);
}

function resultJson(id: string, customId: string, status: number, body: unknown): string {
  return JSON.stringify({ id, custom_id: customId, response: { status_code: status, request_id: id, body }, error: null });
}

/** The principal a batch's lines run as: the tenant that created it, while it exists with that identity. */
function batchPrincipal(line: BatchLine, tenant: BatchTenant): Principal | undefined {
  if (line.tenantId === "anonymous") return undefined;
  if (tenant === undefined || tenant.uid !== line.owner) throw new FlotillaError("unauthorized", `tenant "${line.tenantId}" that created this batch no longer exists`);
  return { tenantId: tenant.id, tenantUid: tenant.uid, keyId: line.keyId ?? "", weight: tenant.weight, priority: tenant.priority };
}
