import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ExpositionError, parseExposition } from "../../src/engines/prometheus-text.js";
import { repoPath } from "../paths.js";

const FIXTURES = repoPath("test/engines/fixtures");

describe("the Prometheus text reader", () => {
  it("reads every engine's fixture, each citing its source on its first line", () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".txt"));
    assert.ok(files.length >= 7);
    for (const file of files) {
      const text = readFileSync(join(FIXTURES, file), "utf8");
      assert.match(text.split("\n")[0]!, /^# Source: .+ at [0-9a-f]{40}/, `${file} cites a commit`);
      assert.ok(parseExposition(text).length >= 4, file);
    }
  });

  it("reads labels with escaped quotes, backslashes and line feeds, and NaN, ±Inf and timestamps", () => {
    const text = [
      '# HELP odd A help text with a \\\\ backslash and a \\n line feed',
      "# TYPE odd gauge",
      'odd{path="C:\\\\models\\\\x",quote="say \\"hi\\"",lines="a\\nb",empty=""} 1.5e+3 1700000000000',
      'odd{le="+Inf",} +Inf',
      "odd\t-Inf",
      "odd NaN -5",
      "# a plain comment, and an OpenMetrics end",
      "# EOF",
      "",
    ].join("\n");
    const [a, b, c, d] = parseExposition(text);
    assert.deepEqual(a, { name: "odd", labels: { path: "C:\\models\\x", quote: 'say "hi"', lines: "a\nb", empty: "" }, value: 1500, timestampMs: 1_700_000_000_000 });
    assert.deepEqual(b, { name: "odd", labels: { le: "+Inf" }, value: Infinity, timestampMs: undefined });
    assert.equal(c!.value, -Infinity);
    assert.ok(Number.isNaN(d!.value));
    assert.equal(d!.timestampMs, -5);
  });

  it("takes CRLF line ends and blank lines as they come", () => {
    assert.deepEqual(parseExposition("a 1\r\n\r\n  \r\nb{x=\"y\"} 2\r\n").map((s) => [s.name, s.value]), [["a", 1], ["b", 2]]);
  });

  it("refuses what is not the format, naming the line (table)", () => {
    const cases: [string, number, RegExp][] = [
      ["<html><body>Not Found</body></html>", 1, /expected a metric name/],
      ["ok", 1, /no value/],
      ["a 1\nb{x=\"y\"}", 2, /no value/],
      ['a{x="y} 1', 1, /a label value never ends/],
      ['a{x=y} 1', 1, /'"' expected at column 5/],
      ['a{x="\\t"} 1', 1, /a label value may escape only/],
      ['a{x="1",x="2"} 1', 1, /label x given twice/],
      ['a{x="1" y="2"} 1', 1, /',' expected/],
      ["a one", 1, /the value is not a number/],
      ["a 0x10", 1, /the value is not a number/],
      ["a 1 12.5", 1, /the timestamp is not an integer/],
      ["a 1 2 3", 1, /unexpected text after the sample/],
      ['a{x="1"}2', 1, /expected a blank before the value/],
      ["# TYPE a gauge\n# TYPE a counter\na 1", 2, /second TYPE for a/],
      ["# TYPE a thing", 1, /TYPE must be one of/],
      ["# TYPE", 1, /TYPE needs a metric name/],
      ["# HELP a bad \\t escape", 1, /HELP text may escape only/],
      ["data: {\"choices\":[]}", 1, /blank before the value|no value|not a number/],
    ];
    for (const [text, line, reason] of cases) {
      assert.throws(
        () => parseExposition(text),
        (err: unknown) => err instanceof ExpositionError && err.line === line && reason.test(err.message) && err.message.startsWith(`line ${line}: `),
        JSON.stringify(text),
      );
    }
  });
});
