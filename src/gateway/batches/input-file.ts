/**
 * A batch input file as it uploads: JSONL, read line by line as the bytes
 * arrive (never whole in memory), each line checked the way OpenAI's batch
 * validation checks it, and handed on in pieces of whole lines for the store.
 * A bad line refuses the upload with a 400 naming the line and the field.
 */
import { StringDecoder } from "node:string_decoder";
import { FlotillaError } from "../../core/errors.js";
import type { InputLine } from "../../store/index.js";

/** OpenAI's limits on a batch input file. */
export const MAX_FILE_BYTES = 200 * 1024 * 1024;
export const MAX_FILE_LINES = 50_000;
/** The endpoints a batch line may call. */
export const BATCH_ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];
/** A stored piece holds whole lines, about this many bytes. */
const PIECE_BYTES = 1 << 20;
const MAX_CUSTOM_ID = 512;

export class InputFileReader {
  readonly #decoder = new StringDecoder("utf8");
  readonly #maxLineBytes: number;
  #partial = "";
  #piece: string[] = [];
  #pieceBytes = 0;
  #ids = new Set<string>();
  lines = 0;
  bytes = 0;
  endpoint: BatchEndpoint | undefined;

  /** `maxLineBytes`: the largest request body the gateway takes, which a line's is too. */
  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Takes the next bytes; returns the pieces now complete. */
  push(chunk: Buffer): string[] {
    this.bytes += chunk.length;
    if (this.bytes > MAX_FILE_BYTES) throw refuse(`the file is larger than ${MAX_FILE_BYTES / 1024 / 1024} MB, the most a batch input file may be; split it into several batches`);
    const text = this.#partial + this.#decoder.write(chunk);
    const parts = text.split("\n");
    this.#partial = parts.pop() ?? "";
    if (Buffer.byteLength(this.#partial) > this.#maxLineBytes) throw refuse(`line ${this.lines + 1} is longer than ${this.#maxLineBytes} bytes, the largest request body this server takes`);
    const out: string[] = [];
    for (const p of parts) this.#line(p, out);
    return out;
  }

  /** The end of the upload: the last pieces. */
  end(): string[] {
    const out: string[] = [];
    this.#line(this.#partial + this.#decoder.end(), out);
    this.#partial = "";
    if (this.#piece.length > 0) out.push(this.#piece.join("\n"));
    this.#piece = [];
    if (this.lines === 0) throw refuse("the file holds no request; a batch input file has one JSON request per line");
    return out;
  }

  #line(raw: string, out: string[]): void {
    const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (text.trim() === "") return;
    const n = ++this.lines;
    if (n > MAX_FILE_LINES) throw refuse(`the file has more than ${MAX_FILE_LINES} requests, the most one batch may hold; split it into several batches`);
    const { customId, url } = checkLine(text, n);
    if (this.#ids.has(customId)) throw refuse(`line ${n}: custom_id ${JSON.stringify(customId)} is used by an earlier line; each request's custom_id must be unique within the file`);
    this.#ids.add(customId);
    if (this.endpoint === undefined) this.endpoint = url;
    else if (url !== this.endpoint) throw refuse(`line ${n}: url ${url} differs from the first line's ${this.endpoint}; every request of a batch calls one endpoint`);
    this.#piece.push(text);
    this.#pieceBytes += Buffer.byteLength(text) + 1;
    if (this.#pieceBytes >= PIECE_BYTES) {
      out.push(this.#piece.join("\n"));
      this.#piece = [];
      this.#pieceBytes = 0;
    }
  }
}

/** A line's envelope: { custom_id, method: "POST", url, body }. */
function checkLine(text: string, n: number): { customId: string; url: BatchEndpoint } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw refuse(`line ${n} is not valid JSON (${(err as Error).message}); each line is one JSON object`);
  }
  if (!isObject(v)) throw refuse(`line ${n} is not a JSON object; each line is {"custom_id", "method", "url", "body"}`);
  const { custom_id: customId, method, url, body } = v;
  if (typeof customId !== "string" || customId === "" || customId.length > MAX_CUSTOM_ID) throw refuse(`line ${n}: custom_id must be a string of 1-${MAX_CUSTOM_ID} characters`);
  if (method !== "POST") throw refuse(`line ${n}: method must be "POST"`);
  if (typeof url !== "string" || !(BATCH_ENDPOINTS as readonly string[]).includes(url)) throw refuse(`line ${n}: url must be one of ${BATCH_ENDPOINTS.join(", ")}`);
  if (!isObject(body)) throw refuse(`line ${n}: body must be the request's JSON object`);
  if (body.stream === true) throw refuse(`line ${n}: body.stream must not be true; a batch request's answer is written to the output file whole`);
  for (const k of Object.keys(v)) if (!["custom_id", "method", "url", "body"].includes(k)) throw refuse(`line ${n}: ${k} is not a field of a batch request; remove it`);
  return { customId, url: url as BatchEndpoint };
}

/** The stored lines of a piece, as a batch copies them: custom_id and the body to send. */
export function inputLines(piece: string): InputLine[] {
  return piece.split("\n").map((text) => {
    const v = JSON.parse(text) as { custom_id: string; body: unknown };
    return { customId: v.custom_id, body: JSON.stringify(v.body) };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function refuse(message: string): FlotillaError {
  return new FlotillaError("invalid_request", message, { param: "file" });
}
