/**
 * deploy/kubernetes, checked offline: every YAML document against the
 * Kubernetes schema of its kind (k8s-schema.ts), and the manifests against
 * each other and against the project's own fleet-file parser, so that what
 * the gateway reads, mounts, binds and probes is what the others name.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import { describe, it } from "node:test";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import type { IRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { ISecret } from "kubernetes-models/v1/Secret";
import type { IService } from "kubernetes-models/v1/Service";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { parseFleetConfig, type FleetConfig } from "../../src/fleet/config.js";
import { kindOf, unknownFields, validateObject } from "./k8s-schema.js";
import { ROOT } from "../paths.js";

const DIR = join(ROOT, "deploy", "kubernetes");
/** Not applied by the kustomization: examples the operator fills in. */
const EXAMPLES = new Set(["secrets.example.yaml"]);

interface Doc {
  file: string;
  obj: Record<string, unknown>;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(e.name) ? [path] : [];
  });
}

/** Every YAML document under deploy/kubernetes but the kustomization itself; any parse error or warning fails. */
function loadDocs(): { docs: Doc[]; kustomization: { namespace: string; resources: string[] } } {
  const docs: Doc[] = [];
  let kustomization: { namespace: string; resources: string[] } | undefined;
  for (const path of yamlFiles(DIR).sort()) {
    const file = posix.normalize(path.slice(DIR.length + 1));
    for (const doc of parseAllDocuments(readFileSync(path, "utf8"))) {
      assert.deepEqual([...doc.errors, ...doc.warnings].map((e) => e.message), [], `${file} parses as YAML`);
      const obj = doc.toJS() as Record<string, unknown> | null;
      if (obj === null) continue;
      if (obj["kind"] === "Kustomization") kustomization = obj as never;
      else docs.push({ file, obj });
    }
  }
  assert.ok(kustomization !== undefined, "deploy/kubernetes has a kustomization.yaml");
  return { docs, kustomization };
}

const { docs, kustomization } = loadDocs();

function find<T>(kind: string, name: string): T {
  const hits = docs.filter((d) => d.obj["kind"] === kind && (d.obj["metadata"] as { name?: string } | undefined)?.name === name);
  assert.equal(hits.length, 1, `exactly one ${kind} named ${name}`);
  return hits[0]!.obj as T;
}

const gateway = find<IDeployment>("Deployment", "flotilla-gateway");
const gatewayPod = gateway.spec!.template.spec!;
const gatewayContainer = gatewayPod.containers[0]!;
const gatewayService = find<IService>("Service", "flotilla");
const vllm = find<IDeployment>("Deployment", "vllm");
const vllmContainer = vllm.spec!.template.spec!.containers[0]!;
const vllmService = find<IService>("Service", "vllm");
const fleetMap = find<IConfigMap>("ConfigMap", "flotilla-fleet");

/** The value following a flag in a container's args, e.g. `--config PATH`. */
function flag(container: IContainer, name: string): string | undefined {
  const args = container.args ?? [];
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

/** A port given by number or by the name of one of the container's ports, as a number. */
function containerPort(container: IContainer, port: number | string): number {
  if (typeof port === "number") return port;
  const named = (container.ports ?? []).find((p) => p.name === port);
  assert.ok(named !== undefined, `container ${container.name} has a port named ${port}`);
  return named.containerPort;
}

/** Whether every label a selector asks for is on the pod template. */
function selects(selector: Record<string, string> | undefined, deployment: IDeployment): boolean {
  const labels = deployment.spec!.template.metadata?.labels ?? {};
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The fleet file the gateway reads: the ConfigMap key its --config path names, through the project's own parser. */
function fleetFile(): { config: FleetConfig; path: string } {
  const path = flag(gatewayContainer, "--config");
  assert.ok(path !== undefined, "the gateway's args give --config");
  const text = fleetMap.data?.[basename(path)];
  assert.ok(text !== undefined, `the ConfigMap holds ${basename(path)}`);
  return { config: parseFleetConfig(parseYaml(text), `ConfigMap ${fleetMap.metadata!.name}/${basename(path)}`), path };
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

describe("deploy/kubernetes against the Kubernetes schemas", () => {
  it("every document is a known kind and validates against its schema, unknown fields included", () => {
    assert.ok(docs.length >= 10, `found ${docs.length} documents`);
    for (const { file, obj } of docs) {
      assert.deepEqual(validateObject(obj), [], `${file}: ${kindOf(obj)} ${(obj["metadata"] as { name?: string } | undefined)?.name}`);
    }
    const kinds = new Set(docs.map((d) => d.obj["kind"]));
    for (const kind of ["Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget", "Secret"]) {
      assert.ok(kinds.has(kind), `a ${kind} is among the manifests`);
    }
  });

  it("catches a value of the wrong type: replicas: \"two\"", () => {
    const bad = clone(gateway) as unknown as { spec: { replicas: unknown } };
    bad.spec.replicas = "two";
    const problems = validateObject(bad as never);
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0]!, /spec\/replicas must be integer/);
  });

  it("catches misspelled keys, at any depth, by their paths", () => {
    const bad = clone(gateway) as unknown as { spec: Record<string, unknown> & { template: { spec: { containers: Record<string, unknown>[] } } } };
    bad.spec["replica"] = 2;
    const container = bad.spec.template.spec.containers[0]!;
    container["readinesProbe"] = container["readinessProbe"];
    delete container["readinessProbe"];
    assert.deepEqual(
      unknownFields(bad as never).map((p) => p.split(":")[0]).sort(),
      ["spec.replica", "spec.template.spec.containers[0].readinesProbe"],
    );
    assert.equal(validateObject(bad as never).length, 2);
  });

  it("catches a value outside an enumeration and a malformed quantity", () => {
    const bad = clone(gateway);
    bad.spec!.template.spec!.containers[0]!.ports![0]!.protocol = "TPC" as never;
    bad.spec!.template.spec!.containers[0]!.resources!.limits!["memory"] = "1 gigabyte";
    const problems = validateObject(bad as never).join("\n");
    assert.match(problems, /ports\/0\/protocol must be equal to one of the allowed values/);
    assert.match(problems, /limits\/memory must match format "quantity"/);
  });
});

describe("deploy/kubernetes, the manifests against each other", () => {
  it("kustomization.yaml applies every manifest but the examples, all in its namespace", () => {
    const files = [...new Set(docs.map((d) => d.file))].filter((f) => !EXAMPLES.has(f)).sort();
    assert.deepEqual([...kustomization.resources].sort(), files);
    for (const { file, obj } of docs) {
      const ns = (obj["metadata"] as { namespace?: string }).namespace;
      assert.ok(ns === undefined || ns === kustomization.namespace, `${file} is in namespace ${kustomization.namespace}`);
    }
  });

  it("the fleet file in the ConfigMap parses with parseFleetConfig and discovers the vLLM Service's pods", () => {
    const { config } = fleetFile();
    const sections = config.models.flatMap((m) => (m.discovery === undefined ? [] : [m.discovery]));
    assert.ok(sections.length > 0, "the fleet file discovers its replicas");
    assert.deepEqual(config.models.flatMap((m) => m.replicas), [], "no static replica bypasses discovery");
    const servicePort = vllmService.spec!.ports![0]!;
    for (const d of sections) {
      assert.equal(d.kind, "kubernetes");
      if (d.kind !== "kubernetes") continue;
      assert.equal(d.service, vllmService.metadata!.name, "it watches the vLLM Service's EndpointSlices");
      assert.equal(d.namespace, undefined, "in the pod's own namespace (the Role's)");
      // EndpointSlices name their ports as the Service does, and carry the pod's port number.
      assert.equal(d.port_name, servicePort.name, "port_name is the Service port's name");
      assert.equal(containerPort(vllmContainer, servicePort.targetPort!), Number(flag(vllmContainer, "--port")));
      // What vLLM is started with is what the gateway expects of it.
      const r = d.replica;
      assert.equal(r.upstream_model, vllmContainer.args![0], "upstream_model is the model vLLM serves");
      assert.equal(r.context, Number(flag(vllmContainer, "--max-model-len")), "context is vLLM's --max-model-len");
      assert.ok(r.parallel <= Number(flag(vllmContainer, "--max-num-seqs")), "parallel is within vLLM's --max-num-seqs");
    }
    // The Service selects the vLLM pods: its EndpointSlices list them.
    assert.ok(selects(vllmService.spec!.selector, vllm), "the vllm Service selects the vllm pods");
  });

  it("the gateway mounts the ConfigMap, as a whole directory, at the path its args name", () => {
    const { path } = fleetFile();
    const mount = gatewayContainer.volumeMounts!.find((m) => m.mountPath === dirname(path));
    assert.ok(mount !== undefined, `a volume is mounted at ${dirname(path)}`);
    assert.equal(mount.subPath, undefined, "no subPath: subPath mounts never see ConfigMap updates");
    const volume = gatewayPod.volumes!.find((v) => v.name === mount.name);
    assert.equal(volume?.configMap?.name, fleetMap.metadata!.name);
    assert.equal(volume?.configMap?.items, undefined, "every key appears under its own name");
  });

  it("the variables store_env and admin_token_env name are set from Secrets that hold those keys", () => {
    const { config } = fleetFile();
    assert.equal(config.server.store, undefined, "the store URL is not in the file");
    for (const name of [config.server.store_env, config.server.admin_token_env]) {
      assert.ok(name !== undefined, "the fleet file sets store_env and admin_token_env");
      const env = gatewayContainer.env!.find((e) => e.name === name);
      const ref = env?.valueFrom?.secretKeyRef;
      assert.ok(ref !== undefined, `${name} comes from a Secret`);
      assert.notEqual(ref.optional, true, `${name}'s Secret is required`);
      const secret = find<ISecret>("Secret", ref.name!);
      assert.ok(ref.key in { ...secret.data, ...secret.stringData }, `Secret ${ref.name} has key ${ref.key}`);
    }
  });

  it("the gateway listens where its probes and its Service look, on every address", () => {
    const { config } = fleetFile();
    const port = containerPort(gatewayContainer, "http");
    assert.equal(port, config.server.port, "the container port is the fleet file's server.port");
    assert.equal(flag(gatewayContainer, "--host") ?? config.server.host, "0.0.0.0");
    assert.equal(gatewayContainer.livenessProbe?.httpGet?.path, "/healthz");
    assert.equal(gatewayContainer.startupProbe?.httpGet?.path, "/healthz");
    assert.equal(gatewayContainer.readinessProbe?.httpGet?.path, "/readyz");
    for (const probe of [gatewayContainer.livenessProbe, gatewayContainer.readinessProbe, gatewayContainer.startupProbe]) {
      assert.equal(containerPort(gatewayContainer, probe!.httpGet!.port), port);
    }
    assert.ok(selects(gatewayService.spec!.selector, gateway), "the Service selects the gateway pods");
    assert.ok(!selects(gatewayService.spec!.selector, vllm), "and not the vLLM pods");
    assert.equal(containerPort(gatewayContainer, gatewayService.spec!.ports![0]!.targetPort!), port);
  });

  it("terminationGracePeriodSeconds outlasts the preStop sleep plus shutdown_grace_ms", () => {
    const { config } = fleetFile();
    const preStop = gatewayContainer.lifecycle?.preStop;
    const sleepS = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command?.at(-1));
    assert.ok(Number.isFinite(sleepS) && sleepS > 0, "a preStop sleep lets the endpoint's removal spread before SIGTERM");
    const grace = gatewayPod.terminationGracePeriodSeconds;
    assert.ok(grace !== undefined && grace > config.server.shutdown_grace_ms / 1000 + sleepS, `${grace} s > ${config.server.shutdown_grace_ms / 1000} s + ${sleepS} s`);
  });

  it("the Role lets the gateway's ServiceAccount list and watch EndpointSlices and read Services, and nothing more", () => {
    const role = find<IRole>("Role", "flotilla-gateway");
    const grants = (group: string, resource: string): Set<string> =>
      new Set((role.rules ?? []).filter((r) => r.apiGroups?.includes(group) && r.resources?.includes(resource)).flatMap((r) => r.verbs));
    const slices = grants("discovery.k8s.io", "endpointslices");
    assert.ok(slices.has("list") && slices.has("watch"), "list and watch endpointslices");
    const services = grants("", "services");
    assert.ok(["get", "list", "watch"].every((v) => services.has(v)), "get, list and watch services");
    const verbs = new Set((role.rules ?? []).flatMap((r) => r.verbs));
    assert.deepEqual([...verbs].sort(), ["get", "list", "watch"], "read-only");
    assert.ok(!(role.rules ?? []).some((r) => r.resources?.includes("secrets") || r.resources?.includes("*")), "no Secrets");

    const binding = find<IRoleBinding>("RoleBinding", "flotilla-gateway");
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata!.name });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: gatewayPod.serviceAccountName, namespace: kustomization.namespace }]);
    find("ServiceAccount", gatewayPod.serviceAccountName!);
  });

  it("two or more gateway pods, which the PodDisruptionBudget lets go one at a time", () => {
    const replicas = gateway.spec!.replicas ?? 1;
    assert.ok(replicas >= 2, `${replicas} gateway replicas`);
    const pdb = find<IPodDisruptionBudget>("PodDisruptionBudget", "flotilla-gateway");
    assert.ok(selects(pdb.spec!.selector?.matchLabels, gateway), "the budget covers the gateway pods");
    const minAvailable = pdb.spec!.minAvailable;
    assert.ok(typeof minAvailable === "number" && minAvailable >= 1 && minAvailable < replicas, `minAvailable ${minAvailable} of ${replicas}`);
  });

  it("the gateway runs as non-root on a read-only root filesystem, writing only to emptyDirs", () => {
    assert.equal(gatewayPod.securityContext?.runAsNonRoot, true);
    assert.ok((gatewayPod.securityContext?.runAsUser ?? 0) > 0, "a numeric non-root uid");
    assert.equal(gatewayContainer.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(gatewayContainer.securityContext?.allowPrivilegeEscalation, false);
    const emptyDirs = new Set(gatewayPod.volumes!.filter((v) => v.emptyDir !== undefined).map((v) => v.name));
    const writable = gatewayContainer.volumeMounts!.filter((m) => emptyDirs.has(m.name)).map((m) => m.mountPath);
    const home = gatewayContainer.env!.find((e) => e.name === "FLOTILLA_HOME")?.value;
    assert.ok(home !== undefined && writable.includes(home), "FLOTILLA_HOME is an emptyDir");
    assert.ok(writable.includes("/tmp"), "/tmp is an emptyDir");
  });

  it("the Deployment runs what deploy/Dockerfile builds, as the user it builds it for", () => {
    const dockerfile = readFileSync(join(ROOT, "deploy", "Dockerfile"), "utf8");
    const instruction = (name: string): string[] => {
      const line = dockerfile.match(new RegExp(`^${name} (\\[.*\\])$`, "m"));
      assert.ok(line !== null, `the Dockerfile has an exec-form ${name}`);
      return JSON.parse(line[1]!) as string[];
    };
    assert.deepEqual(gatewayContainer.command, instruction("ENTRYPOINT"));
    assert.deepEqual(gatewayContainer.args, instruction("CMD"));
    assert.equal(dockerfile.match(/^USER (\d+)(?::\d+)?$/m)?.[1], String(gatewayPod.securityContext?.runAsUser));
  });

  it("the example vLLM engine asks for one GPU and is ready on /health at vLLM's port", () => {
    assert.match(vllmContainer.image ?? "", /^vllm\/vllm-openai(:|$)/);
    assert.equal(Number(vllmContainer.resources?.limits?.["nvidia.com/gpu"]), 1);
    assert.equal(vllmContainer.readinessProbe?.httpGet?.path, "/health");
    assert.equal(containerPort(vllmContainer, vllmContainer.readinessProbe!.httpGet!.port), 8000);
  });
});
