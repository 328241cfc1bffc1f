/**
 * Whether a finished answer fits the JSON schema a request asked for with
 * `strict: true`. The local engine's grammar makes it so; a remote engine
 * is trusted to enforce what it was sent, and this is the check that it did
 * (an engine that ignores response_format answers free text). Schemas are
 * compiled once each (JSON Schema 2020-12, the draft with `$defs` and
 * `prefixItems`), the most recent 64 kept.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { ResponseFormat } from "../core/request.js";

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
