/**
 * Cost of one routing decision at 100, 1,000 and 10,000 replicas: candidate
 * generation + filters + scorers + pick, for least-loaded, power-of-two and
 * prefix-aware, with the prefix index populated by Mooncake-like traffic;
 * and the cost of PrefixIndex.record / match on their own.
 *
 *   node --import tsx bench/routing-decision.ts [--sizes 100,1000,10000] [--decisions 20000] [--rounds 3] [--per-replica 40] [--capacity 512] [--trace PATH]
 *
 * Traffic: the Mooncake conversation trace (../shared/data/traces), its
 * chains replayed in copies so that every replica serves about
 * `--per-replica` requests before measuring (block ids referenced by 50 or
 * more requests, the shared system prompts, stay shared across copies; the
 * others are renamed per copy); synthetic chains of the same shape when the
 * trace is missing. Each replica's index capacity is `--capacity` blocks
 * (512 blocks of 512 tokens: a 256k-token KV cache). Each policy runs
 * `--rounds` rounds of `--decisions` timed decisions, interleaved with the
 * other policies, after a warm-up; the table shows the median over rounds
 * of each round's p50 and p99, so one noisy round (a busy shared machine)
 * does not decide the figure. Prints Markdown.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CandidateSelector } from "../src/scheduler/candidates.js";
import { route, type Candidate, type Policy, type RouteRequest } from "../src/scheduler/pipeline.js";
import { leastLoaded, powerOfTwoPolicy, prefixAwarePolicy } from "../src/scheduler/policies.js";
import { PrefixIndex } from "../src/scheduler/prefix-index.js";
import { DEFAULT_SAMPLE_SIZE, sampleCandidates } from "../src/scheduler/sample.js";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const sizes = (arg("sizes") ?? "100,1000,10000").split(",").map(Number);
const decisions = Number(arg("decisions") ?? 20_000);
const rounds = Number(arg("rounds") ?? 3);
const perReplica = Number(arg("per-replica") ?? 40);
const capacity = Number(arg("capacity") ?? 512);
const here = dirname(fileURLToPath(import.meta.url));
const tracePath = arg("trace") ?? resolve(here, "../../shared/data/traces/mooncake_conversation.jsonl");

function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Block chains of the trace (or synthetic ones of its shape). */
function baseChains(): { chains: number[][]; source: string } {
  if (existsSync(tracePath)) {
    const chains = readFileSync(tracePath, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => (JSON.parse(l) as { hash_ids: number[] }).hash_ids);
    return { chains, source: "Mooncake conversation trace" };
  }
  const random = lcg(7);
  const chains: number[][] = [];
  let next = 100;
  const convs: number[][] = [];
  for (let i = 0; i < 12_000; i++) {
    // a new conversation (system prompt 0, then its own blocks) or the next turn of one
    const prev = convs.length > 0 && random() < 0.4 ? convs[Math.floor(random() * convs.length)]! : undefined;
    const chain = prev === undefined ? [0] : prev.slice();
    const add = 2 + Math.floor(random() * random() * 40);
    for (let j = 0; j < add; j++) chain.push(next++);
    convs.push(chain);
    chains.push(chain);
  }
  return { chains, source: "synthetic Mooncake-like chains (trace not found)" };
}

const { chains: base, source } = baseChains();
const refs = new Map<number, number>();
for (const c of base) for (const h of c) refs.set(h, (refs.get(h) ?? 0) + 1);
let maxId = 0;
for (const h of refs.keys()) if (h > maxId) maxId = h;
/** Chain i of the endless replay: copy ⌊i / base⌋ renames the unshared ids. */
function chainAt(i: number, out: number[]): number[] {
  const c = base[i % base.length]!;
  const copy = Math.floor(i / base.length);
  out.length = c.length;
  for (let j = 0; j < c.length; j++) {
    const h = c[j]!;
    out[j] = copy === 0 || refs.get(h)! >= 50 ? h : h + copy * (maxId + 1);
  }
  return out;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

type Mutable = { -readonly [K in keyof Candidate]: Candidate[K] };

interface Row {
  replicas: number;
  policy: string;
  candidates: number;
  p50: number;
  p99: number;
  mean: number;
}

const rows: Row[] = [];
const indexRows: { replicas: number; entries: number; blocks: number; mib: number; recordP50: number; recordP99: number; matchP50: number; matchP99: number; populateS: number }[] = [];

for (const n of sizes) {
  const random = lcg(n);
  // Fleet state the router reads, in flat arrays as the simulator keeps it.
  const active = new Int32Array(n);
  const queued = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    active[r] = Math.floor(random() * 64);
    queued[r] = random() < 0.2 ? Math.floor(random() * 8) : 0;
  }
  const index = new PrefixIndex({ defaultCapacityBlocks: capacity });
  const selector = new CandidateSelector({ sample: DEFAULT_SAMPLE_SIZE, prefixLimit: Number(arg("prefix-limit") ?? 8) });
  const pool: Mutable[] = [];
  for (let j = 0; j < selector.capacity; j++) pool.push({ index: 0, ready: true, active: 0, queued: 0, slots: 64, maxQueue: 16, contextSize: 131_072, prefixBlocks: 0 });
  const views: Candidate[][] = [];
  for (let m = 0; m <= selector.capacity; m++) views.push(pool.slice(0, m));
  const picked = new Int32Array(DEFAULT_SAMPLE_SIZE);
  const scratch: number[] = [];

  // Populate: route `perReplica` × n requests prefix-aware and record them.
  let cursor = 0;
  const t0 = performance.now();
  const populate = perReplica * n;
  for (let i = 0; i < populate; i++) {
    const chain = chainAt(cursor++, scratch);
    // Follow a long prefix (a conversation's next turn) to its replica; anything else lands at random.
    const m = selector.select(n, random, chain, index);
    const best = selector.prefixBlocks[0]! * 2 >= chain.length ? selector.indices[0]! : selector.indices[Math.floor(random() * m)]!;
    index.record(best, chain);
  }
  const populateS = (performance.now() - t0) / 1000;

  // Index costs alone.
  const rec = new Float64Array(decisions);
  const mat = new Float64Array(decisions);
  const outR = new Int32Array(8);
  const outC = new Int32Array(8);
  for (let i = -Math.min(5000, decisions); i < decisions; i++) {
    const chain = chainAt(cursor++, scratch);
    if (i < 0) {
      index.match(chain, outR, outC, 8);
      index.record(Math.floor(random() * n), chain);
      continue;
    }
    const a = process.hrtime.bigint();
    index.match(chain, outR, outC, 8);
    const b = process.hrtime.bigint();
    index.record(Math.floor(random() * n), chain);
    const c = process.hrtime.bigint();
    mat[i] = Number(b - a) / 1000;
    rec[i] = Number(c - b) / 1000;
  }
  rec.sort();
  mat.sort();
  indexRows.push({
    replicas: n,
    entries: index.entryCount,
    blocks: index.blockCount,
    mib: index.memoryBytes / 2 ** 20,
    recordP50: quantile(rec, 0.5),
    recordP99: quantile(rec, 0.99),
    matchP50: quantile(mat, 0.5),
    matchP99: quantile(mat, 0.99),
    populateS,
  });

  // Decisions.
  const fill = (j: number, r: number, prefix: number): void => {
    const c = pool[j]!;
    c.index = r;
    c.ready = true;
    c.active = active[r]!;
    c.queued = queued[r]!;
    c.prefixBlocks = prefix;
  };
  const runs: { policy: Policy; prefix: boolean; p50: number[]; p99: number[]; mean: number[]; cands: number }[] = [
    { policy: leastLoaded, prefix: false, p50: [], p99: [], mean: [], cands: 0 },
    { policy: powerOfTwoPolicy, prefix: false, p50: [], p99: [], mean: [], cands: 0 },
    { policy: prefixAwarePolicy, prefix: true, p50: [], p99: [], mean: [], cands: 0 },
  ];
  const times = new Float64Array(decisions);
  for (let round = 0; round < rounds; round++) {
    for (const run of runs) {
      const { policy, prefix } = run;
      let cands = 0;
      const warmup = round === 0 ? Math.min(5000, decisions) : 0;
      for (let i = -warmup; i < decisions; i++) {
        const chain = chainAt(cursor++, scratch);
        const request: RouteRequest = { promptTokens: chain.length * 512, maxTokens: 256, blocks: chain, blockTokens: 512 };
        const a = process.hrtime.bigint();
        let m: number;
        if (prefix) {
          m = selector.select(n, random, chain, index);
          for (let j = 0; j < m; j++) fill(j, selector.indices[j]!, selector.prefixBlocks[j]!);
        } else {
          m = sampleCandidates(n, DEFAULT_SAMPLE_SIZE, random, picked);
          for (let j = 0; j < m; j++) fill(j, picked[j]!, 0);
        }
        const out = route(policy, request, views[m]!, random);
        const b = process.hrtime.bigint();
        if (i >= 0) {
          times[i] = Number(b - a) / 1000;
          cands += m;
        }
        // the world moves on: the chosen replica gets the work (and, prefix-aware, the prefix), another finishes some
        if (out.ok) {
          active[out.index]!++;
          if (prefix) index.record(out.index, chain);
        }
        const done = Math.floor(random() * n);
        if (active[done]! > 0) active[done]!--;
      }
      times.sort();
      let sum = 0;
      for (const t of times) sum += t;
      run.p50.push(quantile(times, 0.5));
      run.p99.push(quantile(times, 0.99));
      run.mean.push(sum / decisions);
      run.cands += cands / decisions / rounds;
    }
  }
  const median = (xs: number[]): number => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  for (const run of runs) rows.push({ replicas: n, policy: run.policy.name, candidates: run.cands, p50: median(run.p50), p99: median(run.p99), mean: median(run.mean) });
}

const f = (x: number, d = 1): string => x.toFixed(d);
console.log(`Routing decision cost (${source}; median of ${rounds} rounds of ${decisions} decisions per row; index capacity ${capacity} blocks per replica, ~${perReplica} requests recorded per replica first; Node ${process.version})\n`);
console.log("| replicas | policy | candidates | p50 µs | p99 µs | mean µs |");
console.log("|---:|---|---:|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.replicas.toLocaleString("en-US")} | ${r.policy} | ${f(r.candidates)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.mean, 2)} |`);
console.log("\nPrefix index alone (match: top 8 holders of a trace chain; record: one chain on one replica)\n");
console.log("| replicas | entries | distinct blocks | memory MiB | populate s | match p50 µs | match p99 µs | record p50 µs | record p99 µs |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of indexRows) {
  console.log(
    `| ${r.replicas.toLocaleString("en-US")} | ${r.entries.toLocaleString("en-US")} | ${r.blocks.toLocaleString("en-US")} | ${f(r.mib)} | ${f(r.populateS, 2)} | ${f(r.matchP50, 2)} | ${f(r.matchP99, 2)} | ${f(r.recordP50, 2)} | ${f(r.recordP99, 2)} |`,
  );
}
