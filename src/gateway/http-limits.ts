/**
 * What the HTTP server tolerates from a client, and how it says no so the
 * client can hear it.
 *
 * - A request (headers and body) must arrive within `bodyTimeoutMs`, or the
 *   client gets 408 and its socket is freed: a body that stalls after the
 *   headers cannot hold a connection forever. Only receiving is timed: a
 *   long streamed answer is not cut.
 * - A body over the limit is answered 413 only once the client has finished
 *   sending it (read and discarded, up to DRAIN_LIMIT_BYTES), so clients that
 *   write the whole body before reading (Node's http, the openai SDK) see the
 *   413 instead of a broken pipe. A client that sent `Expect: 100-continue`
 *   with a too-large Content-Length gets the 413 before it sends anything.
 */
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyInstance, FastifyServerOptions } from "fastify";

export interface ReceivingOptions {
  readonly requestTimeout: number;
  readonly http: ServerOptions;
  readonly clientErrorHandler: NonNullable<FastifyServerOptions["clientErrorHandler"]>;
}

/** The most of an oversized body read (and thrown away) so its sender hears the 413; past it the socket is closed. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;
/** How often Node looks for requests past their time: the 408 comes at most this late. */
const CHECK_INTERVAL_MS = 1_000;

/** Fastify options for receiving requests: the request timeout and OpenAI-shaped answers to broken requests. */
export function receivingOptions(bodyTimeoutMs: number): ReceivingOptions {
  return {
    requestTimeout: bodyTimeoutMs,
    // Fastify sets the server's requestTimeout from the option above; these are what only the constructor takes.
    http: { headersTimeout: Math.min(bodyTimeoutMs, 60_000), connectionsCheckingInterval: Math.min(CHECK_INTERVAL_MS, bodyTimeoutMs) },
    clientErrorHandler: answerClientError,
  };
}

/** Errors Node's parser raises before a request reaches a route: a timeout, oversized headers, a malformed request line. */
function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, reason, message, code] =
    err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request Timeout", "the request did not arrive in time; send the headers and body without pausing", "request_timeout"]
      : err.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "the request headers are too large", "headers_too_large"]
        : [400, "Bad Request", "the request is not valid HTTP/1.1", "bad_http"];
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** Requests whose sender was told not to send the body (no 100 Continue): nothing to drain. */
const withheld = new WeakSet<IncomingMessage>();

/**
 * Answers `Expect: 100-continue` itself: a body that will be refused is
 * never asked for. Must be installed before the server listens.
 */
export function guardExpectContinue(app: FastifyInstance, bodyLimit: number, uploadLimit: number): void {
  const server = app.server as Server;
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    // A multipart body is a file upload (the only route that parses one), held to the upload limit.
    const limit = /^multipart\/form-data/i.test(req.headers["content-type"] ?? "") ? uploadLimit : bodyLimit;
    if (Number(req.headers["content-length"]) > limit) withheld.add(req);
    else res.writeContinue();
    server.emit("request", req, res);
  });
}

/**
 * Reads and discards what remains of a refused request's body, so its
 * sender gets to read the answer. True when the body ended (the connection
 * may be kept); false when there was nothing to wait for, or too much.
 */
export function drainBody(req: IncomingMessage): Promise<boolean> {
  if (withheld.has(req)) return Promise.resolve(false);
  if (req.complete) return Promise.resolve(true);
  return new Promise((resolve) => {
    let seen = 0;
    const done = (ok: boolean): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onError);
      resolve(ok);
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > DRAIN_LIMIT_BYTES) done(false);
    };
    const onEnd = (): void => done(true);
    const onError = (): void => done(req.complete);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onError);
    req.resume();
  });
}
