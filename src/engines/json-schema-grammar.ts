/**
 * A request's JSON schema as node-llama-cpp's grammar generator takes it
 * (its GbnfJsonSchema, a subset of JSON Schema), or a refusal naming the
 * first keyword it cannot enforce. What maps exactly is translated: `anyOf`
 * (OpenAI's strict mode writes nullable fields as `anyOf` with null) is
 * `oneOf`, which for generating text is the same choice; `definitions` is
 * `$defs`; a type list with object or array in it is a `oneOf` of each type.
 * Annotations (title, default, examples, $schema, $comment) say nothing to
 * enforce and are dropped. Everything else (numeric bounds, `pattern`,
 * `allOf`, `not`, conditionals, other string formats) would not be
 * enforced, so the request is refused rather than answered with JSON that
 * may break the schema.
 */
import { FlotillaError } from "../core/errors.js";

type Json = Readonly<Record<string, unknown>>;

const ANNOTATIONS = new Set(["title", "default", "examples", "$schema", "$comment", "$id", "deprecated", "readOnly", "writeOnly"]);
const KEEP = new Set(["type", "description", "const", "enum", "minLength", "maxLength", "minProperties", "maxProperties", "required", "minItems", "maxItems", "$ref"]);
const SCALAR_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const FORMATS = new Set(["date-time", "time", "date"]);
/** Deeper than any real answer shape; a limit, so a schema nested thousands deep is refused instead of exhausting the stack. */
const MAX_DEPTH = 32;

/**
 * The schema the grammar generator takes; throws invalid_request naming the
 * first keyword it cannot enforce, by its path in the request (`at`: where
 * the schema sits, and the request field to name).
 */
export function grammarSchema(schema: Json, at: { readonly path: string; readonly param: string } = { path: "response_format.json_schema.schema", param: "response_format" }): Json {
  try {
    return translate(schema, at.path, 0);
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    throw new FlotillaError("invalid_request", `${err.message}; remove it, or serve this model from an engine that enforces it (vLLM, SGLang)`, { param: at.param });
  }
}

/** A keyword the grammar cannot enforce, at its path. */
class Refusal extends Error {}

function refuse(path: string, why: string): never {
  throw new Refusal(`${path}: ${why}`);
}

function translate(node: unknown, path: string, depth: number): Json {
  if (node === null || typeof node !== "object" || Array.isArray(node)) refuse(path, "a schema must be an object here");
  if (depth > MAX_DEPTH) refuse(path, `schemas nest more than ${MAX_DEPTH} deep here`);
  const s = node as Json;
  const types = s["type"];
  if (Array.isArray(types) && types.some((t) => !SCALAR_TYPES.has(t as string))) {
    const { type: _type, ...rest } = s;
    return { oneOf: types.map((t, i) => translate({ ...rest, type: t }, `${path}.type[${i}]`, depth + 1)) };
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(s)) {
    if (ANNOTATIONS.has(key)) continue;
    if (KEEP.has(key)) out[key] = value;
    else out[nameOf(key)] = translateKeyword(key, value, `${path}.${key}`, depth + 1);
  }
  if (typeof out["$ref"] === "string") out["$ref"] = (out["$ref"] as string).replace(/^#\/definitions\//, "#/$defs/");
  return out;
}

/** A keyword whose value is itself schemas, or a refusal. */
function translateKeyword(key: string, value: unknown, path: string, depth: number): unknown {
  switch (key) {
    case "anyOf":
    case "oneOf":
      if (!Array.isArray(value)) refuse(path, `${key} must be a list of schemas`);
      return value.map((v, i) => translate(v, `${path}[${i}]`, depth));
    case "properties":
    case "$defs":
    case "definitions":
      return Object.fromEntries(Object.entries(objectOf(value, path)).map(([k, v]) => [k, translate(v, `${path}.${k}`, depth)]));
    case "items":
    case "additionalProperties":
      return typeof value === "boolean" ? value : translate(value, path, depth);
    case "prefixItems":
      if (!Array.isArray(value)) refuse(path, "prefixItems must be a list of schemas");
      return value.map((v, i) => translate(v, `${path}[${i}]`, depth));
    case "format":
      if (!FORMATS.has(value as string)) refuse(path, `format "${String(value)}" cannot be enforced by the local engine (it enforces ${[...FORMATS].join(", ")})`);
      return value;
    default:
      return refuse(path, `"${key}" cannot be enforced by the local engine`);
  }
}

const nameOf = (key: string): string => (key === "anyOf" ? "oneOf" : key === "definitions" ? "$defs" : key);

function objectOf(value: unknown, path: string): Json {
  if (value === null || typeof value !== "object" || Array.isArray(value)) refuse(path, "must be an object");
  return value as Json;
}
