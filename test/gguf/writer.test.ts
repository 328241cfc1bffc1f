import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GgmlType, readGgufFileInfo } from "node-llama-cpp";
import {
  encodeGguf,
  float32ToFloat16Bits,
  kv,
  planGguf,
  writeGguf,
  type GgufFile,
  type TensorFill,
} from "../../src/gguf/writer.js";

// Independent little helpers for the hand-built expected bytes.
const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const f32s = (...vs: number[]): Buffer => Buffer.concat(vs.map((v) => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return b;
}));
const str = (s: string): Buffer => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
const zeros = (n: number): Buffer => Buffer.alloc(n);

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "flotilla-gguf-writer-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("GGUF layout", () => {
  const file: GgufFile = {
    metadata: {
      "general.name": kv.string("tiny"),
      "x.list": kv.numbers("uint16", [1, 2, 3]),
    },
    tensors: [
      { name: "a", dims: [3], type: "f32", values: new Float32Array([1, 2, 3]) },
      { name: "b", dims: [2, 1], type: "f16", values: new Float32Array([1, -2]) },
    ],
  };

  test("bytes match a hand-computed layout", () => {
    // Header 24 B; KV "general.name" 20+4+12 = 36 → 60; KV "x.list" 14+4+(4+8+6) = 36 → 96;
    // tensor info "a" 9+4+8+4+8 = 33 → 129; "b" 9+4+16+4+8 = 41 → 170; data at align(170, 32) = 192.
    // Tensor a: 12 B padded to 32 (offset 0); b: 4 B at offset 32, padded to 32; file 256 B.
    const expected = Buffer.concat([
      Buffer.from("GGUF"), u32(3), u64(2), u64(2),
      str("general.name"), u32(8), str("tiny"),
      str("x.list"), u32(9), u32(2), u64(3), u16(1), u16(2), u16(3),
      str("a"), u32(1), u64(3), u32(0), u64(0),
      str("b"), u32(2), u64(2), u64(1), u32(1), u64(32),
      zeros(192 - 170),
      f32s(1, 2, 3), zeros(32 - 12),
      u16(0x3c00), u16(0xc000), zeros(32 - 4),
    ]);
    assert.equal(expected.length, 256);
    const actual = encodeGguf(file);
    assert.deepEqual(actual, expected);

    const layout = planGguf(file);
    assert.equal(layout.infoSize, 170);
    assert.equal(layout.dataOffset, 192);
    assert.deepEqual(layout.tensors.map((t) => [t.offset, t.byteLength]), [[0, 12], [32, 4]]);
    assert.equal(layout.totalSize, 256);
  });

  test("a non-default alignment is written as general.alignment and pads every tensor to it", async () => {
    const path = join(dir, "align64.gguf");
    const layout = await writeGguf(path, { ...file, alignment: 64 });
    assert.equal(layout.dataOffset % 64, 0);
    assert.deepEqual(layout.tensors.map((t) => t.offset), [0, 64]);
    assert.equal(layout.totalSize, layout.dataOffset + 128);

    const info = await readGgufFileInfo(path, { logWarnings: false });
    assert.equal(info.metadata.general.alignment, 64);
    assert.equal(info.infoEndOffset, layout.dataOffset);
    const bytes = await readFile(path);
    assert.equal(bytes.length, layout.totalSize);
    const b = info.tensorInfo?.[1];
    assert.ok(b);
    assert.equal(bytes.readUInt16LE(Number(b.fileOffset) + 2), 0xc000);
  });

  test("rejects what llama.cpp would reject, before touching the file", async () => {
    const path = join(dir, "keep.gguf");
    await writeFile(path, "precious");
    const bad: GgufFile[] = [
      { metadata: { "general.alignment": kv.uint32(32) }, tensors: [] },
      { metadata: {}, tensors: [], alignment: 12 },
      { metadata: { "x.v": kv.uint8(256) }, tensors: [] },
      { metadata: { "x.v": kv.int32(1.5) }, tensors: [] },
      { metadata: { "x.v": kv.uint64(-1) }, tensors: [] },
      { metadata: {}, tensors: [{ name: "q", dims: [16], type: "q8_0", values: new Float32Array(16) }] },
      { metadata: {}, tensors: [{ name: "z", dims: [2, 0], type: "f32", values: new Float32Array(0) }] },
      { metadata: {}, tensors: [{ name: "n", dims: [4], type: "f32", values: new Float32Array(3) }] },
      { metadata: {}, tensors: [{ name: "x".repeat(64), dims: [1], type: "f32", values: new Float32Array(1) }] },
      {
        metadata: {},
        tensors: [
          { name: "d", dims: [1], type: "f32", values: new Float32Array(1) },
          { name: "d", dims: [1], type: "f32", values: new Float32Array(1) },
        ],
      },
    ];
    for (const spec of bad) await assert.rejects(writeGguf(path, spec));
    assert.equal(await readFile(path, "utf8"), "precious");
  });
});

describe("metadata and tensors read back with node-llama-cpp's GGUF reader", () => {
  test("every value type, and the tensor infos", async () => {
    const path = join(dir, "types.gguf");
    const values = Float32Array.from({ length: 96 }, (_, i) => i / 8 - 6);
    await writeGguf(path, {
      metadata: {
        "general.architecture": kv.string("llama"),
        "test.u8": kv.uint8(255),
        "test.i8": kv.int8(-128),
        "test.u16": kv.uint16(65535),
        "test.i16": kv.int16(-32768),
        "test.u32": kv.uint32(4294967295),
        "test.i32": kv.int32(-2147483648),
        "test.f32": kv.float32(-2.25),
        "test.f64": kv.float64(Math.PI),
        "test.bool": kv.bool(true),
        "test.str": kv.string("héllo ✓"),
        "test.u64": kv.uint64(2n ** 64n - 1n),
        "test.i64": kv.int64(-(2n ** 63n)),
        "test.strings": kv.strings(["a", "", "✓"]),
        "test.i32s": kv.numbers("int32", [1, -2, 3]),
        "test.f32s": kv.numbers("float32", new Float32Array([0.5, -1.5])),
        "test.bools": kv.bools([true, false]),
        "test.empty": kv.strings([]),
      },
      tensors: [
        { name: "m.f32", dims: [32, 3], type: "f32", values },
        { name: "m.f16", dims: [32, 3], type: "f16", values },
        { name: "m.q8", dims: [32, 3], type: "q8_0", values },
      ],
    });
    const info = await readGgufFileInfo(path, { logWarnings: false });
    assert.equal(info.version, 3);
    assert.equal(info.tensorCount, 3);
    const t = (info.metadata as unknown as { test: Record<string, unknown> }).test;
    assert.deepEqual(
      { ...t },
      {
        u8: 255, i8: -128, u16: 65535, i16: -32768, u32: 4294967295, i32: -2147483648,
        f32: -2.25, f64: Math.PI, bool: true, str: "héllo ✓",
        u64: 2n ** 64n - 1n, i64: -(2n ** 63n),
        strings: ["a", "", "✓"], i32s: [1, -2, 3], f32s: [0.5, -1.5], bools: [true, false], empty: [],
      },
    );
    assert.deepEqual(
      info.tensorInfo?.map((x) => ({ name: x.name, dims: x.dimensions, type: x.ggmlType, offset: x.offset })),
      [
        { name: "m.f32", dims: [32, 3], type: GgmlType.F32, offset: 0 },
        { name: "m.f16", dims: [32, 3], type: GgmlType.F16, offset: 384 },
        { name: "m.q8", dims: [32, 3], type: GgmlType.Q8_0, offset: 384 + 192 },
      ],
    );
    // The f32 data sits where the reader says it does.
    const bytes = await readFile(path);
    const at = Number(info.tensorInfo?.[0]?.fileOffset);
    assert.deepEqual(new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + 384)), values);
  });
});

describe("tensor encodings", () => {
  test("f16 rounds to nearest even and handles the edges", () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [1 / 3, 0x3555],
      [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
    ];
    for (const [value, bits] of cases) assert.equal(float32ToFloat16Bits(value), bits, `f16(${value})`);
    assert.equal(float32ToFloat16Bits(NaN) & 0x7c00, 0x7c00);
    assert.notEqual(float32ToFloat16Bits(NaN) & 0x3ff, 0);
  });

  test("q8_0: an f16 scale of max|x|/127, then round(x/scale) half away from zero", () => {
    const values = new Float32Array(32);
    values[0] = 127;
    values[1] = -127;
    values[2] = 2.5;
    values[3] = -2.5;
    values[4] = 0.4;
    const block = encodeGguf({ metadata: {}, tensors: [{ name: "q", dims: [32], type: "q8_0", values }] }).subarray(-64, -30);
    assert.equal(block.readUInt16LE(0), 0x3c00); // scale 1.0
    assert.deepEqual([...new Int8Array(block.buffer, block.byteOffset + 2, 5)], [127, -127, 3, -3, 0]);
    // An all-zero block has scale 0 and zero quants (no division by zero).
    const zero = encodeGguf({ metadata: {}, tensors: [{ name: "z", dims: [32], type: "q8_0", values: new Float32Array(32) }] });
    assert.ok(zero.subarray(-64, -30).every((b) => b === 0));
  });

  test("fill callbacks stream chunk by chunk, in order, and write the same bytes as in memory", async () => {
    const elements = 3 * 2 ** 20 + 64; // more than three chunks
    const starts: number[] = [];
    let filled = 0;
    const fill: TensorFill = (out, start) => {
      if (start === 0) starts.length = 0;
      starts.push(start);
      for (let i = 0; i < out.length; i++) out[i] = Math.sin(start + i);
      filled += out.length;
    };
    const spec: GgufFile = { metadata: {}, tensors: [{ name: "big", dims: [64, elements / 64], type: "q8_0", values: fill }] };
    const path = join(dir, "big.gguf");
    const layout = await writeGguf(path, spec);
    assert.deepEqual(starts, [0, 2 ** 20, 2 ** 21, 3 * 2 ** 20]);
    assert.equal(filled, elements);
    const onDisk = await readFile(path);
    assert.equal(onDisk.length, layout.totalSize);
    assert.deepEqual(onDisk, encodeGguf(spec));
  });
});
