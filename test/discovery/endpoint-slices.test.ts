/**
 * EndpointSlices to replica targets, by the API reference's rules: which
 * conditions serve, which terminate, which port, one replica per address,
 * and every malformed part skipped with a line naming it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sliceTargets, type SliceObject } from "../../src/gateway/discovery/endpoint-slices.js";

const slice = (name: string, endpoints: unknown[], more: Record<string, unknown> = {}): SliceObject =>
  ({ metadata: { name, namespace: "ns" }, addressType: "IPv4", endpoints, ports: [{ name: "http", port: 8000, protocol: "TCP" }], ...more }) as SliceObject;

describe("sliceTargets", () => {
  it("reads conditions as the API reference says: nil ready is ready, nil serving defers to ready, terminating while serving is terminating", () => {
    const { targets, problems } = sliceTargets(
      [
        slice("s", [
          { addresses: ["10.0.0.1"] },
          { addresses: ["10.0.0.2"], conditions: { ready: true, serving: true, terminating: false } },
          { addresses: ["10.0.0.3"], conditions: { ready: false, serving: true, terminating: true } },
          { addresses: ["10.0.0.4"], conditions: { ready: false } },
          { addresses: ["10.0.0.5"], conditions: { ready: false, serving: false, terminating: true } },
          { addresses: ["10.0.0.6"], conditions: { terminating: true } },
        ]),
      ],
      undefined,
    );
    assert.deepEqual(Object.fromEntries(targets), {
      "http://10.0.0.1:8000": "serving",
      "http://10.0.0.2:8000": "serving",
      "http://10.0.0.3:8000": "terminating",
      "http://10.0.0.6:8000": "terminating",
    });
    assert.deepEqual(problems, []);
  });

  it("one replica per address across slices, serving if any slice says so; IPv6 in brackets; the named port", () => {
    const two = { ports: [{ name: "metrics", port: 9000 }, { name: "http", port: 8000 }] };
    const { targets } = sliceTargets(
      [
        slice("a", [{ addresses: ["10.0.0.1"], conditions: { ready: false, serving: true } }], two),
        slice("b", [{ addresses: ["10.0.0.1"] }], two),
        slice("v6", [{ addresses: ["fd00::1"] }], { addressType: "IPv6", ...two }),
      ],
      "http",
    );
    assert.deepEqual(Object.fromEntries(targets), { "http://10.0.0.1:8000": "serving", "http://[fd00::1]:8000": "serving" });
  });

  it("skips what is malformed, naming the slice and endpoint, and keeps the rest", () => {
    const { targets, problems } = sliceTargets(
      [
        slice("good", [{ addresses: ["10.0.0.1"] }, { conditions: { ready: true }, targetRef: { kind: "Pod", name: "vllm-1" } }, { addresses: ["vllm-2.local"] }, { addresses: [] }]),
        slice("fqdn", [{ addresses: ["vllm.example"] }], { addressType: "FQDN" }),
        slice("ports", [{ addresses: ["10.0.0.9"] }], { ports: [{ name: "a", port: 1 }, { name: "b", port: 2 }] }),
        slice("udp", [{ addresses: ["10.0.0.9"] }], { ports: [{ name: "http", port: 8000, protocol: "UDP" }] }),
        slice("empty", [], { endpoints: null, ports: null }),
        slice("broken", [], { endpoints: "nope" }),
      ],
      undefined,
    );
    assert.deepEqual(Object.fromEntries(targets), { "http://10.0.0.1:8000": "serving" });
    assert.deepEqual(problems, [
      "EndpointSlice ns/good endpoint 1 (Pod vllm-1): no addresses; skipped",
      'EndpointSlice ns/good endpoint 2: address "vllm-2.local" is not an IPv4 address; skipped',
      "EndpointSlice ns/good endpoint 3: no addresses; skipped",
      'EndpointSlice ns/fqdn: addressType "FQDN" is not IPv4 or IPv6; skipped',
      'EndpointSlice ns/ports: 2 ports ("a", "b") and no port_name to choose one; skipped',
      'EndpointSlice ns/udp: port "http" is UDP, not TCP; skipped',
      "EndpointSlice ns/broken: endpoints is not a list; skipped",
    ]);
    assert.match(sliceTargets([slice("s", [{ addresses: ["10.0.0.1"] }])], "grpc").problems[0]!, /no port named "grpc" \(ports: "http"\)/);
  });
});
