/**
 * The failure vocabulary shared by engines, scheduler and gateway. Each code
 * maps to one HTTP status and one OpenAI error type at the gateway edge, so a
 * layer below HTTP can say precisely what went wrong without knowing HTTP.
 */
export type FailureCode =
  | "invalid_request"
  | "unauthorized"
  | "forbidden"
  | "quota_exceeded"
  | "context_length_exceeded"
  | "model_not_found"
  | "not_found"
  | "no_ready_replica"
  | "overloaded"
  | "engine_unavailable"
  | "engine_error"
  | "deadline_exceeded"
  | "shutting_down"
  | "cancelled";

export class FlotillaError extends Error {
  readonly code: FailureCode;
  readonly param: string | null;
  /** Seconds a client should wait before retrying, where waiting helps. */
  readonly retryAfterS: number | undefined;
  /** The client's own doing (a deadline it set, shorter than the server's): no fault of the fleet, logged as such. */
  readonly clientCaused: boolean;

  constructor(code: FailureCode, message: string, opts: { param?: string | null; retryAfterS?: number; cause?: unknown; clientCaused?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "FlotillaError";
    this.code = code;
    this.param = opts.param ?? null;
    this.retryAfterS = opts.retryAfterS;
    this.clientCaused = opts.clientCaused ?? false;
  }
}
