import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GgmlType, readGgufFileInfo } from "node-llama-cpp";
import {
  BYTE_VOCAB_SIZE,
  DEFAULT_TINY_SHAPE,
  FULL_SIZE_SHAPES,
  randomLlamaFileSize,
  randomLlamaGguf,
  SplitMix32,
  writeRandomLlama,
} from "../../src/gguf/random-llama.js";
import { encodeGguf, planGguf } from "../../src/gguf/writer.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "flotilla-random-llama-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("random llama", () => {
  test("same seed gives byte-identical files; another seed changes the weights only", async () => {
    const a = join(dir, "a.gguf");
    const b = join(dir, "b.gguf");
    await writeRandomLlama(a, DEFAULT_TINY_SHAPE, { seed: 7 });
    await writeRandomLlama(b, DEFAULT_TINY_SHAPE, { seed: 7 });
    const bytesA = await readFile(a);
    assert.deepEqual(bytesA, await readFile(b));

    const other = encodeGguf(randomLlamaGguf(DEFAULT_TINY_SHAPE, { seed: 8 }));
    assert.equal(other.length, bytesA.length);
    assert.notDeepEqual(other, bytesA);
    const { dataOffset } = planGguf(randomLlamaGguf(DEFAULT_TINY_SHAPE));
    assert.deepEqual(other.subarray(0, dataOffset), bytesA.subarray(0, dataOffset));
    // A spec's lazy tensors restart at element 0, so encoding the same spec twice is stable too.
    const spec = randomLlamaGguf(DEFAULT_TINY_SHAPE, { seed: 7 });
    assert.deepEqual(encodeGguf(spec), bytesA);
    assert.deepEqual(encodeGguf(spec), bytesA);
  });

  test("the tiny default shape is under 1 MB and its size is known without writing", async () => {
    const path = join(dir, "tiny.gguf");
    const layout = await writeRandomLlama(path, DEFAULT_TINY_SHAPE);
    assert.equal((await stat(path)).size, layout.totalSize);
    assert.equal(randomLlamaFileSize(DEFAULT_TINY_SHAPE), layout.totalSize);
    assert.ok(layout.totalSize < 1_000_000, `${layout.totalSize} bytes`);
  });

  test("metadata, vocabulary and tensor shapes read back as a llama", async () => {
    const shape = { ...DEFAULT_TINY_SHAPE, layers: 3, kvHeads: 1 };
    const path = join(dir, "shape.gguf");
    await writeRandomLlama(path, shape, { type: "q8_0", name: "shape-check" });
    const info = await readGgufFileInfo(path, { logWarnings: false });
    const md = info.metadata;
    assert.equal(md.general.architecture, "llama");
    assert.equal(md.general.name, "shape-check");
    assert.equal(md.general.file_type, 7);
    assert.deepEqual(
      { ...info.architectureMetadata, rope: { ...info.architectureMetadata.rope }, attention: { ...info.architectureMetadata.attention } },
      {
        vocab_size: 259, context_length: 4096, embedding_length: 64, block_count: 3, feed_forward_length: 256,
        attention: { head_count: 4, head_count_kv: 1, layer_norm_rms_epsilon: Math.fround(1e-5) },
        rope: { dimension_count: 16, freq_base: 10000 },
      },
    );
    const tok = md.tokenizer.ggml;
    assert.equal(tok.model, "gpt2");
    assert.equal(tok.pre, "default");
    assert.deepEqual(tok.merges, []);
    assert.equal(tok.tokens.length, BYTE_VOCAB_SIZE);
    assert.deepEqual(tok.tokens.slice(0, 3), ["<unk>", "<s>", "</s>"]);
    assert.deepEqual(tok.token_type?.slice(0, 4), [2, 3, 3, 1]);
    assert.ok(tok.token_type?.slice(3).every((t) => t === 1));
    // GPT-2 byte map: '!' is itself; space, newline and 0xAD move to U+0100 onwards.
    assert.equal(tok.tokens[3 + 0x21], "!");
    assert.equal(tok.tokens[3 + 0x20], "Ġ");
    assert.equal(tok.tokens[3 + 0x0a], "Ċ");
    assert.equal(tok.tokens[3 + 0xad], "Ń");
    assert.equal(new Set(tok.tokens).size, BYTE_VOCAB_SIZE);
    assert.deepEqual([tok.bos_token_id, tok.eos_token_id, tok.unknown_token_id], [1, 2, 0]);

    const dims = new Map(info.tensorInfo?.map((t) => [t.name, { dims: t.dimensions, type: t.ggmlType }]));
    assert.equal(dims.size, 3 + 9 * 3);
    assert.deepEqual(dims.get("token_embd.weight"), { dims: [64, 259], type: GgmlType.Q8_0 });
    assert.deepEqual(dims.get("output.weight"), { dims: [64, 259], type: GgmlType.Q8_0 });
    assert.deepEqual(dims.get("output_norm.weight"), { dims: [64], type: GgmlType.F32 });
    assert.deepEqual(dims.get("blk.2.attn_norm.weight"), { dims: [64], type: GgmlType.F32 });
    assert.deepEqual(dims.get("blk.2.attn_q.weight")?.dims, [64, 64]);
    assert.deepEqual(dims.get("blk.2.attn_k.weight")?.dims, [64, 16]);
    assert.deepEqual(dims.get("blk.2.attn_v.weight")?.dims, [64, 16]);
    assert.deepEqual(dims.get("blk.2.attn_output.weight")?.dims, [64, 64]);
    assert.deepEqual(dims.get("blk.2.ffn_gate.weight")?.dims, [64, 256]);
    assert.deepEqual(dims.get("blk.2.ffn_up.weight")?.dims, [64, 256]);
    assert.deepEqual(dims.get("blk.2.ffn_down.weight")?.dims, [256, 64]);
  });

  test("vocabPadTo adds unused tokens and widens the embedding and output layers", () => {
    const spec = randomLlamaGguf(DEFAULT_TINY_SHAPE, { vocabPadTo: 1000 });
    const tokens = spec.metadata["tokenizer.ggml.tokens"];
    assert.ok(tokens?.type === "array" && tokens.itemType === "string");
    assert.equal(tokens.items.length, 1000);
    const types = spec.metadata["tokenizer.ggml.token_type"];
    assert.ok(types?.type === "array");
    assert.equal(types.items[999], 5);
    assert.deepEqual(spec.tensors.find((t) => t.name === "output.weight")?.dims, [64, 1000]);
    assert.throws(() => randomLlamaGguf(DEFAULT_TINY_SHAPE, { vocabPadTo: 100 }), RangeError);
  });

  test("full-size shapes plan real parameter counts without generating weights", () => {
    // Llama 3.1 8B with its real 128,256-token vocabulary has 8,030,261,248 parameters.
    const shape = FULL_SIZE_SHAPES["llama-3.1-8b"];
    const layout = planGguf(randomLlamaGguf(shape, { type: "q8_0", vocabPadTo: shape.realVocabSize }));
    assert.equal(layout.tensors.reduce((n, t) => n + t.elements, 0), 8_030_261_248);
    assert.equal(layout.tensors.length, 3 + 9 * 32);
    const gb = layout.totalSize / 1e9;
    assert.ok(gb > 8.5 && gb < 8.6, `${gb} GB as q8_0`);
  });

  test("rejects shapes llama.cpp cannot run", () => {
    assert.throws(() => randomLlamaGguf({ ...DEFAULT_TINY_SHAPE, heads: 5 }), RangeError);
    assert.throws(() => randomLlamaGguf({ ...DEFAULT_TINY_SHAPE, kvHeads: 3 }), RangeError);
    assert.throws(() => randomLlamaGguf({ ...DEFAULT_TINY_SHAPE, hidden: 48, heads: 3 }, { type: "q8_0" }), RangeError);
    assert.throws(() => randomLlamaGguf(DEFAULT_TINY_SHAPE, { seed: -1 }), RangeError);
  });

  test("SplitMix32 is deterministic, seed-dependent and uniform-ish in [-1, 1)", () => {
    const a = new SplitMix32(42);
    const b = new SplitMix32(42);
    const c = new SplitMix32(43);
    const xs = Array.from({ length: 10_000 }, () => a.nextSigned());
    assert.deepEqual(xs, Array.from({ length: 10_000 }, () => b.nextSigned()));
    assert.notEqual(xs[0], c.nextSigned());
    assert.ok(xs.every((x) => x >= -1 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
    assert.ok(xs.filter((x) => x > 0.9).length > 300, "reaches the tails");
    // The bulk fill is the same stream as one draw at a time (it only avoids a call per value).
    const bulk = new Float32Array(10_000);
    new SplitMix32(42).fillUniform(bulk, 0.5);
    assert.deepEqual(bulk, Float32Array.from(xs, (x) => 0.5 * x));
  });
});
