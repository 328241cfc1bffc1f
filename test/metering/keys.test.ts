import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { generateKey, hashKey, looksLikeKey, parseAuthorization } from "../../src/metering/keys.js";

describe("API keys", () => {
  test("flt- and 32 random bytes in base64url; only the SHA-256 and a short prefix are kept", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const k = generateKey();
      assert.match(k.key, /^flt-[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(k.key.slice(4), "base64url").length, 32);
      assert.equal(k.hash, createHash("sha256").update(k.key).digest("hex"));
      assert.equal(k.prefix, k.key.slice(0, 10));
      assert.ok(!seen.has(k.key));
      seen.add(k.key);
    }
    assert.equal(hashKey("flt-x"), hashKey("flt-x"));
    assert.notEqual(hashKey("flt-x"), hashKey("flt-y"));
  });

  test("a key's shape is checked before any lookup", () => {
    assert.ok(looksLikeKey(generateKey().key));
    assert.ok(!looksLikeKey("unused"));
    assert.ok(!looksLikeKey(`flt-${"A".repeat(42)}`));
    assert.ok(!looksLikeKey(`flt-${"A".repeat(42)}=`));
    assert.ok(!looksLikeKey(`sk-${"A".repeat(44)}`));
  });

  test("Authorization headers: missing, malformed, bearer", () => {
    assert.deepEqual(parseAuthorization(undefined), { kind: "missing" });
    assert.deepEqual(parseAuthorization("  "), { kind: "missing" });
    assert.deepEqual(parseAuthorization("Basic dXNlcjpwYXNz"), { kind: "malformed" });
    assert.deepEqual(parseAuthorization("Bearer"), { kind: "malformed" });
    assert.deepEqual(parseAuthorization("Bearer a b"), { kind: "malformed" });
    assert.deepEqual(parseAuthorization("Bearer abc"), { kind: "bearer", token: "abc" });
    assert.deepEqual(parseAuthorization("bearer  abc "), { kind: "bearer", token: "abc" });
  });
});
