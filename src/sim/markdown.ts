/** The simulation report for people: Markdown tables, a few lines each. */
import type { Distribution, ReplicaReport, SimReport } from "./report.js";

/** Three significant figures, thousands grouped. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "n/a" : x > 0 ? "inf" : "-inf";
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString("en-US");
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return "0";
  return x.toPrecision(3);
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(x >= 0.9995 || x === 0 ? 0 : 2)}%` : "n/a");
const int = (x: number): string => Math.round(x).toLocaleString("en-US");

export function table(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const sep = header.map((_, i) => (right.has(i) ? "---:" : "---"));
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(header), line(sep), ...rows.map(line)].join("\n");
}

function distRow(name: string, d: Distribution): string[] {
  return [name, fmt(d.p50), fmt(d.p90), fmt(d.p99), fmt(d.mean), fmt(d.max)];
}

function replicaRows(reps: readonly ReplicaReport[]): string[][] {
  return reps.map((r) => [r.name, pct(r.utilization), pct(r.efficiency.value), int(r.completed), int(r.outputTokens), pct(r.cacheHitRate), int(r.preemptions), int(r.failures), fmt(r.downS), fmt(r.joules / 3.6e6), `$${fmt(r.usd)}`]);
}

function summarize(values: readonly number[]): string {
  if (values.length === 0) return "n/a";
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]!;
  return `min ${pct(s[0]!)}, median ${pct(q(0.5))}, p99 ${pct(q(0.99))}, max ${pct(s[s.length - 1]!)}`;
}

export interface MarkdownOptions {
  /** Chart files to link (relative paths), shown under their headings. */
  readonly charts?: { readonly ttft?: string; readonly timeline?: string; readonly replicas?: string };
  /** Replicas listed one per row up to this many; beyond, a summary and the busiest few (default 32). */
  readonly maxReplicaRows?: number;
}

export function renderMarkdown(r: SimReport, opts: MarkdownOptions = {}): string {
  const charts = opts.charts ?? {};
  const sections = [
    fleetSection(r),
    requestsSection(r),
    latencySection(r, charts.ttft),
    throughputSection(r, charts.timeline),
    efficiencySection(r),
    cacheSection(r),
    ...(r.kvTransfer === undefined ? [] : [kvTransferSection(r.kvTransfer)]),
    energySection(r),
    replicasSection(r, opts.maxReplicaRows ?? 32, charts.replicas),
    simulationSection(r),
  ];
  return [`# Flotilla simulation: ${r.trace.name}`, "", introduction(r), "", ...sections.flatMap((lines) => [...lines, ""])].join("\n");
}

/** A section's lines: its heading, a blank line, its body. */
function section(heading: string, ...body: string[]): string[] {
  return [`## ${heading}`, "", ...body];
}

/** An image under a table, where a chart was written. */
function chart(alt: string, file: string | undefined): string[] {
  return file === undefined ? [] : ["", `![${alt}](${file})`];
}

function introduction(r: SimReport): string {
  return (
    `${int(r.trace.requests)} requests over ${fmt(r.trace.spanS)} s of arrivals (${int(r.trace.inputTokens)} prompt and ${int(r.trace.outputTokens)} output tokens), ` +
    `on ${int(r.fleet.replicas)} replicas (${int(r.fleet.devices)} devices); router: ${r.policy}` +
    `${r.fleet.replicas > r.sample ? ` over ${r.sample} sampled candidates per request` : ""}; ` +
    `${r.chunkedPrefill ? "chunked prefill" : "whole-prompt prefill"}; prefix blocks of ${r.blockTokens} tokens.`
  );
}

function fleetSection(r: SimReport): string[] {
  return section(
    "Fleet",
    table(
      ["island", "replicas", "hardware", "model", "precision", "tp", "max batch", "KV tokens", "$/h per replica", ...(r.kvTransfer === undefined ? [] : ["role"])],
      r.fleet.islands.map((i) => [i.name, int(i.count), i.hardware, i.model, i.precision, String(i.tp), int(i.maxBatch), int(i.kvCapacityTokens), `$${fmt(i.usdPerHour)}`, ...(r.kvTransfer === undefined ? [] : [i.role])]),
      new Set([1, 5, 6, 7, 8]),
    ),
  );
}

function requestsSection(r: SimReport): string[] {
  const q = r.requests;
  const rejectedBy = Object.entries(q.rejectedBy)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${int(v)}`)
    .join(", ");
  return section(
    "Requests",
    table(
      ["completed", "rejected", "lost", "unfinished", "retries after failures", "preemptions"],
      [[int(q.completed), `${int(q.rejected)}${rejectedBy === "" ? "" : ` (${rejectedBy})`}`, int(q.lost), int(q.unfinished), int(q.retries), int(q.preemptions)]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
  );
}

function latencySection(r: SimReport, ttftChart: string | undefined): string[] {
  const rows = [distRow("time to first token", r.latency.ttftMs), distRow("time per output token", r.latency.tpotMs), distRow("end to end", r.latency.e2eMs)];
  return section("Latency (ms)", table(["", "p50", "p90", "p99", "mean", "max"], rows, new Set([1, 2, 3, 4, 5])), ...chart("TTFT distribution", ttftChart));
}

function throughputSection(r: SimReport, timelineChart: string | undefined): string[] {
  const availability =
    r.availability.failures > 0
      ? ["", `Availability: ${pct(r.availability.share)} of replica-time up; ${int(r.availability.failures)} failures, ${fmt(r.availability.downReplicaS)} replica-seconds down; ${int(r.requests.lost)} requests lost, ${int(r.requests.retries)} re-routed.`]
      : [];
  return section(
    "Throughput and goodput",
    table(
      ["simulated span", "requests/s", "output tokens/s", "prompt tokens/s", `goodput (TTFT <= ${fmt(r.slo.ttftMs)} ms, TPOT <= ${fmt(r.slo.tpotMs)} ms)`],
      [[`${fmt(r.throughput.spanS)} s`, fmt(r.throughput.requestsPerS), fmt(r.throughput.outputTokensPerS), fmt(r.throughput.inputTokensPerS), `${int(r.goodput.requests)} requests = ${pct(r.goodput.share)} = ${fmt(r.goodput.requestsPerS)} req/s`]],
      new Set([0, 1, 2, 3]),
    ),
    ...chart("throughput and queue over time", timelineChart),
    ...availability,
  );
}

function efficiencySection(r: SimReport): string[] {
  const e = r.efficiency;
  return section(
    "Efficiency against the physical limit",
    "The share of what the paid-for hardware could deliver that it delivered as useful output: the time its passes would take at the devices' datasheet peak (memory bandwidth and matrix FLOPS, same batches and contexts, no software overhead) over the time up, × the time up over the time paid for, × the share of requests served within the SLO.",
    "",
    table(["efficiency", "at the roofline", "availability", "goodput share"], [[pct(e.value), pct(e.roofline), pct(e.availability), pct(e.goodput)]], new Set([0, 1, 2, 3])),
  );
}

function cacheSection(r: SimReport): string[] {
  const c = r.cache;
  const promptTotal = c.cachedPromptTokens + c.computedPromptTokens;
  const hostTier =
    c.hostBlockHits > 0 || c.hostStores > 0
      ? ["", `Host-memory tier: ${int(c.hostStores)} blocks written on eviction from HBM, ${int(c.hostBlockHits)} loaded back; passes waited ${fmt(c.hostLoadS)} replica-seconds for loads.`]
      : [];
  return section(
    "Prefix cache",
    table(
      ["block lookups", "blocks hit", "hit rate (blocks)", "in HBM", "from host memory", "prompt tokens from cache"],
      [[int(c.blockRefs), int(c.blockHits), pct(c.hitRate), pct(c.hbmHitRate), pct(c.hostHitRate), `${int(c.cachedPromptTokens)} (${pct(promptTotal > 0 ? c.cachedPromptTokens / promptTotal : 0)})`]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
    ...hostTier,
  );
}

function kvTransferSection(x: NonNullable<SimReport["kvTransfer"]>): string[] {
  return section(
    "KV transfer (prefill to decode)",
    table(
      ["link", "transfers", "GB moved", "p50 (ms)", "p99 (ms)", "max (ms)", "energy (J, facility)"],
      [[`${x.link}: ${x.linkName}`, int(x.transfers), fmt(x.bytes / 1e9), fmt(x.ms.p50), fmt(x.ms.p99), fmt(x.ms.max), fmt(x.joules)]],
      new Set([1, 2, 3, 4, 5, 6]),
    ),
    "",
    "The prefill replica emits the first token; the KV then crosses the link, so a request's second token (its TPOT) carries the transfer.",
  );
}

/** The summary's line on KV transfers, where the fleet disaggregates. */
function kvTransferLine(r: SimReport): string[] {
  const x = r.kvTransfer;
  if (x === undefined) return [];
  return [`KV transfer over ${x.link}: ${int(x.transfers)} transfers, ${fmt(x.bytes / 1e9)} GB, p50/p99 ${fmt(x.ms.p50)}/${fmt(x.ms.p99)} ms, ${fmt(x.joules)} J`];
}

function energySection(r: SimReport): string[] {
  return section(
    "Energy and cost",
    table(
      ["energy", "J per output token", "of which idle", "cost", "$ per M output tokens", "devices / electricity"],
      [[`${fmt(r.energy.joules / 3.6e6)} kWh`, fmt(r.energy.joulesPerToken), pct(r.energy.joules > 0 ? r.energy.idleJoules / r.energy.joules : 0), `$${fmt(r.cost.usd)}`, `$${fmt(r.cost.usdPerMTok)}`, `$${fmt(r.cost.deviceUsd)} / $${fmt(r.cost.energyUsd)}`]],
      new Set([0, 1, 2, 3, 4]),
    ),
    "",
    `Facility energy (PUE ${r.energy.pue}); idle replicas draw their idle power, replicas down for repair none; devices are paid for the whole span.`,
  );
}

/** One row per replica up to `maxRows`; beyond, a summary of utilisation and the ten busiest, so a large fleet stays readable. */
function replicasSection(r: SimReport, maxRows: number, replicasChart: string | undefined): string[] {
  const header = ["replica", "utilization", "efficiency", "completed", "output tokens", "cache hit", "preemptions", "failures", "down (s)", "kWh", "cost"];
  const right = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const body =
    r.replicas.length <= maxRows
      ? [table(header, replicaRows(r.replicas), right)]
      : [
          `Utilization over ${int(r.replicas.length)} replicas: ${summarize(r.replicas.map((x) => x.utilization))}. The ten busiest:`,
          "",
          table(header, replicaRows([...r.replicas].sort((a, b) => b.utilization - a.utilization).slice(0, 10)), right),
        ];
  return section("Replicas", ...body, ...chart("load per replica", replicasChart));
}

function simulationSection(r: SimReport): string[] {
  const s = r.simulation;
  return section(
    "Simulation",
    table(
      ["events", "wall time", "events/s", "simulated / wall", "routing decisions", "µs per decision"],
      [[int(s.events), `${fmt(s.wallS)} s`, int(s.eventsPerS), `${fmt(s.wallS > 0 ? s.simulatedS / s.wallS : 0)}x`, int(s.decisions), fmt(s.decisionUs)]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
  );
}

/** A few lines for the terminal when no --out is given. */
export function renderSummary(r: SimReport): string {
  const l = r.latency;
  return [
    `${r.trace.name}: ${int(r.requests.completed)}/${int(r.requests.total)} completed, ${int(r.requests.rejected)} rejected, ${int(r.requests.lost)} lost, ${int(r.requests.retries)} retries on ${int(r.fleet.replicas)} replicas (${r.policy})`,
    `TTFT p50/p90/p99 ${fmt(l.ttftMs.p50)}/${fmt(l.ttftMs.p90)}/${fmt(l.ttftMs.p99)} ms; TPOT ${fmt(l.tpotMs.p50)}/${fmt(l.tpotMs.p90)}/${fmt(l.tpotMs.p99)} ms; E2E ${fmt(l.e2eMs.p50)}/${fmt(l.e2eMs.p90)}/${fmt(l.e2eMs.p99)} ms`,
    `throughput ${fmt(r.throughput.outputTokensPerS)} output tok/s; goodput ${pct(r.goodput.share)}; cache hit ${pct(r.cache.hitRate)} of blocks`,
    `efficiency ${pct(r.efficiency.value)} of the physical limit (${pct(r.efficiency.roofline)} at the roofline while up × ${pct(r.efficiency.availability)} up × ${pct(r.efficiency.goodput)} of requests served within the SLO)`,
    ...kvTransferLine(r),
    ...(r.availability.failures > 0 ? [`availability ${pct(r.availability.share)} of replica-time (${int(r.availability.failures)} failures)`] : []),
    `energy ${fmt(r.energy.joules / 3.6e6)} kWh (${fmt(r.energy.joulesPerToken)} J/token); cost $${fmt(r.cost.usd)} ($${fmt(r.cost.usdPerMTok)}/Mtok)`,
    `simulated ${fmt(r.simulation.simulatedS)} s in ${fmt(r.simulation.wallS)} s wall (${int(r.simulation.events)} events, ${int(r.simulation.eventsPerS)}/s; ${fmt(r.simulation.decisionUs)} µs per routing decision)`,
  ].join("\n");
}
