import type { HttpError } from "./errors.js";

/**
 * Anthropic's error vocabulary over Flotilla's. Errors are first made the
 * one way every route makes them (toHttpError: a status, an OpenAI body
 * whose `code` is Flotilla's failure, a Retry-After), then said again here in
 * Anthropic's shape and statuses, so the Messages API refuses exactly what
 * the OpenAI routes refuse, for the same reasons.
 */

export interface AnthropicErrorBody {
  readonly type: "error";
  readonly error: { readonly type: string; readonly message: string };
  readonly request_id: string;
}

export interface AnthropicError {
  readonly status: number;
  readonly retryAfterS: number | undefined;
  readonly body: AnthropicErrorBody;
}

/**
 * No capacity now, on any replica or in the queue (the fleet is full, no
 * replica is ready, this gateway is shutting down): Anthropic's 529, which
 * its SDK retries after the Retry-After given.
 */
const OVERLOADED = new Set(["overloaded", "no_ready_replica", "engine_unavailable", "shutting_down"]);

const TYPE_BY_STATUS: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  504: "timeout_error",
};

export function anthropicError(http: HttpError, requestId: string): AnthropicError {
  const { message, param, code } = http.body.error;
  // Anthropic's errors have no `param`: the message names the field instead.
  const text = param === null || message.startsWith(param) ? message : `${param}: ${message}`;
  const body = (type: string): AnthropicErrorBody => ({ type: "error", error: { type, message: text }, request_id: requestId });
  if (code !== null && OVERLOADED.has(code)) return { status: 529, retryAfterS: http.retryAfterS, body: body("overloaded_error") };
  // A cancel that reaches a client was the gateway's: a stream past its deadline (x-flotilla-timeout-ms), or past shutdown's grace.
  if (code === "cancelled") return { status: 504, retryAfterS: undefined, body: body("timeout_error") };
  const type = TYPE_BY_STATUS[http.status];
  if (type !== undefined) return { status: http.status, retryAfterS: http.retryAfterS, body: body(type) };
  // Any other refusal (415, 408) is the request's to fix; any other failure (an engine's 502) is Anthropic's catch-all 500.
  if (http.status < 500) return { status: http.status, retryAfterS: http.retryAfterS, body: body("invalid_request_error") };
  return { status: 500, retryAfterS: http.retryAfterS, body: body("api_error") };
}
