/**
 * POST /v1/messages: Anthropic's Messages API, for Anthropic's SDKs and the
 * tools built on them. It is one more reader and writer over the completion
 * run (completions.ts), so a message takes exactly the chat completions'
 * path: tenant access (the key as x-api-key or Authorization), limits,
 * admission and fair share, routing, failover and continuation, one ledger
 * row (endpoint "messages"), x-flotilla-* headers. Only its body
 * (anthropic-request.ts), its answers (anthropic-events.ts) and its errors
 * (anthropic-errors.ts) are Anthropic's.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { FlotillaError } from "../core/errors.js";
import { anthropicError } from "./anthropic-errors.js";
import { messagesWriter } from "./anthropic-events.js";
import { messagesRequest } from "./anthropic-request.js";
import { apiHandler, type ApiInput, type ApiRequest, type CompletionServices } from "./completions.js";
import { logFailure, toHttpError } from "./errors.js";
import { drainBody } from "./http-limits.js";

/**
 * The anthropic-version values served, echoed back as sent: 2023-06-01, and
 * 2026-10-21, what @anthropic-ai/sdk 1.x sends. The text messages served
 * here read and answer the same under both.
 */
const VERSIONS = ["2023-06-01", "2026-10-21"];

export function messagesHandler(services: CompletionServices): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return apiHandler(services, (request: ApiInput): ApiRequest => {
    const version = apiVersion(request.headers);
    if (request.headers["anthropic-beta"] !== undefined) {
      throw new FlotillaError("invalid_request", "beta features are not served here; send the request without anthropic-beta", { param: "anthropic-beta" });
    }
    const body = messagesRequest(request.id, request.body);
    return {
      endpoint: "messages",
      generation: body.generation,
      model: body.model,
      stream: body.stream,
      sessionKey: body.userId,
      // request-id is where Anthropic's SDKs read the id they log (x-request-id carries it too).
      headers: { "request-id": request.id, ...(version === undefined ? {} : { "anthropic-version": version }) },
      writer: messagesWriter,
    };
  });
}

/** The version asked for, if any; one not served is refused rather than answered in a shape the client may not expect. */
function apiVersion(headers: IncomingHttpHeaders): string | undefined {
  const version = headers["anthropic-version"];
  if (version === undefined) return undefined;
  if (VERSIONS.includes(version as string)) return version as string;
  throw new FlotillaError("invalid_request", `anthropic-version ${JSON.stringify(version)} is not served here; send one of ${VERSIONS.join(", ")}`, { param: "anthropic-version" });
}

/**
 * Every refusal and failure of the route, before its answer began, in
 * Anthropic's shape; the same handling as every other route's otherwise
 * (server.ts): a 5xx is logged, an oversized body is read to its end so its
 * sender reads the 413.
 */
export async function messagesErrorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const http = toHttpError(err);
  logFailure(request.log, err, http);
  if (http.status === 413) void reply.header("connection", (await drainBody(request.raw)) ? "keep-alive" : "close");
  const answer = anthropicError(http, request.id);
  if (answer.retryAfterS !== undefined) void reply.header("retry-after", String(answer.retryAfterS));
  void reply.header("request-id", request.id);
  const version = request.headers["anthropic-version"];
  if (VERSIONS.includes(version as string)) void reply.header("anthropic-version", version);
  return reply.code(answer.status).send(answer.body);
}
