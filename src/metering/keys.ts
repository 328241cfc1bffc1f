/**
 * API keys: `flt-` and 32 random bytes (base64url, 43 characters). Only the
 * key's SHA-256 is stored; a presented key is hashed and looked up by hash,
 * so the database never holds anything a caller could present.
 */
import { createHash, randomBytes } from "node:crypto";

export const KEY_PREFIX = "flt-";
const KEY_BODY = /^[A-Za-z0-9_-]{43}$/;

export interface NewKey {
  /** The key itself: shown once, never stored. */
  readonly key: string;
  readonly hash: string;
  /** What listings show to tell keys apart: "flt-" and the next 6 characters. */
  readonly prefix: string;
}

export function generateKey(): NewKey {
  const key = KEY_PREFIX + randomBytes(32).toString("base64url");
  return { key, hash: hashKey(key), prefix: key.slice(0, KEY_PREFIX.length + 6) };
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Whether `token` has the shape of a Flotilla key (it may still be unknown or revoked). */
export function looksLikeKey(token: string): boolean {
  return token.startsWith(KEY_PREFIX) && KEY_BODY.test(token.slice(KEY_PREFIX.length));
}

export type Credential =
  | { readonly kind: "missing" }
  | { readonly kind: "malformed" }
  | { readonly kind: "bearer"; readonly token: string };

/** Reads an Authorization header: `Bearer <token>` (scheme case-insensitive), nothing, or something else. */
export function parseAuthorization(header: string | undefined): Credential {
  if (header === undefined || header.trim() === "") return { kind: "missing" };
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null) return { kind: "malformed" };
  return { kind: "bearer", token: m[1]! };
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(8).toString("hex")}`;
}
