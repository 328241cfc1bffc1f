import { test } from "node:test";
import assert from "node:assert/strict";
import { Command, CommanderError } from "commander";
import {
  formatCatalog,
  formatComparison,
  formatEstimate,
  num,
  registerHardwareCommands,
  renderTable,
  runEstimate,
} from "../../src/cli/hardware-commands.js";
import { estimate } from "../../src/hardware/index.js";
import { LLAMA2_ABSENT, LLAMA2_TINY_MODEL as TINY_MODEL } from "../helpers.js";

function program(): { cmd: Command; out: () => string; err: () => string } {
  let out = "";
  let err = "";
  const cmd = new Command("flotilla");
  cmd.exitOverride();
  cmd.configureOutput({ writeOut: (s) => void (out += s), writeErr: (s) => void (err += s) });
  registerHardwareCommands(cmd);
  for (const sub of cmd.commands) {
    sub.exitOverride();
    sub.configureOutput({ writeOut: (s) => void (out += s), writeErr: (s) => void (err += s) });
  }
  return { cmd, out: () => out, err: () => err };
}

test("number formatting and table rendering", () => {
  assert.equal(num(1234.5), "1,235");
  assert.equal(num(123.4), "123");
  assert.equal(num(12.34), "12.3");
  assert.equal(num(1.234), "1.23");
  assert.equal(num(0.01234), "0.0123");
  assert.equal(num(Infinity), "inf");
  assert.equal(renderTable(["a", "bb"], [["1", "2"], ["333", "4"]], new Set([1])), "a    bb\n---  --\n1     2\n333   4");
});

test("formatEstimate names every figure the issue asks for", () => {
  const e = estimate({ model: "llama-3.1-70b", hardware: "h100", tp: 2, precision: "fp8", inputTokens: 1000, outputTokens: 1000, batch: 64 });
  const text = formatEstimate(e);
  for (const label of ["TTFT, request alone", "TTFT, batch prefilled together", "time per output token", "per device", "tokens/J", "/Mtok", "KV capacity"]) {
    assert.ok(text.includes(label), label);
  }
  assert.ok(text.startsWith("llama-3.1-70b on h100 x2"));
});

test("a comparison puts one hardware per line and says what does not fit", () => {
  const rows = runEstimate({ model: "llama-3.1-70b", hw: "h100,h200,lpddr-chip", precision: "fp8", input: 1000, output: 1000, batch: 64 });
  assert.deepEqual(rows.map((r) => r.hardware), ["h100", "h200", "lpddr-chip"]);
  assert.equal(rows[0]?.estimate?.tp, 2); // 64 sequences of 2,000 tokens do not fit next to 70 GB on one H100
  assert.equal(rows[1]?.estimate?.tp, 1);
  const lines = formatComparison(rows).split("\n");
  assert.ok(lines.some((l) => l.startsWith("h200")));
  const big = runEstimate({ model: "llama-3.1-405b", hw: "a100,h200", precision: "bf16", input: 1000, output: 1000 });
  assert.match(big[0]?.problem ?? "", /does not fit within 8 devices/);
  assert.ok(formatComparison(big).split("\n").some((l) => l.startsWith("a100") && l.includes("does not fit")));
});

test("flotilla estimate prints a report, a comparison, or JSON", async () => {
  const a = program();
  await a.cmd.parseAsync(["estimate", "--model", "llama-3.1-70b", "--hw", "h100", "--tp", "2", "--precision", "fp8", "--input", "1000", "--output", "1000", "--batch", "64"], { from: "user" });
  assert.ok(a.out().includes("time per output token"));

  const b = program();
  await b.cmd.parseAsync(["estimate", "-m", "llama-3.1-8b", "--hw", "h100,h200,lpddr-chip", "--batch", "8"], { from: "user" });
  assert.ok(b.out().includes("lpddr-chip") && b.out().includes("TPOT ms"));

  const c = program();
  await c.cmd.parseAsync(["estimate", "-m", "qwen3-30b-a3b", "--hw", "b200", "-p", "fp4", "--json"], { from: "user" });
  const parsed = JSON.parse(c.out()) as { model: string; tokensPerS: number; usdPerMTok: number };
  assert.equal(parsed.model, "qwen3-30b-a3b");
  assert.ok(parsed.tokensPerS > 0 && parsed.usdPerMTok > 0);
});

test("flotilla estimate --gguf takes the shape and precision from a real file (read by node-llama-cpp)", { skip: LLAMA2_ABSENT }, async () => {
  const p = program();
  await p.cmd.parseAsync(["estimate", "--gguf", TINY_MODEL, "--hw", "cpu-epyc-9175f", "--batch", "1", "--json"], { from: "user" });
  const e = JSON.parse(p.out()) as { model: string; precision: string; tokensPerS: number; kvBytesPerToken: number; weightsGiBPerDevice: number };
  assert.equal(e.model, "llama-v2"); // general.name "LLaMA v2"
  assert.equal(e.precision, "f16"); // general.file_type 1
  // 1 layer, hidden 8, 2 heads of 4, 2 KV heads: 2 x 2 x 4 x 1 layer x 2 B = 32 B of KV per token
  assert.equal(e.kvBytesPerToken, 32);
  // 32,000 x 8 x 2 tables + 1 layer x (4 x 8 x 8 + 3 x 8 x 32) = 512,000 + 1,024 params x 2 B
  assert.ok(Math.abs(e.weightsGiBPerDevice * 1024 ** 3 - 513_024 * 2) < 1e-3);
  assert.ok(e.tokensPerS > 0);
  const q = program();
  await assert.rejects(q.cmd.parseAsync(["estimate", "--hw", "h100"], { from: "user" }), (err: unknown) => err instanceof CommanderError && err.exitCode === 2);
});

test("unknown names exit with code 2 and list the known ones", async () => {
  for (const args of [
    ["estimate", "--model", "llama-9", "--hw", "h100"],
    ["estimate", "--model", "llama-3.1-8b", "--hw", "h100,h900"],
    ["estimate", "--model", "llama-3.1-8b", "--hw", "h100", "--precision", "int3"],
  ]) {
    const p = program();
    await assert.rejects(p.cmd.parseAsync(args, { from: "user" }), (e: unknown) => e instanceof CommanderError && e.exitCode === 2);
    assert.ok(/known: /.test(p.err()), p.err());
  }
});

test("flotilla catalog lists hardware, models and precisions", async () => {
  const text = formatCatalog();
  for (const id of ["h100", "ironwood", "lpddr-chip", "cpu-epyc-9175f", "deepseek-v3", "qwen3-30b-a3b", "q4_k_m"]) assert.ok(text.includes(id), id);
  const p = program();
  await p.cmd.parseAsync(["catalog", "--json"], { from: "user" });
  const parsed = JSON.parse(p.out()) as { hardware: unknown[]; models: unknown[]; precisions: unknown[] };
  assert.ok(parsed.hardware.length >= 11 && parsed.models.length >= 8 && parsed.precisions.length >= 4);
});
