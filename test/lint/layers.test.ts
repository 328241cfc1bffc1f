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
