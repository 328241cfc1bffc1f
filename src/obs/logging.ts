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

/** The logger options Fastify is created with. */
export function loggerOptions(
  level: LogLevel,
  destination?: LogDestination,
): { level: LogLevel; redact: { paths: string[]; censor: string }; stream?: LogDestination } {
  return {
    level,
    redact: { paths: [...REDACTED_PATHS], censor: "[redacted]" },
    ...(destination === undefined ? {} : { stream: destination }),
  };
}

const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** Whether a logger at `level` writes lines of `at`. */
export function levelEnabled(level: string, at: LogLevel): boolean {
  return (LEVELS[level] ?? LEVELS.info!) <= LEVELS[at]!;
}
