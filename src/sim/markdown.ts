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
  return reps.map((r) => [r.name, pct(r.utilization), int(r.completed), int(r.outputTokens), pct(r.cacheHitRate), int(r.preemptions), int(r.failures), fmt(r.downS), fmt(r.joules / 3.6e6), `$${fmt(r.usd)}`]);
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
  const out: string[] = [];
  const R = new Set([1, 2, 3, 4, 5]);
  out.push(`# Flotilla simulation: ${r.trace.name}`);
  out.push("");
  out.push(
    `${int(r.trace.requests)} requests over ${fmt(r.trace.spanS)} s of arrivals (${int(r.trace.inputTokens)} prompt and ${int(r.trace.outputTokens)} output tokens), ` +
      `on ${int(r.fleet.replicas)} replicas (${int(r.fleet.devices)} devices); router: ${r.policy}` +
      `${r.fleet.replicas > r.sample ? ` over ${r.sample} sampled candidates per request` : ""}; ` +
      `${r.chunkedPrefill ? "chunked prefill" : "whole-prompt prefill"}; prefix blocks of ${r.blockTokens} tokens.`,
  );
  out.push("");
  out.push("## Fleet");
  out.push("");
  out.push(
    table(
      ["island", "replicas", "hardware", "model", "precision", "tp", "max batch", "KV tokens", "$/h per replica"],
      r.fleet.islands.map((i) => [i.name, int(i.count), i.hardware, i.model, i.precision, String(i.tp), int(i.maxBatch), int(i.kvCapacityTokens), `$${fmt(i.usdPerHour)}`]),
      new Set([1, 5, 6, 7, 8]),
    ),
  );
  out.push("");
  out.push("## Requests");
  out.push("");
  const q = r.requests;
  const rejectedBy = Object.entries(q.rejectedBy)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${int(v)}`)
    .join(", ");
  out.push(
    table(
      ["completed", "rejected", "lost", "unfinished", "retries after failures", "preemptions"],
      [[int(q.completed), `${int(q.rejected)}${rejectedBy === "" ? "" : ` (${rejectedBy})`}`, int(q.lost), int(q.unfinished), int(q.retries), int(q.preemptions)]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
  );
  out.push("");
  out.push("## Latency (ms)");
  out.push("");
  out.push(table(["", "p50", "p90", "p99", "mean", "max"], [distRow("time to first token", r.latency.ttftMs), distRow("time per output token", r.latency.tpotMs), distRow("end to end", r.latency.e2eMs)], R));
  if (opts.charts?.ttft !== undefined) out.push("", `![TTFT distribution](${opts.charts.ttft})`);
  out.push("");
  out.push("## Throughput and goodput");
  out.push("");
  out.push(
    table(
      ["simulated span", "requests/s", "output tokens/s", "prompt tokens/s", `goodput (TTFT <= ${fmt(r.slo.ttftMs)} ms, TPOT <= ${fmt(r.slo.tpotMs)} ms)`],
      [[`${fmt(r.throughput.spanS)} s`, fmt(r.throughput.requestsPerS), fmt(r.throughput.outputTokensPerS), fmt(r.throughput.inputTokensPerS), `${int(r.goodput.requests)} requests = ${pct(r.goodput.share)} = ${fmt(r.goodput.requestsPerS)} req/s`]],
      new Set([0, 1, 2, 3]),
    ),
  );
  if (opts.charts?.timeline !== undefined) out.push("", `![throughput and queue over time](${opts.charts.timeline})`);
  if (r.availability.failures > 0) {
    out.push("", `Availability: ${pct(r.availability.share)} of replica-time up; ${int(r.availability.failures)} failures, ${fmt(r.availability.downReplicaS)} replica-seconds down; ${int(r.requests.lost)} requests lost, ${int(r.requests.retries)} re-routed.`);
  }
  out.push("");
  out.push("## Prefix cache");
  out.push("");
  const c = r.cache;
  const promptTotal = c.cachedPromptTokens + c.computedPromptTokens;
  out.push(
    table(
      ["block lookups", "blocks hit", "hit rate (blocks)", "in HBM", "from host memory", "prompt tokens from cache"],
      [[int(c.blockRefs), int(c.blockHits), pct(c.hitRate), pct(c.hbmHitRate), pct(c.hostHitRate), `${int(c.cachedPromptTokens)} (${pct(promptTotal > 0 ? c.cachedPromptTokens / promptTotal : 0)})`]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
  );
  if (c.hostBlockHits > 0 || c.hostStores > 0) {
    out.push("", `Host-memory tier: ${int(c.hostStores)} blocks written on eviction from HBM, ${int(c.hostBlockHits)} loaded back; passes waited ${fmt(c.hostLoadS)} replica-seconds for loads.`);
  }
  out.push("");
  out.push("## Energy and cost");
  out.push("");
  out.push(
    table(
      ["energy", "J per output token", "of which idle", "cost", "$ per M output tokens", "devices / electricity"],
      [[`${fmt(r.energy.joules / 3.6e6)} kWh`, fmt(r.energy.joulesPerToken), pct(r.energy.joules > 0 ? r.energy.idleJoules / r.energy.joules : 0), `$${fmt(r.cost.usd)}`, `$${fmt(r.cost.usdPerMTok)}`, `$${fmt(r.cost.deviceUsd)} / $${fmt(r.cost.energyUsd)}`]],
      new Set([0, 1, 2, 3, 4]),
    ),
  );
  out.push("", `Facility energy (PUE ${r.energy.pue}); idle replicas draw their idle power, replicas down for repair none; devices are paid for the whole span.`);
  out.push("");
  out.push("## Replicas");
  out.push("");
  const header = ["replica", "utilization", "completed", "output tokens", "cache hit", "preemptions", "failures", "down (s)", "kWh", "cost"];
  const right = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const max = opts.maxReplicaRows ?? 32;
  if (r.replicas.length <= max) out.push(table(header, replicaRows(r.replicas), right));
  else {
    out.push(`Utilization over ${int(r.replicas.length)} replicas: ${summarize(r.replicas.map((x) => x.utilization))}. The ten busiest:`);
    out.push("");
    out.push(table(header, replicaRows([...r.replicas].sort((a, b) => b.utilization - a.utilization).slice(0, 10)), right));
  }
  if (opts.charts?.replicas !== undefined) out.push("", `![load per replica](${opts.charts.replicas})`);
  out.push("");
  out.push("## Simulation");
  out.push("");
  const s = r.simulation;
  out.push(
    table(
      ["events", "wall time", "events/s", "simulated / wall", "routing decisions", "µs per decision"],
      [[int(s.events), `${fmt(s.wallS)} s`, int(s.eventsPerS), `${fmt(s.wallS > 0 ? s.simulatedS / s.wallS : 0)}x`, int(s.decisions), fmt(s.decisionUs)]],
      new Set([0, 1, 2, 3, 4, 5]),
    ),
  );
  out.push("");
  return out.join("\n");
}

/** A few lines for the terminal when no --out is given. */
export function renderSummary(r: SimReport): string {
  const l = r.latency;
  return [
    `${r.trace.name}: ${int(r.requests.completed)}/${int(r.requests.total)} completed, ${int(r.requests.rejected)} rejected, ${int(r.requests.lost)} lost, ${int(r.requests.retries)} retries on ${int(r.fleet.replicas)} replicas (${r.policy})`,
    `TTFT p50/p90/p99 ${fmt(l.ttftMs.p50)}/${fmt(l.ttftMs.p90)}/${fmt(l.ttftMs.p99)} ms; TPOT ${fmt(l.tpotMs.p50)}/${fmt(l.tpotMs.p90)}/${fmt(l.tpotMs.p99)} ms; E2E ${fmt(l.e2eMs.p50)}/${fmt(l.e2eMs.p90)}/${fmt(l.e2eMs.p99)} ms`,
    `throughput ${fmt(r.throughput.outputTokensPerS)} output tok/s; goodput ${pct(r.goodput.share)}; cache hit ${pct(r.cache.hitRate)} of blocks`,
    ...(r.availability.failures > 0 ? [`availability ${pct(r.availability.share)} of replica-time (${int(r.availability.failures)} failures)`] : []),
    `energy ${fmt(r.energy.joules / 3.6e6)} kWh (${fmt(r.energy.joulesPerToken)} J/token); cost $${fmt(r.cost.usd)} ($${fmt(r.cost.usdPerMTok)}/Mtok)`,
    `simulated ${fmt(r.simulation.simulatedS)} s in ${fmt(r.simulation.wallS)} s wall (${int(r.simulation.events)} events, ${int(r.simulation.eventsPerS)}/s; ${fmt(r.simulation.decisionUs)} µs per routing decision)`,
  ].join("\n");
}
