/**
 * Accelerator catalog. Every figure carries its source beside it; figures that
 * are not published are marked "assumption" there and listed in `assumed`.
 * Primary reference: ../shared/data/hardware-reference.md ("ref" below).
 *
 * Units: TFLOPS are dense (no sparsity); memory capacity in GiB (vendors print
 * HBM capacity as "GB" but it is binary: an H100 80GB reports 81,559 MiB in
 * nvidia-smi, an H200 141GB 143,771 MiB); bandwidths in decimal GB/s; link
 * bandwidth is the vendor's aggregate bidirectional figure per device.
 */
import type { ComputeFormat } from "./precision.js";
import { UnknownNameError } from "./errors.js";

export type DeviceKind = "gpu" | "tpu" | "lpddr" | "cpu" | "soc";

export interface ScaleUpLink {
  readonly name: string;
  /** Aggregate bidirectional bandwidth per device, GB/s (half of it flows each way). */
  readonly bidirGBs: number;
  /** One hop, microseconds. */
  readonly latencyUs: number;
  readonly pjPerBit: number;
  /** Largest tensor-parallel domain the link serves. */
  readonly maxDevices: number;
}

export interface PeakTflops {
  readonly bf16: number;
  readonly fp8?: number;
  readonly fp4?: number;
  /** INT8 matrix rate; used for 8-bit weights where a device has no FP8 unit (A100, TPU v5e/v5p/v6e). */
  readonly int8?: number;
}

export interface HardwareSpec {
  readonly id: string;
  readonly name: string;
  readonly kind: DeviceKind;
  readonly peakTflops: PeakTflops;
  /**
   * Measured maximum achievable matmul FLOPS over peak (MAMF, per format).
   * Absent formats use DEFAULT_MATMUL_EFFICIENCY.
   */
  readonly matmulEfficiency?: Partial<Readonly<Record<ComputeFormat, number>>>;
  readonly memoryGiB: number;
  readonly memoryType: string;
  /** Peak memory bandwidth, GB/s. */
  readonly memoryGBs: number;
  /** Energy to move one bit between DRAM and the chip. */
  readonly memoryPjPerBit: number;
  /** CPU cores, for CPU profiles. */
  readonly cores?: number;
  readonly tdpW: number;
  /** Power when parked with nothing to do. */
  readonly idleW: number;
  /** Floor while serving: leakage and clocks at speed, before any arithmetic or data movement. */
  readonly staticW: number;
  /** Energy per FLOP by format, where known; otherwise derived from TDP (see energy.ts). */
  readonly pjPerFlop?: Partial<Readonly<Record<ComputeFormat, number>>>;
  readonly link: ScaleUpLink;
  readonly price: {
    readonly rentUsdPerHour: number;
    /** Purchase price per device; absent where the device is not sold (TPUs). */
    readonly purchaseUsd?: number;
  };
  /** Names of the fields above whose values are assumptions rather than published figures. */
  readonly assumed: readonly string[];
  readonly source: string;
}

/** MAMF for devices nobody has measured (assumption: the middle of the measured range, 0.71-0.87). */
export const DEFAULT_MATMUL_EFFICIENCY = 0.75;

// Static (serving floor) power where not measured: assumption, 25% of TDP for accelerators.
const STATIC_SHARE = 0.25;

const NVLINK4: ScaleUpLink = {
  name: "NVLink4",
  bidirGBs: 900, // ref: NVLink4 900 GB/s bidirectional (NVIDIA datasheet)
  latencyUs: 1, // assumption: one NVSwitch hop, order of a microsecond
  pjPerBit: 5.5, // ref: SerDes 5.5 pJ/bit (NVIDIA Hot Chips)
  maxDevices: 8, // HGX/DGX board
};

export const HARDWARE: readonly HardwareSpec[] = [
  {
    id: "h100",
    name: "NVIDIA H100 SXM 80GB",
    kind: "gpu",
    peakTflops: { bf16: 989, fp8: 1979, int8: 1979 }, // ref: NVIDIA datasheet (dense)
    // MAMF: 794.5 BF16 (80.3%), 1402.6 FP8 (70.9%) TFLOPS, stas00/ml-engineering compute/accelerator README
    matmulEfficiency: { bf16: 0.803, fp8: 0.709 },
    memoryGiB: 80, // ref: 80 GB HBM3
    memoryType: "HBM3",
    memoryGBs: 3350, // ref: 3.35 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3(e) ~3-3.7 pJ/bit (O'Connor et al. MICRO 2017; secondary)
    tdpW: 700, // ref: 700 W
    idleW: 70, // assumption: typical nvidia-smi idle reading
    staticW: 700 * STATIC_SHARE, // assumption
    link: NVLINK4,
    price: { rentUsdPerHour: 2.5, purchaseUsd: 25000 }, // assumption: 2025 cloud on-demand / street price
    assumed: ["idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA H100 datasheet; hardware-reference.md",
  },
  {
    id: "h200",
    name: "NVIDIA H200 SXM 141GB",
    kind: "gpu",
    peakTflops: { bf16: 989, fp8: 1979, int8: 1979 }, // ref: NVIDIA datasheet
    // MAMF: BF16 same as H100 (80.3%), FP8 1453.4 (73.4%), stas00/ml-engineering
    matmulEfficiency: { bf16: 0.803, fp8: 0.734 },
    memoryGiB: 141, // ref: 141 GB HBM3e
    memoryType: "HBM3e",
    memoryGBs: 4800, // ref: 4.8 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3(e) ~3-3.7 pJ/bit
    tdpW: 700, // ref: 700 W
    idleW: 75, // assumption
    staticW: 700 * STATIC_SHARE, // assumption
    link: NVLINK4, // ref: 900 GB/s
    price: { rentUsdPerHour: 3.5, purchaseUsd: 32000 }, // assumption
    assumed: ["idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA H200 datasheet; hardware-reference.md",
  },
  {
    id: "b200",
    name: "NVIDIA B200 (HGX) 180GB",
    kind: "gpu",
    peakTflops: { bf16: 2250, fp8: 4500, fp4: 9000, int8: 4500 }, // ref: NVIDIA figures (dense)
    // MAMF: BF16 1745 (77.6%), FP8 3432.5 (76.3%), stas00/ml-engineering; FP4 unmeasured (see params.fp4Efficiency)
    matmulEfficiency: { bf16: 0.776, fp8: 0.763 },
    memoryGiB: 180, // ref: 180 GB HBM3e
    memoryType: "HBM3e",
    memoryGBs: 8000, // ref: 8 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3(e)
    tdpW: 1000, // ref: 1,000 W
    idleW: 120, // assumption
    staticW: 1000 * STATIC_SHARE, // assumption
    link: { name: "NVLink5", bidirGBs: 1800, latencyUs: 1, pjPerBit: 5.5, maxDevices: 8 }, // ref: 1.8 TB/s; latency assumption
    price: { rentUsdPerHour: 5.5, purchaseUsd: 40000 }, // assumption
    assumed: ["idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA B200 figures; hardware-reference.md",
  },
  {
    id: "a100",
    name: "NVIDIA A100 SXM 80GB",
    kind: "gpu",
    peakTflops: { bf16: 312, int8: 624 }, // ref: NVIDIA datasheet; no FP8 unit
    matmulEfficiency: { bf16: 0.869 }, // MAMF 271.2 of 312, stas00/ml-engineering
    memoryGiB: 80, // ref: 80 GB HBM2e
    memoryType: "HBM2e",
    memoryGBs: 2039, // ref: 2.04 TB/s
    memoryPjPerBit: 3.9, // ref: HBM2 ~3.9 pJ/bit (O'Connor et al.)
    tdpW: 400, // ref: 400 W
    idleW: 55, // assumption
    staticW: 400 * STATIC_SHARE, // assumption
    link: { name: "NVLink3", bidirGBs: 600, latencyUs: 1, pjPerBit: 5.5, maxDevices: 8 }, // ref: 600 GB/s
    price: { rentUsdPerHour: 1.5, purchaseUsd: 12000 }, // assumption
    assumed: ["idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA A100 datasheet; hardware-reference.md",
  },
  {
    id: "mi300x",
    name: "AMD Instinct MI300X",
    kind: "gpu",
    peakTflops: { bf16: 1307, fp8: 2615, int8: 2615 }, // ref: AMD figures (dense)
    // MAMF: BF16 668.4 of 1300 (51.4%, ROCm 6.3), stas00/ml-engineering; FP8 unmeasured: assumption = BF16's
    matmulEfficiency: { bf16: 0.514, fp8: 0.514 },
    memoryGiB: 192, // ref: 192 GB HBM3
    memoryType: "HBM3",
    memoryGBs: 5300, // ref: 5.3 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3
    tdpW: 750, // ref: 750 W
    idleW: 140, // assumption
    staticW: 750 * STATIC_SHARE, // assumption
    link: { name: "Infinity Fabric", bidirGBs: 896, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 8 }, // ref: 896 GB/s; latency, pJ assumption
    price: { rentUsdPerHour: 2.5, purchaseUsd: 15000 }, // assumption
    assumed: ["matmulEfficiency.fp8", "idleW", "staticW", "link.latencyUs", "link.pjPerBit", "price"],
    source: "AMD MI300X figures; hardware-reference.md",
  },
  {
    id: "gh200",
    name: "NVIDIA GH200 (96GB HBM3)",
    kind: "gpu",
    peakTflops: { bf16: 989, fp8: 1979, int8: 1979 }, // NVIDIA GH200 datasheet: H100-class Hopper GPU
    // MAMF: BF16 828.6 (83.8%), FP8 1535 (77.6%) on the 900 W GH200, stas00/ml-engineering
    matmulEfficiency: { bf16: 0.838, fp8: 0.776 },
    memoryGiB: 96, // NVIDIA GH200 datasheet: 96 GB HBM3 (480 GB LPDDR5X on the Grace side is not modelled)
    memoryType: "HBM3",
    memoryGBs: 4000, // NVIDIA GH200 datasheet: 4 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3
    tdpW: 900, // NVIDIA: module power configurable 450-1000 W (CPU + GPU + memory); assumption 900 W
    idleW: 100, // assumption
    staticW: 900 * STATIC_SHARE, // assumption
    link: NVLINK4,
    price: { rentUsdPerHour: 3.2, purchaseUsd: 35000 }, // assumption
    assumed: ["tdpW", "idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA GH200 datasheet",
  },
  {
    id: "gb200",
    name: "NVIDIA GB200 (one Blackwell GPU of an NVL72)",
    kind: "gpu",
    // NVIDIA GB200 NVL72 spec divided by 72 GPUs, sparse figures halved: BF16 2.5, FP8 5, FP4 10 PFLOPS dense
    peakTflops: { bf16: 2500, fp8: 5000, fp4: 10000, int8: 5000 },
    // MAMF: BF16 1822 (72.9%), FP8 3615.6 (72.3%), stas00/ml-engineering
    matmulEfficiency: { bf16: 0.729, fp8: 0.723 },
    memoryGiB: 186, // NVIDIA GB200 NVL72 spec: 13.4 TB HBM3e / 72
    memoryType: "HBM3e",
    memoryGBs: 8000, // NVIDIA GB200 NVL72 spec: 576 TB/s / 72
    memoryPjPerBit: 3.5, // ref: HBM3(e)
    tdpW: 1200, // assumption: per GPU share of the ~2.7 kW superchip
    idleW: 150, // assumption
    staticW: 1200 * STATIC_SHARE, // assumption
    link: { name: "NVLink5", bidirGBs: 1800, latencyUs: 1, pjPerBit: 5.5, maxDevices: 72 }, // NVIDIA: 1.8 TB/s, 72-GPU domain
    price: { rentUsdPerHour: 6.5, purchaseUsd: 50000 }, // assumption
    assumed: ["tdpW", "idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA GB200 NVL72 spec",
  },
  {
    id: "l40s",
    name: "NVIDIA L40S",
    kind: "gpu",
    peakTflops: { bf16: 362, fp8: 733, int8: 733 }, // NVIDIA L40S datasheet (dense; sparse figures are double)
    memoryGiB: 48, // NVIDIA L40S datasheet: 48 GB GDDR6
    memoryType: "GDDR6",
    memoryGBs: 864, // NVIDIA L40S datasheet
    memoryPjPerBit: 7.5, // assumption: GDDR6 order of magnitude, as GDDR6X
    tdpW: 350, // NVIDIA L40S datasheet
    idleW: 35, // assumption
    staticW: 350 * STATIC_SHARE, // assumption
    link: { name: "PCIe 4.0 x16", bidirGBs: 64, latencyUs: 5, pjPerBit: 5.5, maxDevices: 8 }, // no NVLink; latency assumption
    price: { rentUsdPerHour: 1.0, purchaseUsd: 9000 }, // assumption
    assumed: ["matmulEfficiency", "memoryPjPerBit", "idleW", "staticW", "link.latencyUs", "price"],
    source: "NVIDIA L40S datasheet",
  },
  {
    id: "mi325x",
    name: "AMD Instinct MI325X",
    kind: "gpu",
    peakTflops: { bf16: 1307, fp8: 2615, int8: 2615 }, // AMD figures: same compute die as MI300X
    // MAMF: BF16 784.9 of 1300 (60.4%, 1000 W), stas00/ml-engineering; FP8 assumption = BF16's
    matmulEfficiency: { bf16: 0.604, fp8: 0.604 },
    memoryGiB: 256, // AMD: 256 GB HBM3E
    memoryType: "HBM3e",
    memoryGBs: 6000, // AMD: 6 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3(e)
    tdpW: 1000, // AMD: 1,000 W
    idleW: 160, // assumption
    staticW: 1000 * STATIC_SHARE, // assumption
    link: { name: "Infinity Fabric", bidirGBs: 896, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 8 }, // as MI300X
    price: { rentUsdPerHour: 3, purchaseUsd: 20000 }, // assumption
    assumed: ["matmulEfficiency.fp8", "idleW", "staticW", "link.latencyUs", "link.pjPerBit", "price"],
    source: "AMD MI325X figures",
  },
  {
    id: "tpu-v5e",
    name: "Google TPU v5e",
    kind: "tpu",
    peakTflops: { bf16: 197, int8: 393 }, // ref: Google Cloud docs
    memoryGiB: 16, // ref: 16 GB HBM2e
    memoryType: "HBM2e",
    memoryGBs: 819, // ref: 819 GB/s
    memoryPjPerBit: 3.9, // ref: HBM2
    tdpW: 200, // assumption: not published (ref "n/p")
    idleW: 30, // assumption
    staticW: 200 * STATIC_SHARE, // assumption
    link: { name: "ICI", bidirGBs: 400, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 256 }, // ref: ICI 400 GB/s; rest assumption
    // Google Cloud on-demand list price, USD per chip-hour (2024); TPUs are not sold.
    price: { rentUsdPerHour: 1.2 },
    assumed: ["matmulEfficiency", "tdpW", "idleW", "staticW", "link.latencyUs", "link.pjPerBit"],
    source: "Google Cloud TPU docs and pricing; hardware-reference.md",
  },
  {
    id: "tpu-v5p",
    name: "Google TPU v5p",
    kind: "tpu",
    peakTflops: { bf16: 459, int8: 918 }, // ref: Google Cloud docs
    memoryGiB: 95, // ref: 95 GB HBM2e
    memoryType: "HBM2e",
    memoryGBs: 2765, // ref: 2,765 GB/s
    memoryPjPerBit: 3.9, // ref: HBM2
    tdpW: 450, // assumption: not published
    idleW: 60, // assumption
    staticW: 450 * STATIC_SHARE, // assumption
    link: { name: "ICI", bidirGBs: 600, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 8960 }, // ref: ICI 4,800 Gbps = 600 GB/s
    price: { rentUsdPerHour: 4.2 }, // Google Cloud on-demand list price per chip-hour (2024)
    assumed: ["matmulEfficiency", "tdpW", "idleW", "staticW", "link.latencyUs", "link.pjPerBit"],
    source: "Google Cloud TPU docs and pricing; hardware-reference.md",
  },
  {
    id: "tpu-v6e",
    name: "Google TPU v6e (Trillium)",
    kind: "tpu",
    peakTflops: { bf16: 918, int8: 1836 }, // ref: Google Cloud docs
    memoryGiB: 32, // ref: 32 GB
    memoryType: "HBM",
    memoryGBs: 1638, // ref: 1,638 GB/s
    memoryPjPerBit: 3.7, // ref: HBM3(e) upper figure (generation not stated: assumption)
    tdpW: 300, // assumption: not published
    idleW: 45, // assumption
    staticW: 300 * STATIC_SHARE, // assumption
    link: { name: "ICI", bidirGBs: 800, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 256 }, // ref: ICI 800 GB/s
    price: { rentUsdPerHour: 2.7 }, // Google Cloud on-demand list price per chip-hour (2024)
    assumed: ["matmulEfficiency", "memoryPjPerBit", "tdpW", "idleW", "staticW", "link.latencyUs", "link.pjPerBit"],
    source: "Google Cloud TPU docs and pricing; hardware-reference.md",
  },
  {
    id: "ironwood",
    name: "Google TPU Ironwood (v7)",
    kind: "tpu",
    // ref: 4,614 FP8 TFLOPS (Hot Chips 2025 coverage); BF16 assumption: half the FP8 rate
    peakTflops: { bf16: 2307, fp8: 4614 },
    memoryGiB: 192, // ref: 192 GB HBM3e
    memoryType: "HBM3e",
    memoryGBs: 7370, // ref: ~7.3 TB/s
    memoryPjPerBit: 3.5, // ref: HBM3(e)
    tdpW: 1000, // assumption: not published
    idleW: 120, // assumption
    staticW: 1000 * STATIC_SHARE, // assumption
    link: { name: "ICI", bidirGBs: 1200, latencyUs: 1.5, pjPerBit: 5.5, maxDevices: 9216 }, // ref: 1.2 TB/s, 9,216 chips/pod
    price: { rentUsdPerHour: 6 }, // assumption: no public price
    assumed: ["peakTflops.bf16", "matmulEfficiency", "tdpW", "idleW", "staticW", "link.latencyUs", "link.pjPerBit", "price"],
    source: "Hot Chips 2025 coverage; hardware-reference.md",
  },
  {
    id: "rtx-4090",
    name: "NVIDIA GeForce RTX 4090",
    kind: "gpu",
    // NVIDIA Ada Lovelace architecture whitepaper: FP16 tensor with FP32 accumulate 165.2 TFLOPS dense,
    // FP8 330.3 dense (FP32 accumulate)
    peakTflops: { bf16: 165.2, fp8: 330.3, int8: 660.6 },
    memoryGiB: 24, // 24 GB GDDR6X (NVIDIA spec)
    memoryType: "GDDR6X",
    memoryGBs: 1008, // ref: 1,008 GB/s (row 10)
    memoryPjPerBit: 7.25, // approx. Micron GDDR6X product brief figure; assumption
    tdpW: 450, // NVIDIA spec: 450 W board power
    idleW: 20, // assumption
    staticW: 450 * STATIC_SHARE, // assumption
    link: { name: "PCIe 4.0 x16", bidirGBs: 64, latencyUs: 5, pjPerBit: 5.5, maxDevices: 8 }, // PCIe 4.0 x16 = 32 GB/s each way; latency assumption
    price: { rentUsdPerHour: 0.4, purchaseUsd: 1599 }, // NVIDIA launch MSRP; rent assumption
    assumed: ["matmulEfficiency", "memoryPjPerBit", "idleW", "staticW", "link.latencyUs", "price.rentUsdPerHour"],
    source: "NVIDIA Ada whitepaper and spec page; llama.cpp PR #4766 (bandwidth)",
  },
  {
    id: "m2-ultra",
    name: "Apple M2 Ultra (76-core GPU)",
    kind: "soc",
    peakTflops: { bf16: 27.2 }, // widely quoted GPU FP32 = FP16 rate for the 76-core part; assumption-grade
    memoryGiB: 192, // Apple spec: up to 192 GB unified LPDDR5
    memoryType: "LPDDR5",
    memoryGBs: 800, // ref: 800 GB/s (row 11)
    memoryPjPerBit: 3, // assumption: between LPDDR4 ~4 and LPDDR5X ~2 (Dally et al.)
    tdpW: 295, // Apple Mac Studio spec: maximum continuous power 295 W (whole system)
    idleW: 11, // Apple Mac Studio spec: idle 11 W (whole system)
    staticW: 40, // assumption
    link: { name: "none", bidirGBs: 10, latencyUs: 10, pjPerBit: 10, maxDevices: 1 }, // Thunderbolt-class; assumption
    price: { rentUsdPerHour: 0.3, purchaseUsd: 6599 }, // approx. Mac Studio 192 GB list price; rent assumption
    assumed: ["peakTflops", "matmulEfficiency", "memoryPjPerBit", "staticW", "link", "price.rentUsdPerHour"],
    source: "Apple Mac Studio (2023) spec; llama.cpp discussion #4167 (bandwidth)",
  },
];

export interface LpddrChipOptions {
  readonly id?: string;
  readonly name?: string;
  /** GB/s; default 16 x64 LPDDR5X-8533 packages = 1,092 GB/s. */
  readonly bandwidthGBs?: number;
  readonly capacityGiB?: number;
  readonly tdpW?: number;
  readonly bf16Tflops?: number;
  readonly purchaseUsd?: number;
  readonly rentUsdPerHour?: number;
}

/**
 * A parameterised LPDDR inference chip (HyperAccel LPU/"Bertha"-like). Public
 * claims only (ref): LPDDR5X instead of HBM, server ~1/10 of a GPU server's
 * price, ~90% utilisation, 1.33x H100's energy efficiency. No bandwidth,
 * capacity or price sheet is public, so EVERY default below is an assumption.
 */
export function lpddrChipProfile(opts: LpddrChipOptions = {}): HardwareSpec {
  const bw = opts.bandwidthGBs ?? 16 * 68.3; // assumption: 16 x64 LPDDR5X-8533 packages, 68.3 GB/s each
  const tdp = opts.tdpW ?? 120; // assumption
  const bf16 = opts.bf16Tflops ?? 128; // assumption: sized for batched decode, far below a GPU
  return {
    id: opts.id ?? "lpddr-chip",
    name: opts.name ?? "LPDDR5X inference chip (parameterised)",
    kind: "lpddr",
    peakTflops: { bf16, fp8: bf16 * 2, int8: bf16 * 2 },
    // ref: "~90% compute utilization" claim for the LPU's streamlined datapath; applied to matmul (assumption)
    matmulEfficiency: { bf16: 0.9, fp8: 0.9 },
    memoryGiB: opts.capacityGiB ?? 256, // assumption: 16 packages x 16 GiB
    memoryType: "LPDDR5X",
    memoryGBs: bw,
    memoryPjPerBit: 2, // ref: LPDDR5X ~2 pJ/bit (literature default)
    tdpW: tdp,
    idleW: tdp * 0.1, // assumption
    staticW: tdp * STATIC_SHARE, // assumption
    link: { name: "chip-to-chip (PCIe 5.0 x16 class)", bidirGBs: 128, latencyUs: 2, pjPerBit: 5.5, maxDevices: 16 }, // assumption
    // assumption: "server at about 1/10 of a GPU server's price" (ref) -> ~1/10 of an H100 per chip
    price: { rentUsdPerHour: opts.rentUsdPerHour ?? 0.3, purchaseUsd: opts.purchaseUsd ?? 2500 },
    assumed: ["peakTflops", "matmulEfficiency", "memoryGiB", "memoryGBs", "tdpW", "idleW", "staticW", "link", "price"],
    source: "assumed profile; public claims in hardware-reference.md (IEEE Micro 2024, arXiv 2408.07326)",
  };
}

export interface CpuOptions {
  readonly id: string;
  readonly name: string;
  readonly sockets: number;
  readonly coresPerSocket: number;
  /** Sustained all-core clock, GHz. */
  readonly ghz: number;
  /** BF16 FLOP per cycle per core (AVX-512 BF16 dot products: 128 on Zen 5 with two 512-bit pipes). */
  readonly bf16FlopPerCycle: number;
  readonly channels: number;
  /** DDR5 transfer rate, MT/s; each channel moves 8 bytes per transfer. */
  readonly mts: number;
  readonly capacityGiB: number;
  readonly tdpPerSocketW: number;
  readonly purchaseUsdPerSocket: number;
  readonly rentUsdPerHour: number;
}

/** A CPU server as one device: bandwidth = channels x MT/s x 8 bytes. */
export function cpuProfile(o: CpuOptions): HardwareSpec {
  const tdp = o.tdpPerSocketW * o.sockets;
  return {
    id: o.id,
    name: o.name,
    kind: "cpu",
    peakTflops: { bf16: (o.sockets * o.coresPerSocket * o.ghz * o.bf16FlopPerCycle) / 1000 },
    matmulEfficiency: { bf16: 0.6 }, // assumption: CPU GEMM libraries reach well below peak
    memoryGiB: o.capacityGiB,
    memoryType: "DDR5",
    memoryGBs: (o.channels * o.mts * 8) / 1000,
    memoryPjPerBit: 20, // ref: DRAM access ~20 pJ/bit (Horowitz, ISSCC 2014; DDR-class off-chip)
    cores: o.sockets * o.coresPerSocket,
    tdpW: tdp,
    idleW: tdp * 0.3, // assumption
    staticW: tdp * 0.4, // assumption
    link: { name: "Ethernet 400G", bidirGBs: 100, latencyUs: 10, pjPerBit: 20, maxDevices: 4 }, // assumption
    price: { rentUsdPerHour: o.rentUsdPerHour, purchaseUsd: o.purchaseUsdPerSocket * o.sockets },
    assumed: ["peakTflops", "matmulEfficiency", "idleW", "staticW", "link", "price.rentUsdPerHour", "memoryGiB"],
    source: "AMD EPYC 9005 spec (12 channels DDR5-6400, 320 W for 9175F); llama.cpp issue #11744",
  };
}

const EPYC_9175F = {
  coresPerSocket: 16, // AMD spec: 16 Zen 5 cores
  ghz: 4.2, // AMD spec: 4.2 GHz base (boost to 5.0)
  bf16FlopPerCycle: 128, // derived: 2 x 512-bit pipes x 32 BF16 pairs x 2 FLOP
  mts: 6400, // DDR5-6400
  tdpPerSocketW: 320, // AMD spec
  purchaseUsdPerSocket: 4256, // AMD launch list price (approx.)
} as const;

export const CPUS: readonly HardwareSpec[] = [
  cpuProfile({
    id: "cpu-epyc-9175f",
    name: "AMD EPYC 9175F, 1 socket, 12x DDR5-6400",
    sockets: 1,
    channels: 12, // AMD spec: 12 channels per socket
    capacityGiB: 768, // assumption: 12 x 64 GiB RDIMMs
    rentUsdPerHour: 0.6, // assumption
    ...EPYC_9175F,
  }),
  cpuProfile({
    id: "cpu-2x-epyc-9175f",
    name: "2x AMD EPYC 9175F, 16x DDR5-6400",
    sockets: 2,
    channels: 16, // ref row 12: 16x DDR5-6400 across two sockets
    capacityGiB: 1024, // assumption: 16 x 64 GiB RDIMMs
    rentUsdPerHour: 1.2, // assumption
    ...EPYC_9175F,
  }),
  // One core of the same server: what the local engine runs a small model on (one thread below 256 MB of weights,
  // src/engines/local.ts), e.g. the built-in tiny model. Its share of the socket: a channel of the twelve, a
  // sixteenth of the TDP and the price.
  cpuProfile({
    id: "cpu-zen5-core",
    name: "one Zen 5 core of an EPYC 9175F, one DDR5-6400 channel",
    sockets: 1,
    channels: 1,
    capacityGiB: 64, // assumption: one 64 GiB RDIMM
    rentUsdPerHour: 0.6 / 16, // assumption: a sixteenth of the socket's
    ...EPYC_9175F,
    coresPerSocket: 1,
    tdpPerSocketW: EPYC_9175F.tdpPerSocketW / 16,
    purchaseUsdPerSocket: EPYC_9175F.purchaseUsdPerSocket / 16,
  }),
];

export const LPDDR_CHIP: HardwareSpec = lpddrChipProfile();

const ALL: readonly HardwareSpec[] = [...HARDWARE, LPDDR_CHIP, ...CPUS];

const ALIASES: Readonly<Record<string, string>> = {
  "h100-sxm": "h100",
  "h100-80gb": "h100",
  "h200-sxm": "h200",
  "a100-80gb": "a100",
  "v5e": "tpu-v5e",
  "v5p": "tpu-v5p",
  "v6e": "tpu-v6e",
  trillium: "tpu-v6e",
  "tpu-v7": "ironwood",
  lpddr: "lpddr-chip",
  "4090": "rtx-4090",
};

/** Every hardware entry in the catalog, accelerators first. */
export function allHardware(): readonly HardwareSpec[] {
  return ALL;
}

export function knownHardware(): string[] {
  return ALL.map((h) => h.id);
}

/** Looks hardware up by id or alias, case-insensitively. */
export function findHardware(name: string): HardwareSpec {
  const key = name.trim().toLowerCase();
  const id = ALIASES[key] ?? key;
  const hw = ALL.find((h) => h.id === id);
  if (hw === undefined) throw new UnknownNameError("hardware", name, knownHardware());
  return hw;
}

export interface MatrixRate {
  /** The unit that actually runs: the wanted format or the next slower one the device has. */
  readonly format: ComputeFormat | "int8";
  readonly tflops: number;
  /** Measured (or assumed) max-achievable fraction of `tflops`. */
  readonly efficiency: number;
}

/**
 * The matrix rate for a wanted format: FP4 falls back to FP8, then INT8, then BF16;
 * FP8 falls back to INT8 (W8A8 integer path), then BF16. An unmeasured FP4 rate
 * takes the FP8 efficiency times `fp4Efficiency` (a fitted parameter).
 */
export function matrixRate(hw: HardwareSpec, want: ComputeFormat, fp4Efficiency = 1): MatrixRate {
  const p = hw.peakTflops;
  const eff = (f: ComputeFormat): number => hw.matmulEfficiency?.[f] ?? hw.matmulEfficiency?.bf16 ?? DEFAULT_MATMUL_EFFICIENCY;
  if (want === "fp4" && p.fp4 !== undefined) {
    return { format: "fp4", tflops: p.fp4, efficiency: hw.matmulEfficiency?.fp4 ?? eff("fp8") * fp4Efficiency };
  }
  if (want !== "bf16" && p.fp8 !== undefined) return { format: "fp8", tflops: p.fp8, efficiency: eff("fp8") };
  if (want !== "bf16" && p.int8 !== undefined) return { format: "int8", tflops: p.int8, efficiency: eff("fp8") };
  return { format: "bf16", tflops: p.bf16, efficiency: eff("bf16") };
}
