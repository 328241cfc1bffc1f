/**
 * x-flotilla-explain: how the router placed one request, for an operator.
 * A request that sends `x-flotilla-explain: 1` from a client the admin rule
 * admits (gateway/access.ts: the admin token, or direct loopback without
 * one) gets its routing decisions back in the `x-flotilla-explain` response
 * header, as JSON: per decision the replica chosen (or why none was), each
 * candidate's score from each scorer and in all, and each plugin's time.
 * Anyone else asking is refused with 403: scores say how loaded and how
 * priced every replica is.
 */
import type { IncomingMessage } from "node:http";
import { FlotillaError } from "../core/errors.js";

/** Whether the request asks for an explanation; throws on a malformed value or a caller who may not have one. */
export function explainAsked(raw: IncomingMessage, allowed: (raw: IncomingMessage) => boolean): boolean {
  const value = raw.headers["x-flotilla-explain"];
  if (value === undefined) return false;
  if (value !== "1") throw new FlotillaError("invalid_request", `x-flotilla-explain must be "1", got ${JSON.stringify(value)}`, { param: "x-flotilla-explain" });
  if (!allowed(raw)) throw new FlotillaError("forbidden", "x-flotilla-explain needs the admin token (or a direct loopback client when none is set)", { param: "x-flotilla-explain" });
  return true;
}
