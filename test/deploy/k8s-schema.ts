/**
 * Offline validation of Kubernetes objects against the upstream API schema,
 * as kubectl's default `--validate=strict` and the API server would do it.
 *
 * Two checks, both from the kubernetes-models package (generated from the
 * Kubernetes v1.33.0 OpenAPI spec):
 * - its validators (JSON Schema, compiled with ajv): types, formats, enums,
 *   required fields. They accept unknown fields, because the upstream schema
 *   never sets additionalProperties: false;
 * - unknown fields, found by walking the object against the package's type
 *   declarations (generated from the same spec) with the TypeScript checker,
 *   so a misspelled key is an error naming its path, as in the API server's
 *   strict field validation.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";

interface Kind {
  /** kubernetes-models' class: `new Model(obj).validate()` throws on a schema violation. */
  model: new (data: never) => { validate(): void };
  /** Where its type declaration lives, and the interface's name. */
  module: string;
  type: string;
}

/** The kinds the manifests may use, by "apiVersion kind". A new kind is added here, or its manifest fails. */
export const KINDS: Readonly<Record<string, Kind>> = {
  "apps/v1 Deployment": { model: Deployment, module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "v1 Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "v1 ConfigMap": { model: ConfigMap, module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1 Secret": { model: Secret, module: "kubernetes-models/v1/Secret", type: "ISecret" },
  "v1 ServiceAccount": { model: ServiceAccount, module: "kubernetes-models/v1/ServiceAccount", type: "IServiceAccount" },
  "rbac.authorization.k8s.io/v1 Role": { model: Role, module: "kubernetes-models/rbac.authorization.k8s.io/v1/Role", type: "IRole" },
  "rbac.authorization.k8s.io/v1 RoleBinding": { model: RoleBinding, module: "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding", type: "IRoleBinding" },
  "policy/v1 PodDisruptionBudget": { model: PodDisruptionBudget, module: "kubernetes-models/policy/v1/PodDisruptionBudget", type: "IPodDisruptionBudget" },
};

export const kindOf = (obj: { apiVersion?: unknown; kind?: unknown }): string => `${String(obj.apiVersion)} ${String(obj.kind)}`;

/** Every problem with one object: schema violations, then unknown fields. Empty when it is valid. */
export function validateObject(obj: Record<string, unknown>): string[] {
  const kind = KINDS[kindOf(obj)];
  if (kind === undefined) return [`no schema registered for ${kindOf(obj)} (test/deploy/k8s-schema.ts, KINDS)`];
  const problems: string[] = [];
  try {
    new kind.model(obj as never).validate();
  } catch (err) {
    problems.push((err as Error).message);
  }
  return [...problems, ...unknownFields(obj)];
}

/** The paths of fields that the object's schema does not have, e.g. `spec.template.spec.containers[0].readinesProbe`. */
export function unknownFields(obj: Record<string, unknown>): string[] {
  const { checker, types } = declarations();
  const type = types.get(kindOf(obj));
  if (type === undefined) return [`no schema registered for ${kindOf(obj)}`];
  const found: string[] = [];
  walk(checker, obj, type, "", found);
  return found;
}

function walk(checker: ts.TypeChecker, value: unknown, declared: ts.Type, path: string, found: string[]): void {
  if (value === null || typeof value !== "object") return; // scalars: the schema validator checks them
  const type = checker.getNonNullableType(declared);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) throw new Error(`${path || "(root)"}: no type information; the declarations did not load`);
  const members = type.isUnion() ? type.types : [type];
  if (Array.isArray(value)) {
    const array = members.find((t) => checker.isArrayType(t));
    if (array === undefined) return; // not a list here: the schema validator reports it
    const element = checker.getTypeArguments(array as ts.TypeReference)[0]!;
    value.forEach((item, i) => walk(checker, item, element, `${path}[${i}]`, found));
    return;
  }
  const objects = members.filter((t) => (t.flags & ts.TypeFlags.Object) !== 0 && !checker.isArrayType(t));
  if (objects.length === 0) return; // not an object here: the schema validator reports it
  for (const [key, child] of Object.entries(value)) {
    const at = path === "" ? key : `${path}.${key}`;
    const field = fieldType(checker, objects, key);
    if (field === undefined) found.push(`${at}: unknown field "${key}" (known here: ${knownFields(objects).join(", ")})`);
    else walk(checker, child, field, at, found);
  }
}

/** The declared type of `key` in one of the object types: a named property, else a string index signature (labels, data). */
function fieldType(checker: ts.TypeChecker, objects: readonly ts.Type[], key: string): ts.Type | undefined {
  for (const t of objects) {
    const prop = checker.getPropertyOfType(t, key);
    if (prop !== undefined) return checker.getTypeOfSymbol(prop);
  }
  for (const t of objects) {
    const index = checker.getIndexInfoOfType(t, ts.IndexKind.String);
    if (index !== undefined) return index.type;
  }
  return undefined;
}

const knownFields = (objects: readonly ts.Type[]): string[] => [...new Set(objects.flatMap((t) => t.getProperties().map((p) => p.name)))].sort();

let loaded: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;

/** Loads the kinds' type declarations once: a one-file program that imports them, type-checked in memory. */
function declarations(): { checker: ts.TypeChecker; types: Map<string, ts.Type> } {
  if (loaded !== undefined) return loaded;
  // Inside the repository, so that node_modules and package.json's "type": "module" resolve as for the tests.
  const file = join(dirname(fileURLToPath(import.meta.url)), "__kinds__.ts");
  const entries = Object.entries(KINDS);
  const source = [
    ...entries.map(([, k], i) => `import type { ${k.type} as K${i} } from "${k.module}";`),
    `export interface Kinds {`,
    ...entries.map(([name], i) => `  ${JSON.stringify(name)}: K${i};`),
    `}`,
  ].join("\n");
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts"],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, ...rest) => (name === file ? ts.createSourceFile(name, source, version) : getSourceFile.call(host, name, version, ...rest));
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  const sourceFile = program.getSourceFile(file)!;
  const problems = ts.getPreEmitDiagnostics(program, sourceFile);
  if (problems.length > 0) throw new Error(`the Kubernetes type declarations did not load:\n${ts.formatDiagnostics(problems, host)}`);
  const checker = program.getTypeChecker();
  const kinds = sourceFile.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s))!;
  const kindsType = checker.getTypeAtLocation(kinds);
  const types = new Map(entries.map(([name]) => [name, checker.getTypeOfSymbol(checker.getPropertyOfType(kindsType, name)!)] as const));
  loaded = { checker, types };
  return loaded;
}
