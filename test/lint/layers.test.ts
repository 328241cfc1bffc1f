/**
 * The layer rule in eslint.config.js: an upward import fails the lint (and
 * so `npm test`), a downward one passes; and a function in src/ longer than
 * 80 lines fails it too. Linted as if the fixture lived at
 * the path given, with the project's own configuration.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ESLint } from "eslint";

const eslint = new ESLint();

async function importErrors(filePath: string, specifier: string): Promise<string[]> {
  const [result] = await eslint.lintText(`import { x } from "${specifier}";\nexport const y = x;\n`, { filePath });
  return result!.messages.filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message);
}

describe("layers", () => {
  it("rejects an upward import, naming what the layer may use (table)", async () => {
    const upward: [string, string][] = [
      ["src/core/fixture.ts", "../gateway/server.js"],
      ["src/engines/fixture.ts", "../sim/replica.js"],
      ["src/scheduler/fixture.ts", "../fleet/fleet.js"],
      ["src/obs/fixture.ts", "../gateway/server.js"],
      ["src/gateway/fixture.ts", "../cli/serve.js"],
    ];
    for (const [file, specifier] of upward) {
      const errors = await importErrors(file, specifier);
      assert.equal(errors.length, 1, `${file} importing ${specifier}`);
      assert.match(errors[0]!, /may import only from/);
    }
  });

  it("accepts a downward import", async () => {
    assert.deepEqual(await importErrors("src/gateway/fixture.ts", "../obs/metrics.js"), []);
    assert.deepEqual(await importErrors("src/sim/fixture.ts", "../scheduler/pipeline.js"), []);
    assert.deepEqual(await importErrors("src/cli/fixture.ts", "../gateway/server.js"), []);
  });
});

describe("function length", () => {
  const fn = (lines: number): string => `export function f(): number {\n  let x = 0;\n${"  x++;\n".repeat(lines - 4)}  return x;\n}\n`;
  const lengthErrors = async (filePath: string, text: string): Promise<number> =>
    (await eslint.lintText(text, { filePath }))[0]!.messages.filter((m) => m.ruleId === "max-lines-per-function").length;

  it("rejects a function of more than 80 lines in src/, blank lines and comments not counted", async () => {
    assert.equal(await lengthErrors("src/sim/fixture.ts", fn(81)), 1);
    assert.equal(await lengthErrors("src/sim/fixture.ts", fn(80)), 0);
    assert.equal(await lengthErrors("src/sim/fixture.ts", fn(80).replace("let x = 0;", `let x = 0;\n${"  // why\n\n".repeat(30)}`)), 0);
  });
});

describe("abort reasons on the request path", () => {
  const abortErrors = async (filePath: string, call: string): Promise<string[]> =>
    (await eslint.lintText(`export function stop(c: AbortController, why: Error): void {\n  ${call};\n  void why;\n}\n`, { filePath }))[0]!.messages
      .filter((m) => m.ruleId === "no-restricted-syntax")
      .map((m) => m.message);

  it("rejects abort() with no reason where requests run (table), naming the reason to pass", async () => {
    for (const file of ["src/gateway/fixture.ts", "src/engines/fixture.ts", "src/scheduler/fixture.ts", "src/core/fixture.ts"]) {
      const errors = await abortErrors(file, "c.abort()");
      assert.equal(errors.length, 1, file);
      assert.match(errors[0]!, /NO_LONGER_NEEDED/);
    }
  });

  it("accepts abort(reason), and abort() off the request path", async () => {
    assert.deepEqual(await abortErrors("src/gateway/fixture.ts", "c.abort(why)"), []);
    assert.deepEqual(await abortErrors("src/cli/fixture.ts", "c.abort()"), []);
    assert.deepEqual(await abortErrors("src/gateway/discovery/fixture.ts", "c.abort()"), []);
  });
});
