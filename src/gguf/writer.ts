/**
 * A small GGUF v3 writer.
 *
 * Layout of a GGUF file (all integers little-endian):
 *
 *   magic "GGUF" | version u32 = 3 | tensor count u64 | metadata KV count u64
 *   metadata KVs:  key (string) | value type u32 | value
 *   tensor infos:  name (string) | n_dims u32 | dims u64 × n_dims | ggml type u32 | offset u64
 *   zero padding up to `general.alignment` (32 unless the metadata says otherwise)
 *   tensor data:   each tensor's bytes, each padded to the alignment
 *
 * A string is a u64 byte length then UTF-8 bytes (no terminator); an array is an
 * element type u32, a u64 count, then the elements. Tensor offsets are relative
 * to the start of the data section, and llama.cpp insists that they are exactly
 * the running sum of the padded tensor sizes, in order.
 *
 * The header is small and built in memory. Tensor data can be many GB, so it is
 * produced chunk by chunk from a fill callback and streamed to a file handle:
 * memory stays at one chunk however large the model.
 */
import { open, type FileHandle } from "node:fs/promises";
import { endianness } from "node:os";

// ---------------------------------------------------------------------------
// Types

/** GGUF metadata value type ids, as the spec numbers them. */
export const GgufValueTypeId = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

/** Number-valued element types that fit a JS number exactly (or, for floats, as closely as the type allows). */
export type GgufNumberType = "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32" | "float32" | "float64";
/** 64-bit integer types: a number is accepted up to 2^53, a bigint beyond. */
export type GgufBigIntType = "uint64" | "int64";

export type GgufValue =
  | { readonly type: GgufNumberType; readonly value: number }
  | { readonly type: GgufBigIntType; readonly value: number | bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly itemType: "string"; readonly items: readonly string[] }
  | { readonly type: "array"; readonly itemType: "bool"; readonly items: readonly boolean[] }
  | { readonly type: "array"; readonly itemType: GgufNumberType; readonly items: ArrayLike<number> }
  | { readonly type: "array"; readonly itemType: GgufBigIntType; readonly items: readonly (number | bigint)[] };

/** Metadata in file order. Object keys keep insertion order for dotted GGUF names. */
export type GgufMetadata = Readonly<Record<string, GgufValue>>;

/**
 * Shorthand constructors, so metadata reads like `{ "llama.block_count": kv.uint32(32) }`
 * and the GGUF type of every number is explicit (llama.cpp rejects a key of the wrong type).
 */
export const kv = {
  uint8: (value: number): GgufValue => ({ type: "uint8", value }),
  int8: (value: number): GgufValue => ({ type: "int8", value }),
  uint16: (value: number): GgufValue => ({ type: "uint16", value }),
  int16: (value: number): GgufValue => ({ type: "int16", value }),
  uint32: (value: number): GgufValue => ({ type: "uint32", value }),
  int32: (value: number): GgufValue => ({ type: "int32", value }),
  float32: (value: number): GgufValue => ({ type: "float32", value }),
  float64: (value: number): GgufValue => ({ type: "float64", value }),
  uint64: (value: number | bigint): GgufValue => ({ type: "uint64", value }),
  int64: (value: number | bigint): GgufValue => ({ type: "int64", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  string: (value: string): GgufValue => ({ type: "string", value }),
  strings: (items: readonly string[]): GgufValue => ({ type: "array", itemType: "string", items }),
  bools: (items: readonly boolean[]): GgufValue => ({ type: "array", itemType: "bool", items }),
  numbers: (itemType: GgufNumberType, items: ArrayLike<number>): GgufValue => ({ type: "array", itemType, items }),
  bigints: (itemType: GgufBigIntType, items: readonly (number | bigint)[]): GgufValue => ({ type: "array", itemType, items }),
};

/** Tensor storage types this writer can encode. */
export type GgmlTensorType = "f32" | "f16" | "q8_0";

/** ggml's numeric ids for the tensor types above. */
export const GgmlTypeId: Readonly<Record<GgmlTensorType, number>> = { f32: 0, f16: 1, q8_0: 8 };

/** Q8_0 packs 32 weights per block: one f16 scale, then 32 int8. */
export const Q8_0_BLOCK_ELEMENTS = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK_ELEMENTS;

/**
 * Fills `out` with the tensor's values starting at flat element index `start`
 * (ggml order: dims[0] varies fastest). Called in increasing `start` order,
 * so a sequential PRNG may ignore `start`; a stateless source may use it.
 */
export type TensorFill = (out: Float32Array, start: number) => void;

export interface GgufTensor {
  readonly name: string;
  /** ggml order: the fastest-varying dimension first (a [rows × cols] matrix is [cols, rows]). */
  readonly dims: readonly number[];
  readonly type: GgmlTensorType;
  /** All values at once (small tensors), or a callback that fills them chunk by chunk. */
  readonly values: Float32Array | TensorFill;
}

export interface GgufFile {
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensor[];
  /** Data alignment in bytes; default 32. Any other value is written as `general.alignment`. */
  readonly alignment?: number;
}

/** Where everything lands in the file; computed without producing any tensor data. */
export interface GgufLayout {
  readonly alignment: number;
  /** Bytes of header + metadata + tensor infos, before padding. */
  readonly infoSize: number;
  /** File offset of the data section (infoSize rounded up to the alignment). */
  readonly dataOffset: number;
  readonly tensors: readonly GgufTensorLayout[];
  /** Size of the whole file in bytes. */
  readonly totalSize: number;
}

export interface GgufTensorLayout {
  readonly name: string;
  readonly elements: number;
  /** Offset inside the data section, as written in the tensor info. */
  readonly offset: number;
  /** Encoded bytes, before padding. */
  readonly byteLength: number;
}

export const GGUF_MAGIC = "GGUF";
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml stores tensor names in a 64-byte buffer including the terminator. */
const GGML_MAX_NAME_BYTES = 63;
const GGML_MAX_DIMS = 4;

/** Elements per fill call: 1 Mi values (4 MiB of f32) keeps memory flat and calls few. A multiple of 32 for Q8_0. */
const CHUNK_ELEMENTS = 1 << 20;

// ---------------------------------------------------------------------------
// Layout

/** Bytes a tensor of `elements` values takes when encoded as `type`. */
export function tensorByteLength(type: GgmlTensorType, elements: number): number {
  switch (type) {
    case "f32":
      return elements * 4;
    case "f16":
      return elements * 2;
    case "q8_0":
      return (elements / Q8_0_BLOCK_ELEMENTS) * Q8_0_BLOCK_BYTES;
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Computes every offset and the file size without producing any tensor data; validates the spec. */
export function planGguf(file: GgufFile): GgufLayout {
  return prepare(file).layout;
}

/** Header, metadata and tensor infos: everything before the data section's padding. Pure. */
export function encodeGgufHeader(file: GgufFile): Buffer {
  return prepare(file).header;
}

/** Validates the spec, places every tensor, and encodes the header, which both depend on. */
function prepare(file: GgufFile): { header: Buffer; layout: GgufLayout } {
  const alignment = resolveAlignment(file);
  checkTensorNames(file.tensors);
  let offset = 0;
  const tensors = file.tensors.map((t) => {
    const elements = tensorElements(t);
    const byteLength = tensorByteLength(t.type, elements);
    const layout: GgufTensorLayout = { name: t.name, elements, offset, byteLength };
    offset += alignUp(byteLength, alignment);
    return layout;
  });
  const header = writeHeader(file, alignment, tensors);
  const dataOffset = alignUp(header.length, alignment);
  return { header, layout: { alignment, infoSize: header.length, dataOffset, tensors, totalSize: dataOffset + offset } };
}

function checkTensorNames(tensors: readonly GgufTensor[]): void {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`duplicate tensor name ${t.name}`);
    names.add(t.name);
    if (Buffer.byteLength(t.name, "utf8") > GGML_MAX_NAME_BYTES) {
      throw new RangeError(`tensor name ${t.name} is longer than ${GGML_MAX_NAME_BYTES} bytes`);
    }
  }
}

function resolveAlignment(file: GgufFile): number {
  const alignment = file.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  // The spec requires a multiple of 8 so that every scalar in the data section can be read aligned.
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw new RangeError(`GGUF alignment must be a positive multiple of 8, got ${alignment}`);
  }
  if ("general.alignment" in file.metadata) {
    // One source of truth: readers pad by the metadata value, the writer by `alignment`.
    throw new Error('set GgufFile.alignment instead of the "general.alignment" metadata key');
  }
  return alignment;
}

function tensorElements(t: GgufTensor): number {
  if (t.dims.length < 1 || t.dims.length > GGML_MAX_DIMS) {
    throw new RangeError(`tensor ${t.name}: ${t.dims.length} dims; ggml allows 1 to ${GGML_MAX_DIMS}`);
  }
  let elements = 1;
  for (const d of t.dims) {
    if (!Number.isSafeInteger(d) || d < 1) throw new RangeError(`tensor ${t.name}: bad dimension ${d}`);
    elements *= d;
  }
  if (!Number.isSafeInteger(elements)) throw new RangeError(`tensor ${t.name}: too many elements`);
  // Quantized rows are whole blocks: ggml cannot split a block across rows.
  if (t.type === "q8_0" && (t.dims[0] ?? 0) % Q8_0_BLOCK_ELEMENTS !== 0) {
    throw new RangeError(`tensor ${t.name}: q8_0 needs dims[0] divisible by ${Q8_0_BLOCK_ELEMENTS}, got ${t.dims[0]}`);
  }
  if (t.values instanceof Float32Array && t.values.length !== elements) {
    throw new RangeError(`tensor ${t.name}: ${t.values.length} values for ${elements} elements`);
  }
  return elements;
}

// ---------------------------------------------------------------------------
// Header encoding

/** An append-only little-endian byte buffer that grows as needed. */
class ByteSink {
  #bytes = new Uint8Array(4096);
  #view = new DataView(this.#bytes.buffer);
  #length = 0;

  #reserve(n: number): number {
    const at = this.#length;
    if (at + n > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + n));
      grown.set(this.#bytes.subarray(0, at));
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#length += n;
    return at;
  }

  // Each writer reserves before touching #bytes/#view: reserving may replace them with a larger buffer.
  bytes(b: Uint8Array): void {
    const at = this.#reserve(b.length);
    this.#bytes.set(b, at);
  }
  u8(v: number): void {
    const at = this.#reserve(1);
    this.#view.setUint8(at, v);
  }
  i8(v: number): void {
    const at = this.#reserve(1);
    this.#view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.#reserve(2);
    this.#view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.#reserve(2);
    this.#view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.#reserve(4);
    this.#view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.#reserve(4);
    this.#view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.#reserve(4);
    this.#view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.#reserve(8);
    this.#view.setFloat64(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.#reserve(8);
    this.#view.setBigUint64(at, BigInt(v), true);
  }
  i64(v: number | bigint): void {
    const at = this.#reserve(8);
    this.#view.setBigInt64(at, BigInt(v), true);
  }
  string(s: string): void {
    const utf8 = Buffer.from(s, "utf8");
    this.u64(utf8.length);
    this.bytes(utf8);
  }
  result(): Buffer {
    return Buffer.from(this.#bytes.buffer, 0, this.#length);
  }
}

const INTEGER_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

const BIGINT_RANGES: Readonly<Record<GgufBigIntType, readonly [bigint, bigint]>> = {
  uint64: [0n, (1n << 64n) - 1n],
  int64: [-(1n << 63n), (1n << 63n) - 1n],
};

/** DataView would silently wrap an out-of-range integer; a wrong token id must fail loudly instead. */
function checkNumber(type: GgufNumberType | GgufBigIntType, v: number | bigint, key: string): void {
  if (type === "uint64" || type === "int64") {
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw new RangeError(`${key}: ${v} is not a safe integer for ${type}`);
    const [lo, hi] = BIGINT_RANGES[type];
    const b = BigInt(v);
    if (b < lo || b > hi) throw new RangeError(`${key}: ${v} is out of range for ${type}`);
    return;
  }
  if (typeof v !== "number") throw new TypeError(`${key}: ${type} takes a number`);
  const range = INTEGER_RANGES[type];
  if (range !== undefined && (!Number.isInteger(v) || v < range[0] || v > range[1])) {
    throw new RangeError(`${key}: ${v} is out of range for ${type}`);
  }
}

function writeNumber(sink: ByteSink, type: GgufNumberType | GgufBigIntType, v: number | bigint, key: string): void {
  checkNumber(type, v, key);
  switch (type) {
    case "uint8": return sink.u8(Number(v));
    case "int8": return sink.i8(Number(v));
    case "uint16": return sink.u16(Number(v));
    case "int16": return sink.i16(Number(v));
    case "uint32": return sink.u32(Number(v));
    case "int32": return sink.i32(Number(v));
    case "float32": return sink.f32(Number(v));
    case "float64": return sink.f64(Number(v));
    case "uint64": return sink.u64(v);
    case "int64": return sink.i64(v);
  }
}

/** Writes a value without its type tag (the caller writes the tag: a KV's, or an array's element type once). */
function writeValue(sink: ByteSink, value: GgufValue, key: string): void {
  switch (value.type) {
    case "string":
      return sink.string(value.value);
    case "bool":
      return sink.u8(value.value ? 1 : 0);
    case "array":
      return writeArray(sink, value, key);
    default:
      return writeNumber(sink, value.type, value.value, key);
  }
}

function writeArray(sink: ByteSink, value: Extract<GgufValue, { type: "array" }>, key: string): void {
  sink.u32(GgufValueTypeId[value.itemType]);
  sink.u64(value.items.length);
  // Narrow once per array, not per element: big arrays (a 128k vocabulary) are the bulk of a header.
  if (value.itemType === "string") {
    for (const s of value.items as readonly string[]) sink.string(s);
  } else if (value.itemType === "bool") {
    for (const b of value.items as readonly boolean[]) sink.u8(b ? 1 : 0);
  } else {
    const items = value.items as ArrayLike<number | bigint>;
    for (let i = 0; i < items.length; i++) writeNumber(sink, value.itemType, items[i] as number | bigint, `${key}[${i}]`);
  }
}

function writeHeader(file: GgufFile, alignment: number, tensors: readonly GgufTensorLayout[]): Buffer {
  const metadata: [string, GgufValue][] = Object.entries(file.metadata);
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) metadata.push(["general.alignment", kv.uint32(alignment)]);

  const sink = new ByteSink();
  sink.bytes(Buffer.from(GGUF_MAGIC, "ascii"));
  sink.u32(GGUF_VERSION);
  sink.u64(file.tensors.length);
  sink.u64(metadata.length);
  for (const [key, value] of metadata) {
    sink.string(key);
    sink.u32(GgufValueTypeId[value.type]);
    writeValue(sink, value, key);
  }
  for (const [i, t] of file.tensors.entries()) {
    sink.string(t.name);
    sink.u32(t.dims.length);
    for (const d of t.dims) sink.u64(d);
    sink.u32(GgmlTypeId[t.type]);
    sink.u64((tensors[i] as GgufTensorLayout).offset);
  }
  return sink.result();
}

// ---------------------------------------------------------------------------
// Tensor data encoding

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * IEEE half-precision bits for a float, rounding to nearest even (what ggml's
 * conversion does). Node 20 has no Float16Array, so this is done on the bits.
 */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  return halfFromFloatBits(u32Scratch[0] as number);
}

/** The conversion proper, from the float's bit pattern; small enough for V8 to inline into array loops. */
function halfFromFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;

  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf stays Inf, NaN stays (quiet) NaN
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too big: Inf

  if (e <= 0) {
    // Subnormal half (or zero): value = m × 2^-24, so shift the full significand right.
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }

  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, which is the correct rounding (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

// Typed arrays use the host's byte order; GGUF is little-endian, so big-endian hosts swap.
const BIG_ENDIAN_HOST = endianness() === "BE";

function encodeF32(values: Float32Array): Buffer {
  const out = Buffer.from(values.slice().buffer); // slice: a copy the caller's scratch can't overwrite
  return BIG_ENDIAN_HOST ? out.swap32() : out;
}

function encodeF16(values: Float32Array): Buffer {
  // Read the floats' bits through a second view rather than one scratch round trip per value: about 2x faster.
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const halves = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) halves[i] = halfFromFloatBits(bits[i] as number);
  const out = Buffer.from(halves.buffer);
  return BIG_ENDIAN_HOST ? out.swap16() : out;
}

/**
 * Q8_0 as ggml's reference quantizer does it: per block of 32, scale
 * d = max|x| / 127, q = round(x / d) (half away from zero).
 */
function encodeQ8_0(values: Float32Array): Buffer {
  const blocks = values.length / Q8_0_BLOCK_ELEMENTS;
  const out = Buffer.allocUnsafe(blocks * Q8_0_BLOCK_BYTES);
  const quants = new Int8Array(out.buffer, out.byteOffset, out.length); // signed view of the same bytes
  for (let b = 0; b < blocks; b++) {
    const first = b * Q8_0_BLOCK_ELEMENTS;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK_ELEMENTS; j++) {
      const a = Math.abs(values[first + j] as number);
      if (a > amax) amax = a;
    }
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? 1 / d : 0;
    const at = b * Q8_0_BLOCK_BYTES;
    out.writeUInt16LE(float32ToFloat16Bits(d), at);
    for (let j = 0; j < Q8_0_BLOCK_ELEMENTS; j++) {
      const v = (values[first + j] as number) * id; // |v| <= 127 since |x| <= amax
      // Round half away from zero: truncate v ± 0.5 (|0 truncates). Twice as fast as Math.round, which
      // would also round -2.5 to -2.
      quants[at + 2 + j] = v < 0 ? (v - 0.5) | 0 : (v + 0.5) | 0;
    }
  }
  return out;
}

function encodeValues(type: GgmlTensorType, values: Float32Array): Buffer {
  switch (type) {
    case "f32":
      return encodeF32(values);
    case "f16":
      return encodeF16(values);
    case "q8_0":
      return encodeQ8_0(values);
  }
}

/** Yields one tensor's encoded bytes, at most `CHUNK_ELEMENTS` values at a time. */
function* encodeTensorData(tensor: GgufTensor, elements: number): Generator<Buffer> {
  if (tensor.values instanceof Float32Array) {
    for (let start = 0; start < elements; start += CHUNK_ELEMENTS) {
      yield encodeValues(tensor.type, tensor.values.subarray(start, Math.min(elements, start + CHUNK_ELEMENTS)));
    }
    return;
  }
  const scratch = new Float32Array(Math.min(CHUNK_ELEMENTS, elements));
  for (let start = 0; start < elements; start += CHUNK_ELEMENTS) {
    const chunk = scratch.subarray(0, Math.min(CHUNK_ELEMENTS, elements - start));
    tensor.values(chunk, start);
    yield encodeValues(tensor.type, chunk);
  }
}

/**
 * The whole file as a sequence of buffers, in order. Each buffer is freshly
 * allocated, so a consumer may keep them (`encodeGguf`) or drop them as soon as
 * they are written (`writeGguf`).
 */
export function encodeGgufChunks(file: GgufFile): Generator<Buffer> {
  return chunksOf(file, prepare(file));
}

function* chunksOf(file: GgufFile, { header, layout }: { header: Buffer; layout: GgufLayout }): Generator<Buffer> {
  yield Buffer.concat([header, Buffer.alloc(layout.dataOffset - header.length)]);
  for (const [i, tensor] of file.tensors.entries()) {
    const t = layout.tensors[i] as GgufTensorLayout;
    yield* encodeTensorData(tensor, t.elements);
    const padding = alignUp(t.byteLength, layout.alignment) - t.byteLength;
    if (padding > 0) yield Buffer.alloc(padding);
  }
}

/** The whole file in memory: for small files and tests. Large models go through `writeGguf`. */
export function encodeGguf(file: GgufFile): Buffer {
  return Buffer.concat([...encodeGgufChunks(file)]);
}

export interface WriteGgufOptions {
  /** fsync before closing, so a following rename publishes only complete data even across a power cut. */
  readonly sync?: boolean;
}

/**
 * Streams the file to `path` (created or truncated), holding at most two
 * chunks in memory. Returns the layout; the file's size is `layout.totalSize`.
 */
export async function writeGguf(path: string, file: GgufFile, opts: WriteGgufOptions = {}): Promise<GgufLayout> {
  const prepared = prepare(file); // validates before the file is created or truncated
  const { layout } = prepared;
  const handle = await open(path, "w");
  // One write in flight while the next chunk is generated: generating is CPU work on this thread, writing runs on
  // libuv's pool, so overlapping them hides most of the disk time.
  let inFlight: Promise<void> = Promise.resolve();
  try {
    let written = 0;
    for (const chunk of chunksOf(file, prepared)) {
      await inFlight;
      inFlight = writeFully(handle, chunk);
      written += chunk.length;
    }
    await inFlight;
    if (written !== layout.totalSize) throw new Error(`wrote ${written} bytes, planned ${layout.totalSize}`);
    if (opts.sync === true) await handle.sync();
  } finally {
    await inFlight.catch(() => undefined); // a chunk that failed to generate must not leave a write racing close()
    await handle.close();
  }
  return layout;
}

/** fh.write may write less than asked; loop until the whole chunk is out. */
async function writeFully(handle: FileHandle, chunk: Buffer): Promise<void> {
  for (let at = 0; at < chunk.length; ) {
    const { bytesWritten } = await handle.write(chunk, at, chunk.length - at);
    at += bytesWritten;
  }
}
