/**
 * Links that carry a request's KV cache from a prefill replica to a decode
 * replica (prefill/decode disaggregation: Splitwise, DistServe, Mooncake,
 * NVIDIA Dynamo). Each figure carries its source; figures that are not
 * published are marked "assumption" and listed in `assumed`.
 *
 * Bandwidth is one way (a transfer flows one way), per lane. A lane is one
 * device's own path: with `perDevice`, every device of the sending replica
 * moves its shard of the KV over its own lane at once (NVLink ports; one
 * 400G NIC per GPU, as a DGX H100's compute fabric), so a transfer between
 * tp-n replicas has min(n_prefill, n_decode) lanes; without, the replica
 * shares one lane (one NIC per node).
 */
import type { HardwareSpec } from "./accelerators.js";

export interface KvLink {
  readonly id: string;
  readonly name: string;
  /** One-way bandwidth per lane, GB/s (1e9 bytes/s). */
  readonly gbPerS: number;
  /** Fixed time per transfer, microseconds. */
  readonly latencyUs: number;
  /** Energy per bit moved, end to end (both ends' SerDes or optics), pJ. */
  readonly pjPerBit: number;
  /** Each device of a replica has its own lane (see above). */
  readonly perDevice: boolean;
  readonly assumed: readonly string[];
  readonly source: string;
}

export const KV_LINK_IDS = ["nvlink", "rdma-400g", "ethernet-100g"] as const;
export type KvLinkId = (typeof KV_LINK_IDS)[number];

/**
 * 400 Gb/s InfiniBand NDR or 400GbE RoCE, one ConnectX-7 port per GPU.
 * 400 Gb/s = 50 GB/s each way (NVIDIA ConnectX-7 user manual: single-port
 * OSFP, NDR 400Gb/s and 400GbE). One NIC per GPU: NVIDIA DGX H100 datasheet,
 * 8 x single-port ConnectX-7 400 Gb/s for 8 GPUs. Energy: the optics, 9 W
 * typical for a 400 Gb/s OSFP transceiver (NVIDIA MMS4X00-NS400 product
 * specification: "draws 9 Watts maximum or 9 Watts typical" at 400 Gb/s) =
 * 22.5 pJ/bit, four of them on the path (NIC and switch port at each end) =
 * 90 pJ/bit; the NIC and switch ASICs are not counted (a lower bound).
 * Latency: assumption, 5 µs (one-sided RDMA write through one switch,
 * posting included); the engine's transfer set-up (NIXL, Mooncake's
 * transfer engine) is not modelled.
 */
const RDMA_400G: KvLink = {
  id: "rdma-400g",
  name: "RDMA 400 Gb/s (InfiniBand NDR / RoCE), one NIC per GPU",
  gbPerS: 50, // ref: 400 Gb/s per port (ConnectX-7)
  latencyUs: 5, // assumption
  pjPerBit: 90, // ref: 4 x 22.5 pJ/bit (9 W per 400 Gb/s OSFP, NVIDIA MMS4X00-NS400)
  perDevice: true, // ref: DGX H100, 8 x 400 Gb/s ConnectX-7 for 8 GPUs
  assumed: ["latencyUs"],
  source: "NVIDIA ConnectX-7 user manual (NDR 400Gb/s); NVIDIA DGX H100 datasheet (8 x 400 Gb/s ConnectX-7); NVIDIA MMS4X00-NS400 spec (9 W at 400 Gb/s)",
};

/**
 * 100 Gb/s Ethernet, one NIC per node (a common cloud instance without a
 * GPU fabric). 100 Gb/s = 12.5 GB/s each way (IEEE 802.3 100GBASE). Energy:
 * assumption, a QSFP28 module at its power-class ceiling, 3.5 W (SFF-8636
 * power class 4) = 35 pJ/bit, four on the path = 140 pJ/bit. Latency:
 * assumption, 10 µs (RoCE v2 through a top-of-rack switch).
 */
const ETHERNET_100G: KvLink = {
  id: "ethernet-100g",
  name: "Ethernet 100 Gb/s, one NIC per node",
  gbPerS: 12.5, // ref: IEEE 802.3 100 Gb/s
  latencyUs: 10, // assumption
  pjPerBit: 140, // assumption: 4 x 3.5 W per 100 Gb/s (SFF-8636 power class 4)
  perDevice: false,
  assumed: ["latencyUs", "pjPerBit"],
  source: "IEEE 802.3 (100 Gb/s); SFF-8636 power classes",
};

/**
 * The link for a transfer between replicas on `from` and `to`. `nvlink`
 * (both replicas in one scale-up domain, e.g. one 8-GPU node) is the
 * hardware's own scale-up link from the accelerator catalog: half its
 * bidirectional figure each way (NVLink4: 900 GB/s -> 450), its latency and
 * SerDes pJ/bit (5.5, NVIDIA Hot Chips); the slower of the two devices'
 * where they differ.
 */
export function kvLink(id: string, from: HardwareSpec, to: HardwareSpec): KvLink {
  if (id === RDMA_400G.id) return RDMA_400G;
  if (id === ETHERNET_100G.id) return ETHERNET_100G;
  if (id !== "nvlink") throw new RangeError(`unknown KV link "${id}"; known: ${KV_LINK_IDS.join(", ")}`);
  const a = from.link.bidirGBs <= to.link.bidirGBs ? from.link : to.link;
  return {
    id: "nvlink",
    name: `${a.name} (scale-up link, one node)`,
    gbPerS: a.bidirGBs / 2,
    latencyUs: Math.max(from.link.latencyUs, to.link.latencyUs),
    pjPerBit: Math.max(from.link.pjPerBit, to.link.pjPerBit),
    perDevice: true,
    assumed: from.assumed.includes("link") || to.assumed.includes("link") ? ["gbPerS", "latencyUs", "pjPerBit"] : ["latencyUs"],
    source: `${from.id}'s and ${to.id}'s scale-up link (accelerator catalog)`,
  };
}

/** Lanes a transfer between replicas of `tpFrom` and `tpTo` devices uses. */
export function kvLanes(link: KvLink, tpFrom: number, tpTo: number): number {
  return link.perDevice ? Math.max(1, Math.min(tpFrom, tpTo)) : 1;
}

/** Milliseconds to move `bytes` over `lanes` lanes: latency + bytes / (lanes x bandwidth). */
export function kvTransferMs(link: KvLink, bytes: number, lanes: number): number {
  return link.latencyUs / 1000 + bytes / (lanes * link.gbPerS * 1e6);
}

/** Joules to move `bytes` (the link's own, before PUE). */
export function kvTransferJoules(link: KvLink, bytes: number): number {
  return bytes * 8 * link.pjPerBit * 1e-12;
}
