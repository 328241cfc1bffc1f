/**
 * Charts as SVG text, written by hand: line charts, bar charts and
 * histograms with axes, ticks, labels and legends. Self-contained files (a
 * generic font family, no scripts, no external references) that any browser
 * or Markdown viewer shows.
 */
import type { SimReport } from "./report.js";
import { percentile, requestLatencies } from "./report.js";
import type { SimResult } from "./simulator.js";

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"] as const;

const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** About `count` round tick values covering [min, max] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    if (max === 0) return [0, 1];
    const pad = Math.abs(max) * 0.5;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const start = Math.floor(min / step + 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start; v <= max + step * 1e-9 || ticks.length < 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

/** Compact tick label: 1.5k, 20M, 0.25. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  return trim(v);
}

function trim(v: number): string {
  return Number(v.toPrecision(3)).toString();
}

interface Frame {
  readonly width: number;
  readonly height: number;
}

function open(f: Frame, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" ${FONT} font-size="12">
<title>${escapeXml(title)}</title>
<rect width="100%" height="100%" fill="#ffffff"/>
`;
}

/** A plot area at (x, y) of size (w, h) with linear axes. */
interface Plot {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
  readonly xMin: number;
  readonly xMax: number;
  readonly yMin: number;
  readonly yMax: number;
}

const px = (p: Plot, v: number): number => p.x + ((v - p.xMin) / (p.xMax - p.xMin || 1)) * p.w;
const py = (p: Plot, v: number): number => p.y + p.h - ((v - p.yMin) / (p.yMax - p.yMin || 1)) * p.h;
const r1 = (v: number): string => (Math.round(v * 10) / 10).toString();

function axes(p: Plot, xTicks: readonly number[], yTicks: readonly number[], xLabel: string, yLabel: string, xFormat: (v: number) => string = formatTick): string {
  const out: string[] = [];
  out.push(`<g stroke="#e5e5e5" stroke-width="1">`);
  for (const t of yTicks) out.push(`<line x1="${r1(p.x)}" y1="${r1(py(p, t))}" x2="${r1(p.x + p.w)}" y2="${r1(py(p, t))}"/>`);
  out.push(`</g>`);
  out.push(`<g stroke="#333" stroke-width="1"><line x1="${r1(p.x)}" y1="${r1(p.y + p.h)}" x2="${r1(p.x + p.w)}" y2="${r1(p.y + p.h)}"/><line x1="${r1(p.x)}" y1="${r1(p.y)}" x2="${r1(p.x)}" y2="${r1(p.y + p.h)}"/></g>`);
  out.push(`<g fill="#333" font-size="11">`);
  for (const t of xTicks) {
    const x = px(p, t);
    out.push(`<line x1="${r1(x)}" y1="${r1(p.y + p.h)}" x2="${r1(x)}" y2="${r1(p.y + p.h + 4)}" stroke="#333"/><text x="${r1(x)}" y="${r1(p.y + p.h + 16)}" text-anchor="middle">${escapeXml(xFormat(t))}</text>`);
  }
  for (const t of yTicks) {
    const y = py(p, t);
    out.push(`<line x1="${r1(p.x - 4)}" y1="${r1(y)}" x2="${r1(p.x)}" y2="${r1(y)}" stroke="#333"/><text x="${r1(p.x - 7)}" y="${r1(y + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  }
  out.push(`</g>`);
  out.push(`<text x="${r1(p.x + p.w / 2)}" y="${r1(p.y + p.h + 34)}" text-anchor="middle" fill="#333">${escapeXml(xLabel)}</text>`);
  out.push(`<text transform="translate(${r1(p.x - 48)} ${r1(p.y + p.h / 2)}) rotate(-90)" text-anchor="middle" fill="#333">${escapeXml(yLabel)}</text>`);
  return out.join("\n");
}

function legend(x: number, y: number, entries: readonly { name: string; color: string }[]): string {
  let at = x;
  const out: string[] = [];
  for (const e of entries) {
    out.push(`<rect x="${r1(at)}" y="${r1(y - 9)}" width="12" height="10" fill="${e.color}"/><text x="${r1(at + 16)}" y="${r1(y)}" fill="#333" font-size="11">${escapeXml(e.name)}</text>`);
    at += 28 + e.name.length * 6.5;
  }
  return out.join("");
}

function heading(x: number, y: number, title: string, subtitle?: string): string {
  return `<text x="${x}" y="${y}" font-size="15" font-weight="600" fill="#111">${escapeXml(title)}</text>${subtitle === undefined ? "" : `<text x="${x}" y="${y + 17}" font-size="11" fill="#666">${escapeXml(subtitle)}</text>`}`;
}

export interface Series {
  readonly name: string;
  readonly x: ArrayLike<number>;
  readonly y: ArrayLike<number>;
  readonly color?: string;
}

export interface LineChartOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  /** Start the y axis at 0 (default true). */
  readonly yFromZero?: boolean;
  /** Draw as steps (values hold until the next point) rather than straight segments. */
  readonly steps?: boolean;
}

/** Plot body of a line chart inside `area`; returns the markup. */
function linePlot(o: LineChartOptions, area: { x: number; y: number; w: number; h: number }): string {
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = o.yFromZero === false ? Infinity : 0;
  let yMax = -Infinity;
  for (const s of o.series) {
    for (let i = 0; i < s.x.length; i++) {
      const xv = s.x[i]!;
      const yv = s.y[i]!;
      if (!Number.isFinite(xv) || !Number.isFinite(yv)) continue;
      xMin = Math.min(xMin, xv);
      xMax = Math.max(xMax, xv);
      yMin = Math.min(yMin, yv);
      yMax = Math.max(yMax, yv);
    }
  }
  if (xMin === Infinity) {
    xMin = 0;
    xMax = 1;
  }
  if (yMax === -Infinity) yMax = 1;
  if (yMin === Infinity) yMin = 0;
  const xt = niceTicks(xMin, xMax, 6);
  const yt = niceTicks(yMin, yMax, 5);
  const p: Plot = { ...area, xMin: xt[0]!, xMax: xt[xt.length - 1]!, yMin: yt[0]!, yMax: yt[yt.length - 1]! };
  const out = [axes(p, xt, yt, o.xLabel, o.yLabel)];
  o.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length]!;
    const pts: string[] = [];
    for (let i = 0; i < s.x.length; i++) {
      const xv = s.x[i]!;
      const yv = s.y[i]!;
      if (!Number.isFinite(xv) || !Number.isFinite(yv)) continue;
      if (o.steps === true && pts.length > 0) pts.push(`${r1(px(p, xv))},${pts[pts.length - 1]!.split(",")[1]}`);
      pts.push(`${r1(px(p, xv))},${r1(py(p, yv))}`);
    }
    if (pts.length > 0) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" stroke-linejoin="round" points="${pts.join(" ")}"/>`);
  });
  if (o.series.length > 1) out.push(legend(area.x + 8, area.y - 6, o.series.map((s, k) => ({ name: s.name, color: s.color ?? PALETTE[k % PALETTE.length]! }))));
  return out.join("\n");
}

export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 360;
  const top = o.subtitle === undefined ? 48 : 62;
  return `${open({ width, height }, o.title)}${heading(16, 24, o.title, o.subtitle)}\n${linePlot(o, { x: 72, y: top, w: width - 96, h: height - top - 52 })}\n</svg>\n`;
}

/** Several line charts stacked in one image, sharing its width. */
export function stackedLineCharts(title: string, subtitle: string | undefined, charts: readonly LineChartOptions[], width = 760, panelHeight = 250): string {
  const top = subtitle === undefined ? 40 : 54;
  const height = top + charts.length * panelHeight;
  const parts = [open({ width, height }, title), heading(16, 24, title, subtitle)];
  charts.forEach((c, i) => {
    const y0 = top + i * panelHeight;
    parts.push(`<text x="72" y="${y0 + 16}" font-size="13" font-weight="600" fill="#222">${escapeXml(c.title)}</text>`);
    parts.push(linePlot(c, { x: 72, y: y0 + 34, w: width - 96, h: panelHeight - 34 - 52 }));
  });
  parts.push("</svg>\n");
  return parts.join("\n");
}

export interface BarChartOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly labels: readonly string[];
  readonly values: readonly number[];
  /** Per bar, the name its tooltip gives (default: its label), for labels shortened to fit. */
  readonly titles?: readonly string[];
  readonly width?: number;
  readonly height?: number;
  readonly color?: string;
  /** Upper end of the y axis (default: from the data). */
  readonly yMax?: number;
}

/** Estimated width of a character at font-size 11 (as rowChart assumes), and the space kept between labels. */
const CHAR_W_11 = 6.2;
const LABEL_GAP = 8;

/** One bar per label; labels thinned out so they never overlap. */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 360;
  const top = o.subtitle === undefined ? 48 : 62;
  const area = { x: 72, y: top, w: width - 96, h: height - top - 52 };
  const n = o.values.length;
  const yt = niceTicks(0, Math.max(o.yMax ?? 0, ...o.values.filter(Number.isFinite), 0) || 1, 5);
  const p: Plot = { ...area, xMin: 0, xMax: Math.max(n, 1), yMin: 0, yMax: yt[yt.length - 1]! };
  const out = [open({ width, height }, o.title), heading(16, 24, o.title, o.subtitle), axes(p, [], yt, o.xLabel, o.yLabel)];
  const slot = area.w / Math.max(n, 1);
  const bar = Math.max(1, slot * 0.8);
  // Show every k-th label, k = the widest label's estimated width over the
  // slot width: shown labels are then at least a label's width apart, so they
  // cannot overlap whatever the count or the names.
  let widest = 1;
  for (let i = 0; i < n; i++) widest = Math.max(widest, (o.labels[i] ?? String(i)).length);
  const every = Math.max(1, Math.ceil((CHAR_W_11 * widest + LABEL_GAP) / slot));
  const color = o.color ?? PALETTE[0];
  out.push(`<g fill="${color}">`);
  for (let i = 0; i < n; i++) {
    const v = Number.isFinite(o.values[i]!) ? o.values[i]! : 0;
    const y = py(p, v);
    out.push(`<rect x="${r1(area.x + i * slot + (slot - bar) / 2)}" y="${r1(y)}" width="${r1(bar)}" height="${r1(area.y + area.h - y)}"><title>${escapeXml(`${o.titles?.[i] ?? o.labels[i] ?? i}: ${formatTick(v)}`)}</title></rect>`);
  }
  out.push(`</g><g fill="#333" font-size="11" text-anchor="middle">`);
  for (let i = 0; i < n; i += every) {
    const label = o.labels[i] ?? String(i);
    // Centred under its bar, but kept inside the image: the last label of a crowded axis would hang off its edge.
    const half = (CHAR_W_11 * label.length) / 2;
    const x = Math.min(width - 2 - half, Math.max(half + 2, area.x + (i + 0.5) * slot));
    out.push(`<text x="${r1(x)}" y="${r1(area.y + area.h + 16)}">${escapeXml(label)}</text>`);
  }
  out.push(`</g>\n</svg>\n`);
  return out.join("\n");
}

export interface RowChartOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly labels: readonly string[];
  readonly values: readonly number[];
  readonly width?: number;
  /** Per row, an index into PALETTE (default 0): groups rows by colour. */
  readonly colors?: readonly number[];
}

/**
 * One horizontal bar per row, its label on the left and its value at its
 * end: for many long labels, which a column chart would have to thin out.
 */
export function rowChart(o: RowChartOptions): string {
  const width = o.width ?? 760;
  const n = o.values.length;
  const rowH = 20;
  const top = o.subtitle === undefined ? 48 : 62;
  // ~6.2 px per character at 11 px; labels longer than the cap are rare in practice.
  const labelW = Math.min(360, 12 + 6.2 * Math.max(0, ...o.labels.map((l) => l.length)));
  const area = { x: 16 + labelW, y: top, w: width - labelW - 16 - 56, h: rowH * Math.max(n, 1) };
  const xt = niceTicks(0, Math.max(0, ...o.values.filter(Number.isFinite)) || 1, 5);
  const p: Plot = { ...area, xMin: 0, xMax: xt[xt.length - 1]!, yMin: 0, yMax: 1 };
  const out = [open({ width, height: top + area.h + 48 }, o.title), heading(16, 24, o.title, o.subtitle), axes(p, xt, [], o.xLabel, "")];
  out.push(`<g font-size="11">`);
  for (let i = 0; i < n; i++) {
    const v = Number.isFinite(o.values[i]!) ? o.values[i]! : 0;
    const y = area.y + i * rowH;
    const end = px(p, v);
    out.push(
      `<text x="${r1(area.x - 6)}" y="${r1(y + rowH / 2 + 4)}" text-anchor="end" fill="#333">${escapeXml(o.labels[i] ?? String(i))}</text>` +
        `<rect x="${r1(area.x)}" y="${r1(y + 3)}" width="${r1(end - area.x)}" height="${rowH - 6}" fill="${PALETTE[(o.colors?.[i] ?? 0) % PALETTE.length]}"/>` +
        `<text x="${r1(end + 4)}" y="${r1(y + rowH / 2 + 4)}" fill="#333">${escapeXml(formatTick(v))}</text>`,
    );
  }
  out.push(`</g>\n</svg>\n`);
  return out.join("\n");
}

export interface HistogramOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly values: ArrayLike<number>;
  readonly bins?: number;
  /** Values above are counted in the last bin's note, not drawn (default: the 99th percentile x 1.1). */
  readonly clipAt?: number;
  /** Vertical marker (an SLO), drawn when inside the range. */
  readonly marker?: { readonly at: number; readonly label: string };
  readonly width?: number;
  readonly height?: number;
}

/** Histogram (bars, left axis: count) with its cumulative distribution (line, right axis: %). */
export function histogram(o: HistogramOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 380;
  const sorted = Float64Array.from(o.values).sort();
  const n = sorted.length;
  const top = 62;
  const area = { x: 72, y: top, w: width - 140, h: height - top - 52 };
  if (n === 0) {
    return `${open({ width, height }, o.title)}${heading(16, 24, o.title, "no data")}\n</svg>\n`;
  }
  const hi = o.clipAt ?? Math.max(percentile(sorted, 0.99) * 1.1, sorted[0]! + 1e-9);
  const lo = Math.min(0, sorted[0]!);
  const xt = niceTicks(lo, hi, 6);
  const xMax = xt[xt.length - 1]!;
  const bins = o.bins ?? 40;
  const counts = new Array<number>(bins).fill(0);
  let over = 0;
  for (let i = 0; i < n; i++) {
    const v = sorted[i]!;
    if (v > xMax) {
      over++;
      continue;
    }
    counts[Math.min(bins - 1, Math.floor(((v - xt[0]!) / (xMax - xt[0]!)) * bins))]!++;
  }
  const yt = niceTicks(0, Math.max(...counts, 1), 5);
  const p: Plot = { ...area, xMin: xt[0]!, xMax, yMin: 0, yMax: yt[yt.length - 1]! };
  const note = `${n.toLocaleString("en-US")} values${over > 0 ? `; ${over.toLocaleString("en-US")} above ${formatTick(xMax)} not drawn` : ""}`;
  const out = [open({ width, height }, o.title), heading(16, 24, o.title, o.subtitle === undefined ? note : `${o.subtitle}; ${note}`), axes(p, xt, yt, o.xLabel, "requests")];
  const bw = area.w / bins;
  out.push(`<g fill="${PALETTE[0]}" fill-opacity="0.75">`);
  counts.forEach((c, i) => {
    const y = py(p, c);
    if (c > 0) out.push(`<rect x="${r1(area.x + i * bw + 0.5)}" y="${r1(y)}" width="${r1(Math.max(0.5, bw - 1))}" height="${r1(area.y + area.h - y)}"/>`);
  });
  out.push(`</g>`);
  // CDF on a right-hand axis, 0-100 %.
  const pts: string[] = [];
  const steps = 200;
  let j = 0;
  for (let s = 0; s <= steps; s++) {
    const v = xt[0]! + ((xMax - xt[0]!) * s) / steps;
    while (j < n && sorted[j]! <= v) j++;
    pts.push(`${r1(px(p, v))},${r1(area.y + area.h - (j / n) * area.h)}`);
  }
  out.push(`<polyline fill="none" stroke="${PALETTE[1]}" stroke-width="1.8" points="${pts.join(" ")}"/>`);
  out.push(`<g fill="#333" font-size="11"><line x1="${r1(area.x + area.w)}" y1="${r1(area.y)}" x2="${r1(area.x + area.w)}" y2="${r1(area.y + area.h)}" stroke="#333"/>`);
  for (const pct of [0, 25, 50, 75, 100]) {
    const y = area.y + area.h - (pct / 100) * area.h;
    out.push(`<line x1="${r1(area.x + area.w)}" y1="${r1(y)}" x2="${r1(area.x + area.w + 4)}" y2="${r1(y)}" stroke="#333"/><text x="${r1(area.x + area.w + 7)}" y="${r1(y + 4)}">${pct}%</text>`);
  }
  out.push(`</g><text transform="translate(${r1(area.x + area.w + 50)} ${r1(area.y + area.h / 2)}) rotate(90)" text-anchor="middle" fill="${PALETTE[1]}">cumulative share</text>`);
  if (o.marker !== undefined && o.marker.at >= xt[0]! && o.marker.at <= xMax) {
    const x = px(p, o.marker.at);
    out.push(`<line x1="${r1(x)}" y1="${r1(area.y)}" x2="${r1(x)}" y2="${r1(area.y + area.h)}" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="5 4"/><text x="${r1(x + 4)}" y="${r1(area.y + 12)}" fill="#2ca02c" font-size="11">${escapeXml(o.marker.label)}</text>`);
  }
  out.push(legend(area.x + 8, area.y - 6, [{ name: "requests per bin", color: PALETTE[0] }, { name: "cumulative share", color: PALETTE[1] }]));
  out.push("</svg>\n");
  return out.join("\n");
}

// ---------------------------------------------------------------------------
// the simulator's three charts

/** Seconds, minutes or hours, whichever reads best for a span. */
function timeUnit(spanS: number): { div: number; name: string } {
  if (spanS >= 3 * 3600) return { div: 3600, name: "h" };
  if (spanS >= 180) return { div: 60, name: "min" };
  return { div: 1, name: "s" };
}

export function ttftChart(result: SimResult): string {
  const { ttft } = requestLatencies(result);
  const slo = result.fleet.slo.ttftMs;
  return histogram({
    title: "Time to first token",
    subtitle: `${result.trace.name}; ${result.policy}`,
    xLabel: "TTFT (ms)",
    values: ttft,
    marker: { at: slo, label: `SLO ${formatTick(slo)} ms` },
  });
}

export function timelineChart(report: SimReport): string {
  const tl = report.timeline;
  const unit = timeUnit(tl.queued.length * tl.bucketS);
  const x = tl.queued.map((_, i) => (i * tl.bucketS) / unit.div);
  const xLabel = `simulated time (${unit.name})`;
  const charts: LineChartOptions[] = [
    { title: "Throughput", xLabel, yLabel: "tokens/s", series: [{ name: "output tokens/s", x, y: tl.outputTokensPerS }] },
    {
      title: "Queue and batch",
      xLabel,
      yLabel: "requests",
      series: [
        { name: "waiting", x, y: tl.queued },
        { name: "running", x, y: tl.running },
      ],
    },
  ];
  if (tl.down.some((d) => d > 0)) charts.push({ title: "Replicas down", xLabel, yLabel: "replicas", series: [{ name: "down", x, y: tl.down, color: PALETTE[1] }], steps: true });
  return stackedLineCharts("Throughput and queue over time", `${report.trace.name}; ${report.fleet.replicas} replicas; bucket ${formatTick(tl.bucketS)} s`, charts);
}

/**
 * The start all names share, cut back to just after a separator (so
 * "island/10".."island/15" keeps "10".."15" whole), and what is left of each
 * name: short axis labels for one island's replicas. No prefix when a name
 * would be left empty or there is a single name.
 */
export function sharedPrefix(names: readonly string[]): { prefix: string; rest: string[] } {
  const first = names[0] ?? "";
  let len = names.length < 2 ? 0 : first.length;
  for (const name of names) {
    let i = 0;
    while (i < len && name[i] === first[i]) i++;
    len = i;
  }
  while (len > 0 && /[\p{L}\p{N}]/u.test(first[len - 1]!)) len--;
  if (len === 0 || names.some((name) => name.length === len)) return { prefix: "", rest: [...names] };
  return { prefix: first.slice(0, len), rest: names.map((name) => name.slice(len)) };
}

export function replicasChart(report: SimReport): string {
  const reps = report.replicas;
  if (reps.length <= 64) {
    const names = reps.map((r) => r.name);
    const { prefix, rest } = sharedPrefix(names);
    return barChart({
      title: "Load per replica",
      subtitle: `share of up-time spent running passes; ${report.policy}`,
      xLabel: prefix === "" ? "replica" : `replica (${prefix}…)`,
      yLabel: "utilization (%)",
      labels: rest,
      titles: names,
      values: reps.map((r) => r.utilization * 100),
      yMax: 100,
    });
  }
  const bins = 20;
  const counts = new Array<number>(bins).fill(0);
  for (const r of reps) counts[Math.min(bins - 1, Math.floor(r.utilization * bins))]!++;
  return barChart({
    title: "Load per replica",
    subtitle: `${reps.length.toLocaleString("en-US")} replicas by utilization (share of up-time running passes); ${report.policy}`,
    xLabel: "utilization (%)",
    yLabel: "replicas",
    labels: counts.map((_, i) => `${(i * 100) / bins}`),
    values: counts,
  });
}

/** The three charts, by file name. */
export function renderCharts(result: SimResult, report: SimReport): Record<"ttft.svg" | "timeline.svg" | "replicas.svg", string> {
  return { "ttft.svg": ttftChart(result), "timeline.svg": timelineChart(report), "replicas.svg": replicasChart(report) };
}
