/**
 * Kubernetes discovery: the EndpointSlices of a Service (label
 * kubernetes.io/service-name) or of a label selector, in one namespace,
 * listed and then watched with the official client (its DiscoveryV1Api
 * list and its Watch); each report is the whole set of slices held
 * (endpoint-slices.ts reads it).
 *
 * The loop is this module's own rather than the client's informer, whose
 * re-watches run unguarded: an auth plugin failing there (an exec
 * credential helper, a token file) would be an unhandled rejection, which
 * ends the process. Here every failure lands in one place:
 * - a watch that ends is resumed from the last resourceVersion seen;
 * - a watch that expired (HTTP 410, or an ERROR event with code 410) is
 *   listed again from scratch, so changes made meanwhile are seen;
 * - anything else (the API server down, 401, 403) starts over after a
 *   backoff (doubling, capped), logged with the model and the reason; until
 *   a list succeeds the replicas stay as they were, so an API server outage
 *   never empties the fleet.
 */
import { DiscoveryV1Api, Watch } from "@kubernetes/client-node";
import type { KubernetesDiscoveryConfig } from "../../fleet/config.js";
import { loadKubeConfig, namespaceOf, reasonOf } from "../kube-client.js";
import { sliceTargets, type SliceObject } from "./endpoint-slices.js";
import type { DiscoveryLog, Provider, Targets } from "./reconcile.js";

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** A watch that ends sooner than this with nothing new is reopened only after FIRST_BACKOFF_MS: no hot loop against an API server. */
const SHORT_WATCH_MS = 1_000;
const EXPIRED = Symbol("expired");

export interface KubernetesOptions {
  readonly sink: (targets: Targets) => void;
  readonly log: DiscoveryLog;
  /** Where a relative kubeconfig path resolves (the fleet file's folder). */
  readonly baseDir: string;
  readonly env: NodeJS.ProcessEnv;
  /** The section's place in the fleet file, e.g. "models.0.discovery", for errors. */
  readonly where: string;
}

export class KubernetesProvider implements Provider {
  readonly label: string;
  readonly #model: string;
  readonly #o: KubernetesOptions;
  readonly #api: DiscoveryV1Api;
  readonly #watcher: Watch;
  readonly #namespace: string;
  readonly #selector: string;
  readonly #portName: string | undefined;
  /** Grows at every start, restart and stop: callbacks of an older run are ignored. */
  #run = 0;
  #abort: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  /** The slices held, by name: the last list with every watch event since applied. */
  #slices = new Map<string, SliceObject>();
  #known = 0;
  /** Problems with slices reported already: each is logged once while it lasts. */
  #reported = new Set<string>();

  constructor(model: string, section: KubernetesDiscoveryConfig, opts: KubernetesOptions) {
    this.#model = model;
    this.#o = opts;
    const kc = loadKubeConfig(section.kubeconfig, opts);
    this.#api = kc.makeApiClient(DiscoveryV1Api);
    this.#watcher = new Watch(kc);
    this.#namespace = namespaceOf(kc, section.namespace);
    this.#selector = section.selector ?? `kubernetes.io/service-name=${section.service!}`;
    this.#portName = section.port_name;
    const what = section.service === undefined ? `EndpointSlices ${section.selector!}` : `service ${section.service}`;
    this.label = `kubernetes discovery of ${what} in namespace ${this.#namespace}`;
  }

  start(): void {
    void this.#loop(++this.#run);
  }

  async stop(): Promise<void> {
    this.#run++;
    clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  /** List, then watch until expired, then list again; any other failure ends the run and schedules the next. */
  async #loop(run: number): Promise<void> {
    try {
      for (let lists = 0; ; lists++) {
        let rv = await this.#list(run);
        if (lists > 0) this.#o.log("info", `model ${this.#model}: ${this.label}: watch expired; listed again`);
        for (;;) {
          const opened = Date.now();
          const next = await this.#watch(run, rv);
          if (next === EXPIRED) break;
          if (next === rv && Date.now() - opened < SHORT_WATCH_MS) await this.#pause(run, FIRST_BACKOFF_MS);
          rv = next;
        }
      }
    } catch (err) {
      if (run === this.#run) this.#failed(err);
    }
  }

  async #list(run: number): Promise<string> {
    const list = await this.#api.listNamespacedEndpointSlice({ namespace: this.#namespace, labelSelector: this.#selector }).catch((err: unknown) => {
      throw new Error(`listing EndpointSlices failed: ${reasonOf(err)}`);
    });
    this.#current(run);
    this.#failures = 0;
    this.#slices = new Map(list.items.map((s) => [s.metadata?.name ?? "", s as SliceObject]));
    this.#report();
    return list.metadata?.resourceVersion ?? "";
  }

  /** One watch from `rv`: resolves with the last version seen once it ends, or EXPIRED (410: list again); rejects on any other failure. */
  #watch(run: number, rv: string): Promise<string | typeof EXPIRED> {
    const path = `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.#namespace)}/endpointslices`;
    return new Promise((resolveWatch, reject) => {
      let last = rv;
      let ended: Error | typeof EXPIRED | undefined;
      const onEvent = (type: string, object: { code?: unknown; message?: unknown; metadata?: { name?: string; resourceVersion?: string } } | undefined): void => {
        if (run !== this.#run) return;
        if (type === "ERROR") {
          // The server ends the stream after an ERROR event; 410 means our version is too old.
          ended = object?.code === 410 ? EXPIRED : new Error(`the watch failed: HTTP ${String(object?.code)}: ${String(object?.message)}`);
          return;
        }
        const name = object?.metadata?.name ?? "";
        if (type === "ADDED" || type === "MODIFIED") this.#slices.set(name, object as SliceObject);
        else if (type === "DELETED") this.#slices.delete(name);
        last = object?.metadata?.resourceVersion ?? last;
        // In the turn the event arrives: a deleted endpoint takes no request after it.
        if (type !== "BOOKMARK") this.#report();
      };
      const done = (err: unknown): void => {
        if (run !== this.#run) reject(new Error("stopped"));
        else if (ended === EXPIRED || (err as { statusCode?: unknown } | null)?.statusCode === 410) resolveWatch(EXPIRED);
        else if (err != null || ended !== undefined) reject(ended ?? new Error(`the watch failed: ${reasonOf(err)}`));
        else resolveWatch(last);
      };
      const query = { resourceVersion: rv, labelSelector: this.#selector, allowWatchBookmarks: true };
      this.#watcher.watch(path, query, onEvent, done).then((controller) => {
        this.#abort = controller;
        // Stopped while it connected.
        if (run !== this.#run) controller.abort();
      }, reject);
    });
  }

  #pause(run: number, ms: number): Promise<void> {
    return new Promise((done) => {
      this.#timer = setTimeout(done, ms).unref();
    }).then(() => this.#current(run));
  }

  /** Throws when `run` is no longer the provider's (stopped, or restarted). */
  #current(run: number): void {
    if (run !== this.#run) throw new Error("stopped");
  }

  #report(): void {
    const { targets, problems } = sliceTargets([...this.#slices.values()], this.#portName);
    for (const p of problems) if (!this.#reported.has(p)) this.#o.log("warn", `model ${this.#model}: ${this.label}: ${p}`);
    this.#reported = new Set(problems);
    this.#known = targets.size;
    this.#o.sink(targets);
  }

  #failed(err: unknown): void {
    const run = ++this.#run;
    this.#abort?.abort();
    const delay = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** this.#failures++);
    const why = err instanceof Error ? err.message : reasonOf(err);
    this.#o.log("warn", `model ${this.#model}: ${this.label}: ${why}; keeping the last ${this.#known} replicas, listing again in ${delay} ms (restart ${this.#failures})`);
    this.#timer = setTimeout(() => void this.#loop(run), delay).unref();
  }
}
