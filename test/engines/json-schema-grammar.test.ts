/** What the local engine makes of a response_format schema: exact translations, and refusals naming the keyword. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/core/errors.js";
import { grammarSchema } from "../../src/engines/json-schema-grammar.js";

describe("grammarSchema", () => {
  it("translates what maps exactly", () => {
    const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
      ["anyOf with null is oneOf", { anyOf: [{ type: "string" }, { type: "null" }] }, { oneOf: [{ type: "string" }, { type: "null" }] }],
      ["annotations are dropped", { type: "boolean", title: "T", default: true, examples: [true], $schema: "x" }, { type: "boolean" }],
      ["scalar type lists stay", { type: ["string", "null"] }, { type: ["string", "null"] }],
      ["a type list with object is a oneOf of each", { type: ["object", "null"], properties: { a: { type: "boolean" } } }, { oneOf: [{ type: "object", properties: { a: { type: "boolean" } } }, { type: "null", properties: { a: { type: "boolean" } } }] }],
      ["definitions are $defs, and refs follow", { definitions: { d: { type: "integer" } }, $ref: "#/definitions/d" }, { $defs: { d: { type: "integer" } }, $ref: "#/$defs/d" }],
      ["nested properties and items", { type: "array", items: { type: "object", properties: { x: { anyOf: [{ const: 1 }] } }, additionalProperties: false }, maxItems: 3 }, { type: "array", items: { type: "object", properties: { x: { oneOf: [{ const: 1 }] } }, additionalProperties: false }, maxItems: 3 }],
      ["dates", { type: "string", format: "date-time" }, { type: "string", format: "date-time" }],
    ];
    for (const [name, input, output] of cases) assert.deepEqual(grammarSchema(input), output, name);
  });

  it("refuses what it cannot enforce, naming the keyword's path", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ type: "integer", minimum: 0 }, /schema\.minimum: "minimum" cannot be enforced by the local engine/],
      [{ type: "object", properties: { s: { type: "string", pattern: "^a" } } }, /schema\.properties\.s\.pattern: "pattern"/],
      [{ allOf: [{ type: "string" }] }, /schema\.allOf: "allOf"/],
      [{ type: "string", format: "uuid" }, /schema\.format: format "uuid" cannot be enforced/],
      [{ type: "array", items: [{ type: "string" }] }, /schema\.items: a schema must be an object here/],
      [{ oneOf: "x" }, /schema\.oneOf: oneOf must be a list of schemas/],
      [Array.from({ length: 200 }).reduce<Record<string, unknown>>((inner) => ({ type: "array", items: inner }), { type: "null" }), /schemas nest more than 32 deep here/],
    ];
    for (const [input, message] of cases) {
      assert.throws(() => grammarSchema(input), (e: unknown) => e instanceof FlotillaError && e.code === "invalid_request" && e.param === "response_format" && message.test(e.message), JSON.stringify(input));
    }
  });
});
