/**
 * EndpointSlices (discovery.k8s.io/v1) to replica targets, by the API
 * reference's rules (kubernetes.io/docs/reference/kubernetes-api/
 * service-resources/endpoint-slice-v1/):
 *
 * - `conditions.ready` nil means ready; `serving` nil defers to ready;
 *   `terminating` nil means not terminating;
 * - ready (and not terminating): a serving replica; serving but not ready
 *   (terminating): phase `terminating`, no new requests; not serving: none;
 * - an endpoint's addresses are fungible: the first is used;
 * - the port is the slice's port named `port_name`, else its only port.
 *
 * The same address in several slices (a slice being split or merged) is one
 * replica, serving if any slice says so. Objects arrive from the list call
 * and the watch as JSON, so nothing is trusted: what does not fit is
 * skipped and reported, naming the slice and endpoint, and the rest serve.
 */
import { isIP } from "node:net";
import type { TargetPhase } from "./reconcile.js";

/** An EndpointSlice as it may arrive: every field in doubt. */
export interface SliceObject {
  readonly metadata?: { readonly name?: string; readonly namespace?: string } | null;
  readonly addressType?: unknown;
  readonly endpoints?: readonly EndpointObject[] | null;
  readonly ports?: readonly { readonly name?: unknown; readonly port?: unknown; readonly protocol?: unknown }[] | null;
}

interface EndpointObject {
  readonly addresses?: unknown;
  readonly conditions?: { readonly ready?: unknown; readonly serving?: unknown; readonly terminating?: unknown } | null;
  readonly targetRef?: { readonly kind?: unknown; readonly name?: unknown } | null;
}

export interface SliceTargets {
  readonly targets: Map<string, TargetPhase>;
  /** One line per slice or endpoint skipped, naming it and what is wrong. */
  readonly problems: string[];
}

export function sliceTargets(slices: readonly SliceObject[], portName: string | undefined): SliceTargets {
  const targets = new Map<string, TargetPhase>();
  const problems: string[] = [];
  for (const slice of slices) {
    const name = `EndpointSlice ${slice.metadata?.namespace ?? "?"}/${slice.metadata?.name ?? "?"}`;
    const endpoints = slice.endpoints ?? [];
    // An empty slice (the API sends `endpoints: null`) has nothing to check.
    if (!Array.isArray(endpoints)) problems.push(`${name}: endpoints is not a list; skipped`);
    if (!Array.isArray(endpoints) || endpoints.length === 0) continue;
    const family = slice.addressType === "IPv4" ? 4 : slice.addressType === "IPv6" ? 6 : 0;
    if (family === 0) {
      problems.push(`${name}: addressType ${JSON.stringify(slice.addressType)} is not IPv4 or IPv6; skipped`);
      continue;
    }
    const port = portOf(slice, portName);
    if (typeof port === "string") {
      problems.push(`${name}: ${port}; skipped`);
      continue;
    }
    endpoints.forEach((ep: EndpointObject, i) => {
      const address = addressOf(ep, family);
      if (address.problem !== undefined) {
        problems.push(`${name} endpoint ${i}${refOf(ep)}: ${address.problem}; skipped`);
        return;
      }
      const phase = phaseOf(ep.conditions ?? undefined);
      if (phase === undefined) return;
      const url = `http://${family === 6 ? `[${address.ip}]` : address.ip}:${port}`;
      if (targets.get(url) !== "serving") targets.set(url, phase);
    });
  }
  return { targets, problems };
}

/** What its conditions make an endpoint; undefined: not serving, so no replica. */
function phaseOf(c: EndpointObject["conditions"] | undefined): TargetPhase | undefined {
  const ready = c?.ready !== false;
  const serving = typeof c?.serving === "boolean" ? c.serving : ready;
  if (!serving) return undefined;
  return ready && c?.terminating !== true ? "serving" : "terminating";
}

function addressOf(ep: EndpointObject, family: 4 | 6): { ip: string; problem?: undefined } | { ip?: undefined; problem: string } {
  if (!Array.isArray(ep.addresses) || ep.addresses.length === 0) return { problem: "no addresses" };
  const first: unknown = ep.addresses[0];
  if (typeof first !== "string" || isIP(first) !== family) return { problem: `address ${JSON.stringify(first)} is not an IPv${family} address` };
  return { ip: first };
}

/** The slice's port for the engines, or what is wrong with its ports. */
function portOf(slice: SliceObject, portName: string | undefined): number | string {
  const ports = Array.isArray(slice.ports) ? slice.ports : [];
  const names = ports.map((p) => JSON.stringify(p.name ?? "")).join(", ") || "none";
  const chosen = portName === undefined ? (ports.length === 1 ? ports[0] : undefined) : ports.find((p) => p.name === portName);
  if (chosen === undefined) return portName === undefined ? `${ports.length} ports (${names}) and no port_name to choose one` : `no port named "${portName}" (ports: ${names})`;
  const { port, protocol } = chosen;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65_535) return `port ${JSON.stringify(chosen.name ?? "")} has no port number`;
  if (protocol !== undefined && protocol !== "TCP") return `port ${JSON.stringify(chosen.name ?? "")} is ${String(protocol)}, not TCP`;
  return port;
}

/** " (Pod vllm-0)" from the endpoint's targetRef, when it has one. */
function refOf(ep: EndpointObject): string {
  const ref = ep.targetRef;
  return typeof ref?.name === "string" ? ` (${typeof ref.kind === "string" ? ref.kind : "object"} ${ref.name})` : "";
}
