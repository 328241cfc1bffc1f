/**
 * What the gateway's Kubernetes clients share (discovery of EndpointSlices,
 * the autoscaler's scale subresource): the official client's config, and
 * one line on why a call failed.
 */
import { resolve } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { ConfigError } from "../fleet/config.js";

/**
 * The kubeconfig a section names (relative to the fleet file), else the
 * pod's service account inside a cluster, else $KUBECONFIG or
 * ~/.kube/config. Checked now, so a bad one is an error at load naming the
 * field (`where` its section), not a client that fails forever.
 */
export function loadKubeConfig(kubeconfig: string | undefined, opts: { readonly baseDir: string; readonly env: NodeJS.ProcessEnv; readonly where: string }): KubeConfig {
  const kc = new KubeConfig();
  const file = kubeconfig === undefined ? undefined : resolve(opts.baseDir, kubeconfig);
  try {
    if (file !== undefined) kc.loadFromFile(file);
    else if (opts.env.KUBERNETES_SERVICE_HOST !== undefined) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new ConfigError(`${opts.where}.kubeconfig: cannot load ${file ?? "the default kubeconfig"}: ${(err as Error).message}`);
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new ConfigError(`${opts.where}.kubeconfig: ${file ?? "the default kubeconfig"} has no current context with a cluster`);
  if (cluster.server.startsWith("http:") && cluster.skipTLSVerify !== true) {
    // The client refuses plain http unless told to skip TLS checks; say so now rather than on every request.
    throw new ConfigError(`${opts.where}.kubeconfig: cluster ${cluster.name} is plain http (${cluster.server}): set insecure-skip-tls-verify: true for it`);
  }
  return kc;
}

/** The namespace a section names, else the kubeconfig context's (in a pod, the pod's own), else "default". */
export function namespaceOf(kc: KubeConfig, namespace: string | undefined): string {
  return namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
}

/** One line on why a list or watch failed: the HTTP status and the API's own message, or the connection error. */
export function reasonOf(err: unknown): string {
  const e = (err ?? {}) as { body?: unknown; message?: unknown };
  const status = statusOf(err);
  let body = e.body;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch {
      // Not JSON: the status alone says enough.
    }
  }
  const apiMessage = typeof (body as { message?: unknown } | undefined)?.message === "string" ? (body as { message: string }).message : undefined;
  // node-fetch says "request to <url> failed, reason: <why>": the url is known, the why is the news.
  const first = String(e.message ?? err).split("\n")[0]!.replace(/^request to \S+ failed, reason: /, "").slice(0, 300);
  return status === undefined ? first : `HTTP ${status}${apiMessage === undefined ? "" : `: ${apiMessage}`}`;
}

/** The HTTP status of a failed call (the client's ApiException has `code`, the watch's error `statusCode`), if it had one. */
export function statusOf(err: unknown): number | undefined {
  const e = (err ?? {}) as { code?: unknown; statusCode?: unknown };
  return typeof e.code === "number" ? e.code : typeof e.statusCode === "number" ? e.statusCode : undefined;
}
