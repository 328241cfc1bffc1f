/**
 * The chaos benches' client: streams one request and judges the answer
 * against the one right answer, byte for byte, and the percentile report.
 */

/** What a right answer is: its text, how it ends, and how many tokens it is billed. */
export interface RightAnswer {
  readonly text: string;
  readonly finishReason: string;
  readonly completionTokens: number;
}

export type Verdict = "exact" | "wrong" | "error" | "hung";

export interface Outcome {
  readonly verdict: Verdict;
  /** For errors: the HTTP status, or "event" for an error event mid-stream, or "network". */
  readonly status?: string;
  readonly why?: string;
  /** performance.now() when it was sent. */
  readonly startedAt: number;
  readonly ms: number;
  readonly attempts: number;
  readonly continuations: number;
  readonly text: string;
  /** As received, where the stream was whole enough to tell. */
  readonly finishReason?: string;
  readonly completionTokens?: number;
}

interface Parsed {
  text: string;
  finishes: string[];
  usage: { completion_tokens: number }[];
  error: string | undefined;
  done: boolean;
  servedBy: { attempts: number; continuations: number };
}

type Chunk = {
  error?: { code?: string; message?: string };
  choices?: { delta?: { content?: string }; text?: string; finish_reason?: string | null }[];
  usage?: { completion_tokens: number };
  x_flotilla?: { attempts: number; continuations: number };
};

/** Reads an SSE body without throwing: a data line that is not JSON is itself a wrong answer. */
function parse(raw: string): Parsed | string {
  const p: Parsed = { text: "", finishes: [], usage: [], error: undefined, done: false, servedBy: { attempts: 0, continuations: 0 } };
  for (const event of raw.split("\n\n")) {
    if (event === "") continue;
    if (!event.startsWith("data: ")) return `not an SSE data event: ${JSON.stringify(event.slice(0, 60))}`;
    if (p.done) return "data after [DONE]";
    const data = event.slice(6);
    if (data === "[DONE]") {
      p.done = true;
      continue;
    }
    let chunk: Chunk;
    try {
      chunk = JSON.parse(data) as Chunk;
    } catch {
      return `not JSON: ${JSON.stringify(data.slice(0, 60))}`;
    }
    if (chunk.error !== undefined) p.error = chunk.error.code ?? chunk.error.message ?? "error";
    const choice = chunk.choices?.[0];
    p.text += choice?.delta?.content ?? choice?.text ?? "";
    if (choice?.finish_reason != null) p.finishes.push(choice.finish_reason);
    if (chunk.usage != null) p.usage.push(chunk.usage);
    if (chunk.x_flotilla !== undefined) p.servedBy = chunk.x_flotilla;
  }
  return p;
}

/** Why `p` is not `right`, or undefined when it is exactly right. */
function difference(p: Parsed, right: RightAnswer | undefined): string | undefined {
  if (!p.done) return "no [DONE]";
  if (p.finishes.length !== 1) return `${p.finishes.length} finish reasons`;
  if (p.usage.length !== 1) return `${p.usage.length} usage chunks`;
  if (right === undefined) return undefined;
  if (p.text !== right.text) {
    const at = [...p.text].findIndex((c, i) => c !== [...right.text][i]);
    return `text differs at character ${at < 0 ? Math.min(p.text.length, right.text.length) : at} (${p.text.length} vs ${right.text.length} UTF-16 units)`;
  }
  if (p.finishes[0] !== right.finishReason) return `finish_reason ${p.finishes[0]}, not ${right.finishReason}`;
  if (p.usage[0]!.completion_tokens !== right.completionTokens) return `completion_tokens ${p.usage[0]!.completion_tokens}, not ${right.completionTokens}`;
  return undefined;
}

/** One streaming request through the gateway, judged. `hungMs` bounds the whole answer. */
export async function streamChecked(url: string, body: Record<string, unknown>, right: RightAnswer | undefined, hungMs: number): Promise<Outcome> {
  const t = performance.now();
  const path = "messages" in body ? "/v1/chat/completions" : "/v1/completions";
  const signal = AbortSignal.timeout(hungMs);
  const none = { attempts: 0, continuations: 0, text: "" };
  const startedAt = t;
  let raw: string;
  let status: number;
  try {
    const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });
    status = res.status;
    raw = await res.text();
  } catch (err) {
    const ms = performance.now() - t;
    if (signal.aborted) return { verdict: "hung", why: `no whole answer within ${hungMs} ms`, startedAt, ms, ...none };
    return { verdict: "error", status: "network", why: (err as Error).message, startedAt, ms, ...none };
  }
  const ms = performance.now() - t;
  if (status !== 200) return { verdict: "error", status: String(status), why: raw.slice(0, 160), startedAt, ms, ...none };
  const p = parse(raw);
  if (typeof p === "string") return { verdict: "wrong", why: p, startedAt, ms, ...none };
  const served = {
    attempts: p.servedBy.attempts,
    continuations: p.servedBy.continuations,
    text: p.text,
    ...(p.finishes.length === 1 ? { finishReason: p.finishes[0]! } : {}),
    ...(p.usage.length === 1 ? { completionTokens: p.usage[0]!.completion_tokens } : {}),
  };
  if (p.error !== undefined) return { verdict: "error", status: "event", why: `error event ${p.error}`, startedAt, ms, ...served };
  const why = difference(p, right);
  return why === undefined ? { verdict: "exact", startedAt, ms, ...served } : { verdict: "wrong", why, startedAt, ms, ...served };
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export interface Summary {
  readonly sent: number;
  readonly exact: number;
  readonly wrong: number;
  readonly errors: string;
  readonly hung: number;
  /** Answers that moved to another replica before their first token. */
  readonly failovers: number;
  readonly continuations: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function summarize(outcomes: readonly Outcome[]): Summary {
  const byStatus = new Map<string, number>();
  for (const o of outcomes) if (o.verdict === "error") byStatus.set(o.status ?? "?", (byStatus.get(o.status ?? "?") ?? 0) + 1);
  const exact = outcomes.filter((o) => o.verdict === "exact");
  const ms = outcomes.filter((o) => o.verdict !== "hung").map((o) => o.ms);
  return {
    sent: outcomes.length,
    exact: exact.length,
    wrong: outcomes.filter((o) => o.verdict === "wrong").length,
    errors: byStatus.size === 0 ? "0" : [...byStatus].map(([s, n]) => `${n} × ${s}`).join(", "),
    hung: outcomes.filter((o) => o.verdict === "hung").length,
    failovers: exact.filter((o) => o.attempts > 1 && o.continuations === 0).length,
    continuations: exact.filter((o) => o.continuations > 0).length,
    // Latency of every request that ended (a failed one included: its wait was real), not of the hung.
    p50: quantile(ms, 0.5),
    p99: quantile(ms, 0.99),
    max: ms.length === 0 ? NaN : Math.max(...ms),
  };
}

export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cell = (v: string | number): string => (typeof v === "number" ? (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–") : v);
  return [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`)].join("\n");
}
