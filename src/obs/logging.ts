/**
 * Structured JSON logs (pino, through Fastify). Every line of a request
 * carries its id (`reqId`), the same id the client gets in `x-request-id`
 * and remote engines receive, so one request can be followed across hops.
 * Credentials are redacted wherever they would appear; bodies and prompts are
 * not logged at all unless prompt logging is switched on.
 */
import type { LogDestination } from "./observer.js";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** Paths pino censors, should any serializer or log call ever include them. */
export const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-api-key"]',
  'req.headers["proxy-authorization"]',
  "headers.authorization",
  "headers.cookie",
  'headers["x-api-key"]',
  "authorization",
  "apiKey",
  "api_key",
];

/** Query parameters that carry secrets when a client puts a credential in the URL (`?api_key=`, `?token=`). */
const SECRET_PARAM = /^(?:.*(?:key|token|secret|password|passwd|auth|signature|credential).*)$/i;

/**
 * The URL as logged: the value of any query parameter whose name suggests a
 * credential is replaced, so a key sent as `?api_key=` never reaches a log.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = eq < 0 ? pair : pair.slice(0, eq);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, " "));
      } catch {
        // an undecodable name is judged as written
      }
      return eq >= 0 && SECRET_PARAM.test(decoded) ? `${name}=[redacted]` : pair;
    });
  return `${url.slice(0, q)}?${params.join("&")}`;
}

interface LoggedRequest {
  readonly method: string;
  readonly url: string;
  readonly ip?: string | undefined;
  readonly socket?: { readonly remotePort?: number | undefined } | undefined;
}

/** The logger options Fastify is created with. */
export function loggerOptions(
  level: LogLevel,
  destination?: LogDestination,
): { level: LogLevel; redact: { paths: string[]; censor: string }; serializers: { req: (req: LoggedRequest) => Record<string, unknown> }; stream?: LogDestination } {
  return {
    level,
    redact: { paths: [...REDACTED_PATHS], censor: "[redacted]" },
    serializers: {
      req: (req) => ({ method: req.method, url: redactUrl(req.url), remoteAddress: req.ip, remotePort: req.socket?.remotePort }),
    },
    ...(destination === undefined ? {} : { stream: destination }),
  };
}

const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** Whether a logger at `level` writes lines of `at`. */
export function levelEnabled(level: string, at: LogLevel): boolean {
  return (LEVELS[level] ?? LEVELS.info!) <= LEVELS[at]!;
}
