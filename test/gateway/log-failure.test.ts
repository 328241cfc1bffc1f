/**
 * What the operator's log hears of a failed request: faults of the fleet at
 * error with their stack, a deadline the client set at info without one,
 * refusals not at all.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/core/errors.js";
import { logFailure, toHttpError } from "../../src/gateway/errors.js";

function logged(err: unknown): { level: string; obj: Record<string, unknown> }[] {
  const lines: { level: string; obj: Record<string, unknown> }[] = [];
  const log = { error: (obj: object) => lines.push({ level: "error", obj: obj as Record<string, unknown> }), info: (obj: object) => lines.push({ level: "info", obj: obj as Record<string, unknown> }) };
  logFailure(log, err, toHttpError(err));
  return lines;
}

describe("logging a failed request", () => {
  it("the client's own deadline is info, without the error object or its stack", () => {
    const lines = logged(new FlotillaError("deadline_exceeded", "past its 300 ms deadline", { clientCaused: true }));
    assert.deepEqual(lines, [{ level: "info", obj: { code: "deadline_exceeded", reason: "past its 300 ms deadline" } }]);
  });
  it("the server's deadline and engine failures are errors with the error", () => {
    for (const err of [new FlotillaError("deadline_exceeded", "past the server's limit"), new FlotillaError("engine_error", "upstream 500"), new Error("bug")]) {
      const [line] = logged(err);
      assert.equal(line?.level, "error");
      assert.equal(line?.obj.err, err);
    }
  });
  it("a refusal is the client's to read, not logged", () => {
    assert.deepEqual(logged(new FlotillaError("invalid_request", "bad", { param: "x" })), []);
    assert.deepEqual(logged(new FlotillaError("cancelled", "client went away")), []);
  });
});
