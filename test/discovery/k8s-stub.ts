/**
 * A stub Kubernetes API server (node:http) serving EndpointSlices by the
 * real list-then-watch protocol, for the Kubernetes discovery tests; there
 * is no cluster on these machines.
 *
 * The objects follow the API reference for discovery.k8s.io/v1
 * EndpointSlice (https://kubernetes.io/docs/reference/kubernetes-api/
 * service-resources/endpoint-slice-v1/, read through the search tool's copy
 * of kubernetes/website content/en/docs/reference/kubernetes-api/
 * service-resources/endpoint-slice-v1.md): addressType, endpoints[] with
 * addresses, conditions {ready, serving, terminating}, targetRef and
 * nodeName, ports[] {name, port, protocol}, and metadata {name, namespace,
 * labels (kubernetes.io/service-name, endpointslice.kubernetes.io/
 * managed-by), resourceVersion, uid, generateName}.
 *
 * The protocol, as a real API server speaks it:
 * - GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices?labelSelector=…
 *   answers an EndpointSliceList whose metadata.resourceVersion is the
 *   store's version at the list;
 * - the same with watch=1 or watch=true and resourceVersion=N streams
 *   newline-delimited JSON events {"type": ADDED|MODIFIED|DELETED|BOOKMARK,
 *   "object": …} for every change after N (replayed from history, then
 *   live); resourceVersion "" or "0" starts with a synthetic ADDED for each
 *   object; BOOKMARK events only when the client sent allowWatchBookmarks=true;
 * - a resourceVersion older than the history kept (compacted) is expired,
 *   in either form real servers use: an ERROR event holding a Status with
 *   code 410 inside a 200 response, which then ends (`expiry: "event"`), or
 *   an HTTP 410 response with that Status (`expiry: "http"`); the client
 *   must list again;
 * - every request needs the bearer token, else 401 with a Status.
 *
 * The scale subresource of Deployments and StatefulSets (the autoscaler's
 * Kubernetes actuator): GET and PUT
 * /apis/apps/v1/namespaces/<ns>/(deployments|statefulsets)/<name>/scale
 * with an autoscaling/v1 Scale (metadata, spec.replicas, status.replicas
 * and status.selector, from the API reference's Scale; read through the
 * search tool's copy of the OKD 4.11 REST API page "Scale
 * [autoscaling/v1]"). A PUT whose metadata.resourceVersion is not the
 * object's current one is 409 Conflict, as the API server's optimistic
 * concurrency answers it; an unknown name is 404 NotFound.
 *
 * Left out: label selectors other than equality (=, ==, !=) and existence,
 * field selectors, pagination (limit/continue), watch timeouts
 * (timeoutSeconds), resourceVersionMatch and sendInitialEvents, objects
 * moving in and out of a selector by a label change, and every other
 * resource and verb (create/update/delete here are the test's methods).
 */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface StubEndpoint {
  /** An IP, or anything else to make a malformed slice. */
  readonly address: unknown;
  readonly ready?: boolean;
  readonly serving?: boolean;
  readonly terminating?: boolean;
  /** The Pod's name, for targetRef. */
  readonly pod?: string;
  /** Leave out `addresses` entirely (a malformed endpoint). */
  readonly noAddresses?: boolean;
}

export interface StubSlice {
  readonly service: string;
  readonly endpoints: readonly StubEndpoint[];
  readonly ports: readonly { name: string; port: number; protocol?: string }[];
  readonly addressType?: "IPv4" | "IPv6" | "FQDN";
}

type EventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
export interface WatchEvent {
  readonly type: EventType;
  readonly object: Record<string, unknown>;
}

interface Watcher {
  readonly res: ServerResponse;
  readonly selector: (labels: Record<string, string>) => boolean;
  readonly bookmarks: boolean;
}

const API = "/apis/discovery.k8s.io/v1/namespaces/";

export class K8sStub {
  readonly namespace: string;
  /** How an expired resourceVersion is answered: an ERROR event in a 200 response, or an HTTP 410. */
  expiry: "event" | "http" = "event";
  /** Every request, "GET list" or "GET watch rv=N", in order. */
  readonly requests: string[] = [];
  /** The next this many scale PUTs find the object changed since it was read (another client wrote it): 409 Conflict. */
  conflicts = 0;
  /** Called as each event is written to a watch, after the write. */
  onEvent: ((event: WatchEvent) => void) | undefined;
  readonly token: string;
  readonly #server: Server;
  #port = 0;
  #version = 1;
  /** Events at or after this version are in `#history`; a watch from before it is expired. */
  #compactedAt = 1;
  readonly #history: { rv: number; event: WatchEvent }[] = [];
  readonly #objects = new Map<string, Record<string, unknown>>();
  readonly #watchers = new Set<Watcher>();
  /** Scalable workloads by "deployments/<name>" or "statefulsets/<name>". */
  readonly #scales = new Map<string, { replicas: number; version: number; uid: string }>();

  private constructor(token: string, namespace: string) {
    this.token = token;
    this.namespace = namespace;
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  static async start(opts: { token?: string; namespace?: string } = {}): Promise<K8sStub> {
    const stub = new K8sStub(opts.token ?? "test-token", opts.namespace ?? "inference");
    await stub.up();
    return stub;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Listens (again, on the same port after `down`). */
  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#port, "127.0.0.1", () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  /** Stops listening and cuts every connection, watches included; the objects stay, as etcd keeps them. */
  async down(): Promise<void> {
    this.#watchers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  /**
   * Creates or replaces a slice: ADDED or MODIFIED to the watches. With
   * `unseen`, no watch hears of it and the history is compacted past it, as
   * when the server dropped events: a watch resumed from before it expires.
   */
  put(name: string, slice: StubSlice, opts: { unseen?: boolean } = {}): void {
    const prior = this.#objects.get(name);
    const object = sliceObject(name, this.namespace, slice, (prior?.metadata as { uid?: string } | undefined)?.uid ?? randomUUID(), ++this.#version);
    this.#objects.set(name, object);
    this.#change({ type: prior === undefined ? "ADDED" : "MODIFIED", object }, opts.unseen === true);
  }

  delete(name: string, opts: { unseen?: boolean } = {}): void {
    const object = this.#objects.get(name);
    if (object === undefined) throw new Error(`no slice ${name}`);
    this.#objects.delete(name);
    // A deleted object's last state, at the version of its deletion.
    const gone = { ...object, metadata: { ...(object.metadata as object), resourceVersion: String(++this.#version) } };
    this.#change({ type: "DELETED", object: gone }, opts.unseen === true);
  }

  /**
   * Ends every open watch and compacts the history: in the "event" form
   * after an ERROR event with code 410; in the "http" form it just ends (as
   * a watch timeout does), and a watch resumed from before an `unseen`
   * change is then answered HTTP 410.
   */
  expireWatches(): void {
    this.#compactedAt = this.#version + 1;
    this.#history.length = 0;
    for (const w of this.#watchers) {
      if (this.expiry === "event") this.#write(w, { type: "ERROR", object: expiredStatus(this.#compactedAt) });
      w.res.end();
    }
    this.#watchers.clear();
  }

  /** Creates a Deployment (or StatefulSet) with `replicas`, or sets its replicas as another client would (a new resourceVersion). */
  setScale(kind: "deployments" | "statefulsets", name: string, replicas: number): void {
    this.#scales.set(`${kind}/${name}`, { replicas, version: ++this.#version, uid: this.#scales.get(`${kind}/${name}`)?.uid ?? randomUUID() });
  }

  /** The replicas a Deployment (or StatefulSet) is set to; undefined when there is none. */
  scaleOf(kind: "deployments" | "statefulsets", name: string): number | undefined {
    return this.#scales.get(`${kind}/${name}`)?.replicas;
  }

  /** A BOOKMARK at the current version to every watch that asked for them. */
  bookmark(): void {
    const event: WatchEvent = { type: "BOOKMARK", object: { kind: "EndpointSlice", apiVersion: "discovery.k8s.io/v1", metadata: { resourceVersion: String(this.#version) } } };
    for (const w of this.#watchers) if (w.bookmarks) this.#write(w, event);
  }

  /** Open watch connections. */
  get watches(): number {
    return this.#watchers.size;
  }

  #change(event: WatchEvent, unseen: boolean): void {
    if (unseen) {
      this.#compactedAt = this.#version + 1;
      this.#history.length = 0;
      return;
    }
    this.#history.push({ rv: this.#version, event });
    for (const w of this.#watchers) if (w.selector(labelsOf(event.object))) this.#write(w, event);
  }

  #write(w: Watcher, event: WatchEvent): void {
    w.res.write(`${JSON.stringify(event)}\n`);
    this.onEvent?.(event);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://stub");
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(res, 401, "Unauthorized", "Unauthorized");
    const scale = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)\/scale$/.exec(url.pathname);
    if (scale !== null) return void this.#scale(req, res, decodeURIComponent(scale[1]!), scale[2] as "deployments" | "statefulsets", decodeURIComponent(scale[3]!));
    const match = url.pathname.startsWith(API) ? /^([^/]+)\/endpointslices$/.exec(url.pathname.slice(API.length)) : null;
    if (req.method !== "GET" || match === null) return status(res, 404, "NotFound", `the server could not find the requested resource (${req.method} ${url.pathname})`);
    const selector = parseSelector(url.searchParams.get("labelSelector") ?? "");
    const ns = decodeURIComponent(match[1]!);
    const watch = url.searchParams.get("watch");
    if (watch === "1" || watch === "true") return this.#watch(url, ns, selector, res);
    this.requests.push("GET list");
    const items = ns === this.namespace ? [...this.#objects.values()].filter((o) => selector(labelsOf(o))) : [];
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "EndpointSliceList", apiVersion: "discovery.k8s.io/v1", metadata: { resourceVersion: String(this.#version) }, items }));
  }

  /** GET or PUT a workload's Scale (see the top). */
  async #scale(req: IncomingMessage, res: ServerResponse, ns: string, kind: "deployments" | "statefulsets", name: string): Promise<void> {
    const key = `${kind}/${name}`;
    const held = ns === this.namespace ? this.#scales.get(key) : undefined;
    if (req.method !== "PUT") this.requests.push(`${req.method} scale ${key}`);
    if (held === undefined) return status(res, 404, "NotFound", `${kind}.apps "${name}" not found`);
    if (req.method === "PUT") {
      let body = "";
      for await (const chunk of req) body += String(chunk);
      const sent = JSON.parse(body) as { metadata?: { resourceVersion?: string }; spec?: { replicas?: number } };
      if (this.conflicts > 0) {
        this.conflicts--;
        held.version = ++this.#version;
      }
      const rv = sent.metadata?.resourceVersion;
      this.requests.push(`PUT scale ${key} replicas=${String(sent.spec?.replicas)}${rv !== undefined && rv !== String(held.version) ? " conflict" : ""}`);
      if (rv !== undefined && rv !== String(held.version)) {
        return status(res, 409, "Conflict", `Operation cannot be fulfilled on ${kind}.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
      this.setScale(kind, name, sent.spec?.replicas ?? 0);
    } else if (req.method !== "GET") return status(res, 405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
    const now = this.#scales.get(key)!;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        kind: "Scale",
        apiVersion: "autoscaling/v1",
        metadata: { name, namespace: ns, uid: now.uid, resourceVersion: String(now.version), creationTimestamp: "2026-12-01T00:00:00Z" },
        spec: { replicas: now.replicas },
        status: { replicas: now.replicas, selector: `app=${name}` },
      }),
    );
  }

  #watch(url: URL, ns: string, selector: Watcher["selector"], res: ServerResponse): void {
    const rv = url.searchParams.get("resourceVersion") ?? "";
    this.requests.push(`GET watch rv=${rv}`);
    const from = rv === "" || rv === "0" ? undefined : Number(rv);
    if (from !== undefined && from + 1 < this.#compactedAt && this.expiry === "http") {
      return status(res, 410, "Expired", `too old resource version: ${rv} (${this.#compactedAt})`);
    }
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders();
    const w: Watcher = { res, selector: ns === this.namespace ? selector : () => false, bookmarks: url.searchParams.get("allowWatchBookmarks") === "true" };
    if (from !== undefined && from + 1 < this.#compactedAt) {
      this.#write(w, { type: "ERROR", object: expiredStatus(this.#compactedAt) });
      res.end();
      return;
    }
    const past = from === undefined ? [...this.#objects.values()].map((object) => ({ type: "ADDED" as const, object })) : this.#history.filter((h) => h.rv > from).map((h) => h.event);
    for (const event of past) if (w.selector(labelsOf(event.object))) this.#write(w, event);
    this.#watchers.add(w);
    res.on("close", () => this.#watchers.delete(w));
  }
}

/**
 * Writes `dir`/kubeconfig.yaml pointing at the stub (or at `server`) as an
 * operator's would: plain http, so TLS checks are off (the client requires
 * saying so), a token user, the stub's namespace as the context's.
 */
export async function writeKubeconfig(dir: string, stub: Pick<K8sStub, "url" | "token" | "namespace">, server = stub.url): Promise<string> {
  const path = join(dir, "kubeconfig.yaml");
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "stub", cluster: { server, "insecure-skip-tls-verify": true } }],
    users: [{ name: "tester", user: { token: stub.token } }],
    contexts: [{ name: "stub", context: { cluster: "stub", user: "tester", namespace: stub.namespace } }],
    "current-context": "stub",
  };
  // JSON is YAML.
  await writeFile(path, JSON.stringify(config));
  return path;
}

/** An EndpointSlice as the API serves it (see the reference cited at the top). */
function sliceObject(name: string, namespace: string, s: StubSlice, uid: string, version: number): Record<string, unknown> {
  return {
    kind: "EndpointSlice",
    apiVersion: "discovery.k8s.io/v1",
    metadata: {
      name,
      generateName: `${s.service}-`,
      namespace,
      uid,
      resourceVersion: String(version),
      labels: { "kubernetes.io/service-name": s.service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
    },
    addressType: s.addressType ?? "IPv4",
    // An empty slice carries `endpoints: null`, as the API sends it.
    endpoints:
      s.endpoints.length === 0
        ? null
        : s.endpoints.map((e, i) => ({
            ...(e.noAddresses === true ? {} : { addresses: [e.address] }),
            conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
            targetRef: { kind: "Pod", namespace, name: e.pod ?? `${s.service}-${i}`, uid: randomUUID() },
            nodeName: "node-1",
          })),
    ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? "TCP" })),
  };
}

function expiredStatus(compactedAt: number): Record<string, unknown> {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: (${compactedAt})`, reason: "Expired", code: 410 };
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }));
}

function labelsOf(object: Record<string, unknown>): Record<string, string> {
  return ((object.metadata as { labels?: Record<string, string> } | undefined)?.labels ?? {}) as Record<string, string>;
}

/** Equality-based selectors (k=v, k==v, k!=v) and existence (k, !k), comma-separated: all must hold. */
function parseSelector(text: string): (labels: Record<string, string>) => boolean {
  const terms = text
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
    .map((t) => {
      const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(t);
      if (m === null) return t.startsWith("!") ? (l: Record<string, string>) => !(t.slice(1) in l) : (l: Record<string, string>) => t in l;
      const [, key, op, value] = m as unknown as [string, string, string, string];
      return op === "!=" ? (l: Record<string, string>) => l[key] !== value : (l: Record<string, string>) => l[key] === value;
    });
  return (labels) => terms.every((term) => term(labels));
}
