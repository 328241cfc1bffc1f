import type { FailureCode } from "../core/errors.js";
import { FlotillaError } from "../core/errors.js";

/** The error body every OpenAI client knows how to read. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface HttpError {
  readonly status: number;
  readonly body: ErrorBody;
  readonly retryAfterS: number | undefined;
}

const byCode: Record<FailureCode, { status: number; type: string }> = {
  invalid_request: { status: 400, type: "invalid_request_error" },
  unauthorized: { status: 401, type: "authentication_error" },
  forbidden: { status: 403, type: "permission_error" },
  quota_exceeded: { status: 429, type: "rate_limit_error" },
  context_length_exceeded: { status: 400, type: "invalid_request_error" },
  model_not_found: { status: 404, type: "invalid_request_error" },
  not_found: { status: 404, type: "invalid_request_error" },
  no_ready_replica: { status: 503, type: "service_unavailable_error" },
  overloaded: { status: 429, type: "rate_limit_error" },
  engine_unavailable: { status: 503, type: "service_unavailable_error" },
  engine_error: { status: 502, type: "server_error" },
  // Nobody reads it (the client left), but logs and usage rows do.
  deadline_exceeded: { status: 504, type: "timeout_error" },
  shutting_down: { status: 503, type: "service_unavailable_error" },
  cancelled: { status: 499, type: "cancelled" },
};

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): ErrorBody {
  return { error: { message, type, param, code } };
}

export function fromFlotillaError(err: FlotillaError): HttpError {
  const { status, type } = byCode[err.code];
  const retryAfterS = err.retryAfterS ?? (status === 503 ? 5 : undefined);
  return { status, retryAfterS, body: errorBody(err.message, type, err.param, err.code) };
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: AjvError[];
}

/**
 * Maps anything thrown while handling a request to a status and OpenAI error
 * body whose message says what to fix. Unknown errors become a 500 that hides
 * internals; the caller logs them.
 */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof FlotillaError) return fromFlotillaError(err);
  const e = err as FastifyLikeError;
  const invalid = (status: number, message: string, param: string | null = null, code: string | null = null): HttpError => ({
    status,
    retryAfterS: undefined,
    body: errorBody(message, "invalid_request_error", param, code),
  });
  if (e.validation !== undefined && e.validation.length > 0) {
    const { param, message } = describeValidation(mostSpecific(e.validation));
    return invalid(400, message, param, "invalid_value");
  }
  switch (e.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return invalid(400, `the request body is not valid JSON (${e.message}); send one JSON object`, null, "invalid_json");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return invalid(413, "the request body is larger than this server accepts; shorten the prompt or raise server.body_limit_bytes", null, "body_too_large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return invalid(415, "send the body as JSON with Content-Type: application/json", null, "unsupported_media_type");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return invalid(400, "the Content-Length header does not match the body", null, "invalid_content_length");
  }
  if (err instanceof SyntaxError) return invalid(400, `the request body is not valid JSON (${err.message}); send one JSON object`, null, "invalid_json");
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) return invalid(e.statusCode, e.message);
  return { status: 500, retryAfterS: undefined, body: errorBody("internal error; the request was not processed", "server_error") };
}

/**
 * A refusal (4xx) is the client's to read, not the operator's: not logged.
 * A 5xx the client caused (its own deadline) is logged at info without a
 * stack; the rest are faults of the fleet, logged at error with the stack.
 */
export function logFailure(log: { error(obj: object, msg: string): void; info(obj: object, msg: string): void }, err: unknown, http: HttpError): void {
  if (http.status < 500) return;
  if (err instanceof FlotillaError && err.clientCaused) log.info({ code: err.code, reason: err.message }, "request ended by the client's own limit");
  else log.error({ err }, "request failed");
}

/**
 * ajv reports every failed branch of an anyOf; the deepest error says most
 * precisely what to fix (content[0].type must be "text"), and at equal depth
 * the anyOf summary beats one arbitrary branch's complaint.
 */
function mostSpecific(errors: readonly AjvError[]): AjvError {
  let best = errors[0]!;
  for (const e of errors) {
    const deeper = e.instancePath.length > best.instancePath.length;
    const sameDepthSummary = e.instancePath.length === best.instancePath.length && e.keyword === "anyOf";
    if (deeper || sameDepthSummary) best = e;
  }
  return best;
}

/** "/messages/0/role" -> "messages[0].role" */
function paramPath(instancePath: string, extra?: string): string | null {
  const parts = instancePath.split("/").filter((p) => p.length > 0);
  if (extra !== undefined) parts.push(extra);
  if (parts.length === 0) return null;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

/** What to do about a field Flotilla would otherwise ignore; the well-known ones say what Flotilla offers instead. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  // Reached only where no tool is taken (legacy completions, embeddings).
  tools: "tools are taken by chat completions, Messages and Responses, not by this endpoint",
  tool_choice: "tools are taken by chat completions, Messages and Responses, not by this endpoint",
  parallel_tool_calls: "tools are taken by chat completions, Messages and Responses, not by this endpoint",
  functions: "function calling is not served; use its successor, tools",
  function_call: "function calling is not served; use its successor, tools and tool_choice",
  logit_bias: "token biases are not applied",
  audio: "audio output is not served",
  modalities: "only text output is served",
  prediction: "predicted outputs are not served",
  web_search_options: "web search is not offered",
  best_of: "one choice per request is served; send more requests for more",
  suffix: "insertion (suffix) is not served",
  previous_response_id: "responses are not stored, so none can be continued; send the conversation as input items",
  conversation: "conversations are not stored; send the conversation as input items",
  reasoning: "reasoning settings are not served",
  include: "only the output text is served",
  background: "background responses are not served; send the request and wait, or stream it",
};

function unsupportedField(field: string): string {
  // A nested field (messages[2].tool_calls) is explained by its own name.
  const why = UNSUPPORTED[field.slice(field.lastIndexOf(".") + 1)];
  return `${field} is not supported by Flotilla${why === undefined ? "" : `: ${why}`}; remove it (a field that would be ignored is refused, not dropped)`;
}

function describeValidation(v: AjvError): { param: string | null; message: string } {
  if (v.keyword === "required") {
    const param = paramPath(v.instancePath, String(v.params.missingProperty));
    return { param, message: `${param} is required` };
  }
  const param = paramPath(v.instancePath);
  const subject = param ?? "the request body";
  switch (v.keyword) {
    case "enum":
      return { param, message: `${subject} must be one of: ${(v.params.allowedValues as unknown[]).map(String).join(", ")}` };
    case "const":
      return { param, message: `${subject} must be ${JSON.stringify(v.params.allowedValue)}${param === "n" ? " (one choice per request; send more requests for more)" : ""}` };
    case "anyOf":
      return { param, message: `${subject} has the wrong type or shape; see the OpenAI API reference for ${param ?? "this endpoint"}` };
    case "additionalProperties": {
      const field = paramPath(v.instancePath, String(v.params.additionalProperty));
      return { param: field, message: unsupportedField(field ?? "") };
    }
    default:
      return { param, message: `${subject} ${v.message ?? "is invalid"}` };
  }
}
