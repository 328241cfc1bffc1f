/* global document, window, location, EventSource */
/*
 * Flotilla's dashboard: one page, two sources. The live fleet (a snapshot
 * plus server-sent events each tick) and reports of `flotilla sim` are both
 * turned into the same view model and drawn by the same code, so a simulated
 * fleet and a live one look alike. Plain DOM and hand-drawn SVG: no
 * framework, no build step, nothing fetched from anywhere but this server.
 */
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const HISTORY_POINTS = 900;

// ---------------------------------------------------------------- formatting

function num(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toPrecision(digits)}G`;
  if (a >= 1e6) return `${(v / 1e6).toPrecision(digits)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(digits)}k`;
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  if (a === 0) return "0";
  return String(Number(v.toPrecision(digits)));
}

/** A count in full, with thousands separators. */
function count(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return Math.round(v).toLocaleString("en-US");
}

function pct(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const p = v * 100;
  return `${p >= 10 || p === 0 ? p.toFixed(0) : p.toFixed(1)}%`;
}

function seconds(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (v < 1) return `${num(v * 1000)} ms`;
  if (v < 120) return `${num(v)} s`;
  return `${num(v / 60)} min`;
}

function usd(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return `$${num(v)}`;
}

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el !== null && el.textContent !== text) el.textContent = text;
}

// ---------------------------------------------------------------- charts

/** About five round ticks covering [min, max]. */
function ticks(min, max, count = 5) {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) || 10) * mag;
  const out = [];
  const snap = (v) => (Math.abs(v) < step * 1e-6 ? 0 : Number(v.toPrecision(12)));
  for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) out.push(snap(v));
  if (out[out.length - 1] < max) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

const W = 420;
const H = 200;
const PAD = { l: 46, r: 10, t: 8, b: 28 };

function frame(yTicks, yFormat) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const y0 = yTicks[0];
  const y1 = yTicks[yTicks.length - 1];
  const py = (v) => PAD.t + (H - PAD.t - PAD.b) * (1 - (v - y0) / (y1 - y0 || 1));
  for (const t of yTicks) {
    const y = py(t);
    svg.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, stroke: "#e4e9ef" }));
    svg.append(s("text", { x: PAD.l - 5, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#5d6b7a" }, yFormat(t)));
  }
  return { svg, py };
}

function legend(series) {
  const el = h("div", { class: "legend" });
  series.forEach((sr, i) => {
    const swatch = h("i");
    swatch.style.background = sr.color || COLORS[i % COLORS.length];
    el.append(h("span", {}, swatch, sr.name));
  });
  return el;
}

function emptyChart(svg, message) {
  svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, message));
}

/** Lines over a shared x axis (seconds). */
function lineChart(fig, spec) {
  const { xs, series } = spec;
  let max = spec.yMax ?? 0;
  for (const sr of series) for (const v of sr.values) if (v !== null && Number.isFinite(v) && v > max) max = v;
  const yTicks = ticks(0, max > 0 ? max : 1, 4);
  const { svg, py } = frame(yTicks, spec.yFormat || num);
  const x0 = xs.length > 0 ? xs[0] : 0;
  const x1 = xs.length > 1 ? xs[xs.length - 1] : x0 + 1;
  const px = (v) => PAD.l + (W - PAD.l - PAD.r) * ((v - x0) / (x1 - x0 || 1));
  for (const t of ticks(x0, x1, 5)) {
    if (t < x0 || t > x1) continue;
    svg.append(s("text", { x: px(t), y: H - 10, "text-anchor": "middle", "font-size": 10, fill: "#5d6b7a" }, (spec.xFormat || num)(t)));
  }
  if (xs.length < 2) emptyChart(svg, spec.empty || "collecting…");
  series.forEach((sr, i) => {
    let d = "";
    let pen = false;
    for (let k = 0; k < xs.length; k++) {
      const v = sr.values[k];
      if (v === null || v === undefined || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${px(xs[k]).toFixed(1)},${py(v).toFixed(1)}`;
      pen = true;
    }
    if (d !== "") svg.append(s("path", { d, fill: "none", stroke: sr.color || COLORS[i % COLORS.length], "stroke-width": 1.8, "stroke-linejoin": "round" }));
  });
  fig.replaceChildren(h("figcaption", { text: spec.title }), svg, legend(series));
}

/** Vertical bars with category labels (a histogram, or per-replica values). */
function barChart(fig, spec) {
  const { labels, values } = spec;
  let max = spec.yMax ?? 0;
  for (const v of values) if (Number.isFinite(v) && v > max) max = v;
  const yTicks = ticks(0, max > 0 ? max : 1, 4);
  const { svg, py } = frame(yTicks, spec.yFormat || num);
  const n = Math.max(1, labels.length);
  const slot = (W - PAD.l - PAD.r) / n;
  // Every k-th label, k = the widest label's estimated width (~5.6 px a
  // character at font-size 10, plus a gap) over the slot width: shown labels
  // are then a label's width apart and cannot overlap at any fleet size.
  const widest = labels.reduce((m, l) => Math.max(m, String(l ?? "").length), 1);
  const every = Math.max(1, Math.ceil((5.6 * widest + 6) / slot));
  values.forEach((v, i) => {
    const x = PAD.l + i * slot;
    const top = py(Number.isFinite(v) ? v : 0);
    const rect = s("rect", { x: x + slot * 0.12, y: top, width: Math.max(1, slot * 0.76), height: Math.max(0, py(yTicks[0]) - top), fill: (spec.colors && spec.colors[i]) || spec.color || COLORS[0] });
    rect.append(s("title", {}, `${(spec.titles && spec.titles[i]) || labels[i]}: ${(spec.yFormat || num)(v)}`));
    svg.append(rect);
    // Centred under its bar, but kept inside the chart: the last label of a crowded axis would hang off its edge.
    const half = (5.6 * String(labels[i] ?? "").length) / 2;
    const at = Math.min(W - 2 - half, Math.max(half + 2, x + slot / 2));
    if (i % every === 0) svg.append(s("text", { x: at, y: H - 10, "text-anchor": "middle", "font-size": 10, fill: "#5d6b7a" }, labels[i]));
  });
  if (labels.length === 0 || values.every((v) => !(v > 0))) emptyChart(svg, spec.empty || "no data yet");
  fig.replaceChildren(h("figcaption", { text: spec.title }), svg, spec.legend ? legend(spec.legend) : h("div", { class: "legend" }));
}

/**
 * Replica names without the start they all share, cut back to just after a
 * "/" ("m/0", "m/1" → "0", "1"): short axis labels, the prefix in the title.
 */
function shortNames(names) {
  if (names.length < 2) return { prefix: "", rest: names };
  let len = names[0].lastIndexOf("/") + 1;
  for (const n of names) while (len > 0 && n.slice(0, len) !== names[0].slice(0, len)) len = names[0].lastIndexOf("/", len - 2) + 1;
  if (len === 0 || names.some((n) => n.length === len)) return { prefix: "", rest: names };
  return { prefix: names[0].slice(0, len), rest: names.map((n) => n.slice(len)) };
}

function bucketLabel(bound) {
  return bound < 1 ? `≤${num(bound * 1000)}ms` : `≤${num(bound)}s`;
}

// ---------------------------------------------------------------- view models

/** Live: the server's snapshot plus the history of points it pushed. */
function fromLive(snap, history) {
  const t0 = history.length > 0 ? history[history.length - 1].t : Date.now();
  const xs = history.map((p) => (p.t - t0) / 1000);
  const k = snap.kpis || {};
  return {
    mode: "live",
    title: "Live fleet",
    subtitle: `${snap.replicas.length} replicas · sampled every ${snap.tickMs} ms · utilisation and availability over the last minute`,
    kpis: k,
    xs,
    xFormat: (v) => (v === 0 ? "now" : `${num(v)}s`),
    series: {
      tokensPerS: history.map((p) => p.tokensPerS),
      requestsPerS: history.map((p) => p.requestsPerS),
      running: history.map((p) => p.running),
      queued: history.map((p) => p.queued),
      p99TtftS: history.map((p) => p.p99TtftS),
      availability: history.map((p) => p.availability),
      utilization: history.map((p) => p.utilization),
      atRoofline: history.map((p) => p.atRoofline),
      efficiency: history.map((p) => p.efficiency),
    },
    ttft: snap.ttft,
    ttftPercentiles: null,
    replicas: snap.replicas.map((r) => ({
      ...r,
      health: healthOf(r.state),
      load: r.slots > 0 ? r.active / r.slots : 0,
      queueShare: r.slots > 0 ? Math.min(1, r.queued / r.slots) : 0,
      loadText: `${r.active}/${r.slots}${r.queued > 0 ? ` +${r.queued}` : ""}`,
    })),
    batches: Array.isArray(snap.batches) ? snap.batches : null,
  };
}

/** A report of `flotilla sim`, drawn as the live fleet is. */
function fromSim(name, data) {
  const r = data.report;
  const tl = r.timeline || { bucketS: 1, outputTokensPerS: [], completedPerS: [], queued: [], running: [], down: [] };
  const islands = (r.fleet && r.fleet.islands) || [];
  const totalSlots = islands.reduce((a, i) => a + i.count * i.maxBatch, 0);
  const shares = simShares(tl, r.fleet ? r.fleet.replicas : 0, totalSlots);
  const span = (r.throughput && r.throughput.spanS) || 0;
  const islandByName = new Map(islands.map((i) => [i.name, i]));
  return {
    mode: "sim",
    title: `Simulated fleet · ${name}`,
    subtitle: `${r.trace ? r.trace.name : "trace"} · ${num(r.requests ? r.requests.total : 0)} requests over ${seconds(span)} · policy ${r.policy || "?"} · ${num(r.fleet ? r.fleet.devices : 0)} devices · utilisation counts batch slots (${num(totalSlots)} in all)`,
    kpis: simKpis(r, shares.utilization),
    xs: shares.xs,
    xFormat: (v) => (v === 0 ? "0" : seconds(v)),
    series: {
      tokensPerS: tl.outputTokensPerS,
      requestsPerS: tl.completedPerS,
      running: tl.running,
      queued: tl.queued,
      p99TtftS: null,
      availability: shares.availability,
      utilization: shares.utilizations,
      atRoofline: null,
      efficiency: null,
    },
    ttft: data.ttft,
    ttftPercentiles: r.latency ? r.latency.ttftMs : null,
    replicas: r.replicas.map((x) => simReplica(x, islandByName.get(x.island) || {}, span)),
    batches: null,
  };
}

/**
 * A sim report's shares per timeline bucket, and utilisation over the run.
 * The report keeps no slot-time per bucket, so the batch slots of the
 * replicas up stand in for it.
 */
function simShares(tl, totalReplicas, totalSlots) {
  const n = Math.max(tl.queued.length, tl.outputTokensPerS.length);
  const xs = Array.from({ length: n }, (_, i) => i * tl.bucketS);
  const availability = [];
  const utilizations = [];
  let running = 0;
  let upSlots = 0;
  for (let i = 0; i < n; i++) {
    const a = totalReplicas > 0 ? 1 - (tl.down[i] || 0) / totalReplicas : 0;
    const slots = totalSlots * a;
    const u = slots > 0 ? Math.min(1, (tl.running[i] || 0) / slots) : 0;
    running += tl.running[i] || 0;
    upSlots += slots;
    availability.push(a);
    utilizations.push(u);
  }
  return { xs, availability, utilizations, utilization: upSlots > 0 ? running / upSlots : null };
}

/** The tiles of a sim report; `util` is utilisation over the run. */
function simKpis(r, util) {
  const av = r.availability ? r.availability.share : null;
  const e = r.efficiency || null;
  return {
    efficiency: e ? e.value : null,
    atRoofline: e ? e.roofline : null,
    efficiencyUp: e ? e.availability : null,
    goodput: e ? e.goodput : null,
    utilization: util,
    availability: av,
    busyTime: r.replicas.length > 0 ? r.replicas.reduce((a, x) => a + x.utilization, 0) / r.replicas.length : null,
    tokensPerS: r.throughput ? r.throughput.outputTokensPerS : null,
    requestsPerS: r.throughput ? r.throughput.requestsPerS : null,
    p99TtftS: r.latency && r.latency.ttftMs.p99 !== null ? r.latency.ttftMs.p99 / 1000 : null,
    joulesPerToken: r.energy ? r.energy.joulesPerToken : null,
    usdPerMTok: r.cost ? r.cost.usdPerMTok : null,
    requests: r.requests ? r.requests.completed : null,
    outputTokens: r.replicas.reduce((a, x) => a + x.outputTokens, 0),
    failovers: r.requests ? r.requests.retries : null,
    continuations: null,
  };
}

/** A simulated replica's card, as a live replica's looks; `span` is the run's length in seconds. */
function simReplica(x, isl, span) {
  return {
    id: x.name,
    model: isl.model || "",
    engine: "sim",
    hardware: `${isl.hardware || "?"}${isl.precision ? ` ${isl.precision}` : ""}${isl.tp > 1 ? ` ×${isl.tp}` : ""}`,
    island: x.island,
    state: x.failures > 0 ? `up ${pct(span > 0 ? 1 - x.downS / span : 1)}` : "healthy",
    health: x.failures > 0 ? "degraded" : "healthy",
    load: x.utilization,
    queueShare: 0,
    loadText: pct(x.utilization),
    kv: null,
    tokensPerS: span > 0 ? x.outputTokens / span : 0,
    efficiency: x.efficiency ? x.efficiency.value : null,
    completed: x.completed,
    failovers: x.failures,
    continuations: null,
  };
}

function healthOf(state) {
  switch (state) {
    case "healthy":
      return "healthy";
    case "half-open":
      return "degraded";
    case "draining":
    case "terminating":
      return "draining";
    default:
      return "unhealthy";
  }
}

// ---------------------------------------------------------------- rendering

function chartFigure(id) {
  return document.getElementById(id);
}

function render(view) {
  setText("title", view.title);
  setText("subtitle", view.subtitle);
  renderKpis(view.kpis, view.mode);
  renderCharts(view);
  renderFleet(view);
  renderBatches(view.batches);
}

/** The hero's efficiency against the physical limit, and the tiles. */
function renderKpis(k, mode) {
  setText("kpi-efficiency", pct(k.efficiency));
  document.getElementById("efficiency-fill").style.width = `${Math.max(0, Math.min(1, k.efficiency || 0)) * 100}%`;
  setText("kpi-atRoofline", pct(k.atRoofline));
  setText("kpi-efficiencyUp", pct(k.efficiencyUp));
  setText("kpi-goodput", pct(k.goodput));
  setText("goodput-label", mode === "sim" ? "within the SLO" : "answered in full");
  setText(
    "efficiency-explain",
    k.efficiency === null || k.efficiency === undefined
      ? "No replica names its hardware in the fleet file (hardware: h100, …), so there is no physical limit to measure against."
      : `The share of what the paid-for hardware could deliver that it delivered as useful answers: the time its work would take at the devices' datasheet bandwidth and FLOPS (same batches, no software overhead), over the time it was paid for, counting only answers ${mode === "sim" ? "within the SLO" : "given in full"}${mode === "sim" ? "" : " (last minute)"}.`,
  );
  setText("kpi-utilization", pct(k.utilization));
  setText("kpi-availability", pct(k.availability));
  setText("kpi-busyTime", pct(k.busyTime));
  setText("kpi-tokensPerS", num(k.tokensPerS));
  setText("kpi-requestsPerS", num(k.requestsPerS));
  setText("kpi-p99TtftS", seconds(k.p99TtftS));
  setText("kpi-joulesPerToken", num(k.joulesPerToken));
  setText("kpi-usdPerMTok", usd(k.usdPerMTok));
  setText("kpi-requests", count(k.requests));
  setText("kpi-outputTokens", count(k.outputTokens));
  setText("kpi-recoveries", `${num(k.failovers)} · ${num(k.continuations)}`);
}

function renderCharts(view) {
  const xs = view.xs;
  const sr = view.series;
  lineChart(chartFigure("chart-throughput"), {
    title: "Throughput",
    xs,
    xFormat: view.xFormat,
    series: [
      { name: "output tokens/s", values: sr.tokensPerS },
      { name: "requests/s", values: sr.requestsPerS, color: COLORS[3] },
    ],
  });
  lineChart(chartFigure("chart-queue"), {
    title: "Running and queued requests",
    xs,
    xFormat: view.xFormat,
    series: [
      { name: "running", values: sr.running, color: COLORS[2] },
      { name: "queued", values: sr.queued, color: COLORS[1] },
    ],
  });
  // The twin's report keeps its efficiency for the run, not per bucket: its chart shows what the timeline has.
  const measured = sr.efficiency !== null && sr.efficiency.some((v) => v !== null);
  lineChart(chartFigure("chart-value"), {
    title: measured ? "Efficiency against the physical limit (last minute)" : "Replicas up and batch slots busy",
    xs,
    xFormat: view.xFormat,
    yMax: 1,
    yFormat: pct,
    series: [
      { name: "replicas up", values: sr.availability, color: COLORS[4] },
      { name: "slots busy", values: sr.utilization, color: COLORS[0] },
      ...(measured
        ? [
            { name: "at the roofline", values: sr.atRoofline, color: COLORS[3] },
            { name: "efficiency", values: sr.efficiency, color: COLORS[2] },
          ]
        : []),
    ],
  });

  const ttftBuckets = view.ttft || { boundsS: [], counts: [] };
  barChart(chartFigure("chart-ttft"), {
    title: "TTFT distribution (requests per bucket)",
    labels: ttftBuckets.boundsS.map(bucketLabel).concat(ttftBuckets.boundsS.length > 0 ? [">"] : []),
    values: ttftBuckets.counts,
    color: COLORS[0],
    empty: view.ttft ? "no requests yet" : "no requests.csv beside report.json",
  });
  if (sr.p99TtftS) {
    lineChart(chartFigure("chart-p99"), { title: "p99 TTFT (last minute)", xs, xFormat: view.xFormat, yFormat: seconds, series: [{ name: "p99 TTFT", values: sr.p99TtftS, color: COLORS[1] }] });
  } else {
    const p = view.ttftPercentiles || {};
    barChart(chartFigure("chart-p99"), {
      title: "TTFT percentiles",
      labels: ["p50", "p90", "p99", "max"],
      values: [p.p50, p.p90, p.p99, p.max].map((v) => (v === null || v === undefined ? NaN : v / 1000)),
      color: COLORS[1],
      yFormat: seconds,
    });
  }
  const names = shortNames(view.replicas.map((r) => r.id));
  barChart(chartFigure("chart-replicas"), {
    title: `${view.mode === "live" ? "Per-replica load (running / slots)" : "Per-replica utilisation (busy time)"}${names.prefix ? ` · ${names.prefix}…` : ""}`,
    labels: names.rest,
    titles: view.replicas.map((r) => r.id),
    values: view.replicas.map((r) => r.load),
    colors: view.replicas.map((r) => (r.health === "unhealthy" ? "#d23c3c" : r.health === "degraded" ? "#d98f12" : COLORS[0])),
    yMax: 1,
    yFormat: pct,
    empty: "idle",
  });
}

function bar(cls, share) {
  const fill = h("div", { class: `fill ${cls}` });
  fill.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;
  return h("div", { class: "bar" }, fill);
}

function row(label, barEl, value) {
  return h("div", { class: "row" }, h("span", { class: "k", text: label }), barEl, h("span", { class: "v", text: value }));
}

/** Islands: replicas grouped by hardware, each card with health, load, KV and tokens/s. */
function renderFleet(view) {
  const groups = new Map();
  for (const r of view.replicas) {
    const key = r.hardware;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  const maxRate = Math.max(1e-9, ...view.replicas.map((r) => r.tokensPerS || 0));
  const up = view.replicas.filter((r) => r.health === "healthy" || r.health === "degraded").length;
  setText("fleet-summary", `· ${up} of ${view.replicas.length} replicas up · ${groups.size} hardware group${groups.size === 1 ? "" : "s"}`);
  const sections = [];
  for (const [hardware, replicas] of groups) {
    const models = [...new Set(replicas.map((r) => r.model))].join(", ");
    const cards = replicas.map((r) =>
      h(
        "article",
        { class: "replica", "data-replica": r.id, "data-state": r.state, "data-health": r.health },
        h("div", { class: "name" }, h("span", { text: r.id }), h("span", { class: "badge", text: r.state })),
        h("div", { class: "meta", text: `${r.model} · ${r.engine}${r.island ? ` · ${r.island}` : ""}` }),
        row(view.mode === "live" ? "load" : "busy", bar("", r.load), r.loadText),
        view.mode === "live" ? row("queue", bar("queue", r.queueShare), String(r.queued)) : null,
        row("KV", bar("kv", r.kv), r.kv === null || r.kv === undefined ? "—" : pct(r.kv)),
        row("tokens/s", bar("", (r.tokensPerS || 0) / maxRate), num(r.tokensPerS)),
        r.efficiency === null || r.efficiency === undefined ? null : row("efficiency", bar("", r.efficiency), pct(r.efficiency)),
        h("div", { class: "meta", text: `${num(r.completed)} done${r.failovers ? ` · ${r.failovers} ${view.mode === "live" ? "failovers" : "failures"}` : ""}${r.continuations ? ` · ${r.continuations} continuations` : ""}` }),
      ),
    );
    sections.push(
      h(
        "section",
        { class: "island", "data-hardware": hardware },
        h("h3", {}, `${hardware} `, h("span", { class: "muted", text: `· ${replicas.length} replica${replicas.length === 1 ? "" : "s"} · ${models}` })),
        h("div", { class: "replicas" }, ...cards),
      ),
    );
  }
  document.getElementById("fleet").replaceChildren(...sections);
}

const BATCH_FINISHED = new Set(["completed", "failed", "expired", "cancelled"]);

/** The Batch API's newest batches, every tenant's (live only; null where the server keeps no batches: no panel). */
function renderBatches(batches) {
  const panel = document.getElementById("batches-panel");
  panel.hidden = batches === null;
  if (batches === null) return;
  const open = batches.filter((b) => !BATCH_FINISHED.has(b.status)).length;
  setText("batches-summary", batches.length === 0 ? "· none yet" : `· ${batches.length} recent · ${open} in progress`);
  const el = document.getElementById("batches");
  if (batches.length === 0) {
    el.replaceChildren(h("div", { class: "empty-note", text: "No batches yet: POST /v1/batches runs a file of requests in the fleet's idle slots." }));
    return;
  }
  const head = h("tr", {}, ...["batch", "tenant", "status", "endpoint", "progress", "completed", "failed", "created"].map((t) => h("th", { text: t, class: t === "completed" || t === "failed" ? "num" : null })));
  el.replaceChildren(h("table", {}, h("thead", {}, head), h("tbody", {}, ...batches.map(batchRow))));
}

/** A share of a bar, from `start` (0 to 1) on. */
function segment(cls, start, share) {
  const fill = h("div", { class: `fill ${cls}` });
  fill.style.left = `${Math.max(0, Math.min(1, start)) * 100}%`;
  fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
  return fill;
}

/** One batch: its lines done of all (completed, then failed, cancelled and expired in red), and when it was created. */
function batchRow(b) {
  const share = (n) => (b.total > 0 ? n / b.total : 0);
  const track = h("div", { class: "bar" }, segment("", 0, share(b.completed)), segment("bad", share(b.completed), share(b.done - b.completed)));
  const detail = `${b.pending} pending · ${b.running} running · ${b.completed} completed · ${b.failed} failed · ${b.cancelled} cancelled · ${b.expired} expired`;
  return h(
    "tr",
    { "data-batch": b.id, "data-status": b.status },
    h("td", { class: "id", text: b.id }),
    h("td", { text: b.tenant }),
    h("td", {}, h("span", { class: "badge", text: b.status })),
    h("td", { text: b.endpoint }),
    h("td", { class: "progress", title: detail }, h("div", { class: "row" }, track, h("span", { class: "v done", text: `${count(b.done)}/${count(b.total)} · ${pct(share(b.done))}` }))),
    h("td", { class: "num completed", text: count(b.completed) }),
    h("td", { class: "num failed", text: count(b.failed) }),
    h("td", { text: Number.isFinite(b.createdAt) ? new Date(b.createdAt).toISOString().replace(/\.\d+Z$/, "Z") : "—" }),
  );
}

// ---------------------------------------------------------------- data sources

let source = null;
let history = [];
let snapshot = null;
let sims = [];

function setConnection(state, text) {
  const el = document.getElementById("connection");
  el.dataset.connection = state;
  el.textContent = text;
}

function renderNav(active) {
  const nav = document.getElementById("nav");
  const links = [h("a", { href: "#live", "data-view": "live", text: "Live fleet" })];
  for (const sim of sims) links.push(h("a", { href: `#sim/${sim.index}`, "data-view": `sim/${sim.index}`, text: `Sim: ${sim.name}` }));
  for (const a of links) if (a.dataset.view === active) a.classList.add("active");
  nav.replaceChildren(...links);
}

function stopLive() {
  if (source !== null) source.close();
  source = null;
}

async function showLive() {
  stopLive();
  const res = await fetch("/ui/api/live");
  const live = await res.json();
  sims = live.sims || [];
  renderNav("live");
  history = live.history.slice(-HISTORY_POINTS);
  snapshot = live;
  render(fromLive(snapshot, history));
  source = new EventSource("/ui/api/events");
  source.onopen = () => setConnection("live", "live");
  source.onerror = () => setConnection("lost", "reconnecting…");
  source.onmessage = (event) => {
    snapshot = JSON.parse(event.data);
    if (snapshot.point) {
      history.push(snapshot.point);
      if (history.length > HISTORY_POINTS) history.shift();
    }
    window.requestAnimationFrame(() => render(fromLive(snapshot, history)));
  };
}

async function showSim(index) {
  stopLive();
  if (sims.length === 0) {
    const list = await (await fetch("/ui/api/sim")).json();
    sims = list.data;
  }
  renderNav(`sim/${index}`);
  const res = await fetch(`/ui/api/sim/${index}`);
  const data = await res.json();
  if (!res.ok) {
    setConnection("lost", "report unreadable");
    setText("title", "Sim report");
    setText("subtitle", data.error ? data.error.message : `HTTP ${res.status}`);
    return;
  }
  setConnection("report", "sim report");
  render(fromSim(data.name, data));
}

function route() {
  const m = /^#sim\/(\d+)$/.exec(location.hash);
  const shown = m ? showSim(Number(m[1])) : showLive();
  shown.catch((err) => {
    setConnection("lost", "error");
    setText("subtitle", String(err));
  });
}

window.addEventListener("hashchange", route);
route();
