/**
 * Whether a finished answer fits the JSON schema a request asked for with
 * `strict: true`. The local engine's grammar makes it so; a remote engine
 * is trusted to enforce what it was sent, and this is the check that it did
 * (an engine that ignores response_format answers free text). Schemas are
 * compiled once each (JSON Schema 2020-12, the draft with `$defs` and
 * `prefixItems`), the most recent 64 kept.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { ResponseFormat, ToolUse } from "../core/request.js";

const ajv = new Ajv2020({ strict: false, allErrors: false });
const compiled = new Map<string, ValidateFunction | string>();

/** Why `text` does not fit `format`, or undefined when it does (or nothing strict was asked). */
export function formatViolation(format: ResponseFormat | undefined, text: string): string | undefined {
  if (format?.type !== "json_schema" || !format.strict) return undefined;
  const validate = validatorOf(format.schema);
  if (typeof validate === "string") return `its schema does not compile (${validate})`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "it is not JSON";
  }
  if (validate(value)) return undefined;
  const e = validate.errors?.[0];
  return e === undefined ? "it does not fit the schema" : `${e.instancePath === "" ? "the value" : e.instancePath} ${e.message ?? "does not fit"}`;
}

/**
 * Why a finished tool call does not stand, or undefined when it does: it
 * must call a tool offered, and where that tool is `strict`, its arguments
 * must be JSON that fits the tool's parameters.
 */
export function toolCallViolation(use: ToolUse, name: string, args: string): string | undefined {
  const tool = use.tools.find((t) => t.name === name);
  if (tool === undefined) return `it called "${name}", which is not among the tools offered`;
  if (!tool.strict) return undefined;
  return formatViolation({ type: "json_schema", name, schema: tool.parameters ?? { type: "object" }, strict: true }, args);
}

function validatorOf(schema: Readonly<Record<string, unknown>>): ValidateFunction | string {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (v === undefined) {
    try {
      v = ajv.compile(schema);
    } catch (err) {
      v = (err as Error).message;
    }
    if (compiled.size >= 64) compiled.delete(compiled.keys().next().value!);
    compiled.set(key, v);
  }
  return v;
}
