/**
 * `flotilla plan`: which fleet meets a latency objective for a workload at
 * the least cost (or energy, or devices)? The twin replays the workload on
 * every setup in the space and finds each one's fewest replicas.
 *
 *   flotilla plan --model llama-3.1-70b --synthetic --rate 20 --ttft-slo 1000 --tpot-slo 60
 *   flotilla plan --model llama-3.1-8b --trace trace.jsonl --hw h100,l40s,lpddr-chip --precision fp8,bf16 --out fleet.yaml
 *
 * Only the command's definition lives here; the search loads when it runs
 * (plan-run.ts).
 */
import { availableParallelism } from "node:os";
import type { Command } from "commander";
import { choice, num, workloadOptions, type SimIo } from "./sim-command.js";

export interface PlanOptions {
  model?: string;
  hw: string;
  precision: string;
  tp: string;
  trace?: string;
  format?: "mooncake" | "azure";
  synthetic?: boolean;
  requests?: number;
  rate?: number;
  inputTokens?: number;
  inputCv?: number;
  outputTokens?: number;
  outputCv?: number;
  prefixGroups?: number;
  prefixTokens?: number;
  prefixShare?: number;
  rateScale?: number;
  peakToTrough?: number;
  diurnalPeriod?: number;
  duration?: number;
  truncate?: number;
  ttftSlo: number;
  tpotSlo: number;
  sloShare: number;
  objective: "cost" | "energy" | "devices";
  maxReplicas: number;
  maxPowerKw?: number;
  maxUsdPerHour?: number;
  rackKw: number;
  userTokens?: number;
  threads: number;
  shapes: string;
  kvLink: string;
  exhaustive?: boolean;
  pairs?: number;
  seed?: number;
  json?: boolean;
  out?: string;
  chart?: string;
  profile?: string;
}

export function registerPlanCommand(program: Command, io: SimIo = { stdout: process.stdout, stderr: process.stderr }): void {
  workloadOptions(program.command("plan").description("find the fleet that meets a latency objective for a workload at the least cost, energy or devices, by replaying it in the twin"))
    .option("--model <name>", "the model to serve")
    .option("--hw <names>", "candidate hardware, comma-separated", "h100,h200,b200,mi300x,l40s,lpddr-chip")
    .option("--precision <names>", "candidate precisions, comma-separated", "bf16,fp8")
    .option("--tp <sizes>", "candidate tensor-parallel sizes, comma-separated", "1,2,4,8")
    .option("--shapes <kinds>", "kinds of fleet to consider, comma-separated: aggregated (each replica serves whole requests), disaggregated (prefill and decode replicas of one hardware), mixed (prefill on one hardware, decode on another)", "aggregated")
    .option("--kv-link <link>", "the link KV crosses from prefill to decode replicas: nvlink, rdma-400g or ethernet-100g", "rdma-400g")
    .option("--pairs <n>", "disaggregated and, apart, mixed fleets searched at most, those the hardware model's estimate prices lowest first (default 16)", num("--pairs", { int: true, min: 1 }))
    .option("--exhaustive", "replay every candidate, also those the hardware model's capacity bound prices out (the brute-force check)")
    .option("--ttft-slo <ms>", "objective on time to first token", num("--ttft-slo", { gt: 0 }), 2000)
    .option("--tpot-slo <ms>", "objective on time per output token", num("--tpot-slo", { gt: 0 }), 100)
    .option("--slo-share <f>", "share of requests that must meet both objectives", num("--slo-share", { gt: 0 }), 0.99)
    .option("--objective <what>", "what the chosen fleet minimises: cost, energy or devices", choice("--objective", ["cost", "energy", "devices"] as const), "cost")
    .option("--max-replicas <n>", "most replicas one setup may use", num("--max-replicas", { int: true, min: 1 }), 256)
    .option("--max-power-kw <kW>", "most facility power the fleet may draw at peak (devices at TDP, their hosts, the PUE)", num("--max-power-kw", { gt: 0 }))
    .option("--max-usd-per-hour <usd>", "most the fleet may cost an hour", num("--max-usd-per-hour", { gt: 0 }))
    .option("--rack-kw <kW>", "power one rack takes: how many racks a fleet fills", num("--rack-kw", { gt: 0 }), 30)
    .option("--user-tokens <n>", "output tokens one user takes a month: prices each fleet per user-month", num("--user-tokens", { gt: 0 }))
    .option("--threads <n>", "worker threads searching setups at once (default: this machine's cores)", num("--threads", { int: true, min: 1 }), availableParallelism())
    .option("--profile <file>", "engine profile (`flotilla calibrate --out`) every candidate runs, with its per-device overhead factor where it was measured on that device (default: the built-in parameters)")
    .option("--seed <n>", "random seed (default 1)", num("--seed", { int: true }))
    .option("--json", "print the plan as JSON on stdout")
    .option("--out <file>", "write the chosen fleet as a fleet file that `flotilla sim --fleet` replays")
    .option("--chart <file>", "write an SVG chart of what each fleet that meets the objective costs per million output tokens")
    .action(async (opts: PlanOptions, cmd: Command) => {
      const { runPlan } = await import("./plan-run.js");
      const { isUsageError } = await import("./sim-run.js");
      let met: boolean;
      try {
        met = await runPlan(opts, io);
      } catch (err) {
        if (isUsageError(err)) cmd.error(`flotilla plan: ${err.message}`, { exitCode: 2, code: "flotilla.plan.usage" });
        throw err;
      }
      // The answer is printed either way; a plan that found no fleet says so in its exit status too.
      if (!met) cmd.error("flotilla plan: no setup met the objective (see above)", { exitCode: 1, code: "flotilla.plan.infeasible" });
    });
}
