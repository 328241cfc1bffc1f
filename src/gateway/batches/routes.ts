/**
 * OpenAI's Files and Batches APIs: upload a JSONL file of requests, create
 * a batch over it, follow it, cancel it, and read its output and error
 * files. Every file and batch belongs to the tenant that made it; another
 * tenant's id is answered as if it did not exist.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Clock } from "../../core/clock.js";
import { FlotillaError } from "../../core/errors.js";
import type { Principal } from "../../metering/tenancy.js";
import { ANONYMOUS_TENANT, batchPlans, type BatchRecord, type FileRecord, type Store } from "../../store/index.js";
import { batchObject, fileObject } from "./objects.js";
import { InputFileReader, MAX_FILE_BYTES, inputLines } from "./input-file.js";
import { newFileId } from "./runner.js";

export interface BatchRoutesOptions {
  /** Where files and batches are kept; without one (server.store: none) the routes say the API needs one. */
  readonly store: Store | undefined;
  readonly clock: Clock;
  readonly principalOf: (request: FastifyRequest) => Principal | undefined;
  /** The largest request body: each line's body may be as large. */
  readonly bodyLimit: number;
  /** A batch was created or cancelled: the runner looks for work. */
  readonly changed: () => void;
}

const TENANT = { config: { access: "tenant" } } as const;
const ADMIN = { config: { access: "admin" } } as const;
/** The one completion window OpenAI offers. */
const WINDOW_MS = 24 * 3600 * 1000;
/** Lines of an output file read from the store at a time. */
const PAGE = 1000;

type IdParams = { Params: { id: string } };

export function registerBatchRoutes(app: FastifyInstance, options: BatchRoutesOptions): void {
  const kept = options.store;
  const o = {
    ...options,
    get store(): Store {
      if (kept === undefined) throw new FlotillaError("not_found", "the Files and Batches APIs keep their files and batches in the store, and this server runs without one (server.store: none)");
      return kept;
    },
  };
  const ownerOf = (request: FastifyRequest): { owner: string; tenantId: string; keyId: string | null } => {
    const p = o.principalOf(request);
    return p === undefined ? { owner: ANONYMOUS_TENANT, tenantId: ANONYMOUS_TENANT, keyId: null } : { owner: p.tenantUid ?? p.tenantId, tenantId: p.tenantId, keyId: p.keyId };
  };
  const file = async (request: FastifyRequest<IdParams>): Promise<FileRecord> => {
    const f = await o.store.transact(batchPlans.getFile(ownerOf(request).owner, request.params.id));
    if (f === undefined) throw notFound("File", request.params.id);
    return f;
  };

  void app.register(async (scope) => {
    await scope.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 1, fields: 4, fieldSize: 1024, parts: 5 } });
    scope.post("/v1/files", TENANT, async (request, reply) => reply.send(fileObject(await upload(request, ownerOf(request), o))));
  });
  app.get<{ Querystring: Record<string, string | undefined> }>("/v1/files", TENANT, async (request) => {
    const { limit, after } = listParams(request.query, 10_000, 10_000);
    const purpose = request.query.purpose;
    const files = await o.store.transact(batchPlans.listFiles(ownerOf(request).owner, { limit: limit + 1, ...(purpose === undefined ? {} : { purpose }), ...(after === undefined ? {} : { after }) }));
    return listOf(files.map(fileObject), limit);
  });
  app.get<IdParams>("/v1/files/:id", TENANT, async (request) => fileObject(await file(request)));
  app.get<IdParams>("/v1/files/:id/content", TENANT, async (request, reply) => {
    const f = await file(request);
    return reply.type("application/jsonl").send(Readable.from(fileContent(o.store, f)));
  });
  app.delete<IdParams>("/v1/files/:id", TENANT, async (request) => {
    if (!(await o.store.transact(batchPlans.deleteFile(ownerOf(request).owner, request.params.id)))) throw notFound("File", request.params.id);
    return { id: request.params.id, object: "file", deleted: true };
  });

  app.post<{ Body: { input_file_id: string; endpoint: string; completion_window: string; metadata?: Record<string, string> } }>("/v1/batches", { ...TENANT, schema: { body: createBatchSchema } }, async (request) => {
    const who = ownerOf(request);
    const body = request.body;
    const input = await o.store.transact(batchPlans.getFile(who.owner, body.input_file_id));
    if (input === undefined || input.kind !== "upload") throw new FlotillaError("not_found", `no input file ${body.input_file_id}; upload one with POST /v1/files (purpose "batch")`, { param: "input_file_id" });
    if (input.endpoint !== body.endpoint) {
      throw new FlotillaError("invalid_request", `the requests of ${input.id} call ${input.endpoint ?? "no endpoint"}, not ${body.endpoint}; a batch's endpoint is the one its lines call`, { param: "endpoint" });
    }
    const now = o.clock.epochMs();
    const id = `batch_${randomBytes(12).toString("hex")}`;
    const batch = { id, ...who, endpoint: body.endpoint, inputFileId: input.id, completionWindow: body.completion_window, metadata: body.metadata ?? null, createdAt: now, expiresAt: now + WINDOW_MS };
    await o.store.transact(batchPlans.createBatch(batch, inputLines));
    o.changed();
    return batchObject((await o.store.transact(batchPlans.getBatch(id)))!);
  });
  app.get<IdParams>("/v1/batches/:id", TENANT, async (request) => batchObject(await ownBatch(o.store, ownerOf(request).owner, request.params.id)));
  app.post<IdParams>("/v1/batches/:id/cancel", TENANT, async (request) => {
    const b = await o.store.transact(batchPlans.cancelBatch(ownerOf(request).owner, request.params.id, o.clock.epochMs()));
    if (b === undefined) throw notFound("Batch", request.params.id);
    o.changed();
    return batchObject(b);
  });
  app.get<{ Querystring: Record<string, string | undefined> }>("/v1/batches", TENANT, async (request) => {
    const { limit, after } = listParams(request.query, 100);
    return listOf((await o.store.transact(batchPlans.listBatches(ownerOf(request).owner, limit + 1, after))).map(batchObject), limit);
  });
  // Every tenant's batches, for the operator (flotilla batches list, /ui).
  app.get<{ Querystring: Record<string, string | undefined> }>("/admin/batches", ADMIN, async (request) => {
    const { limit, after } = listParams(request.query, 100);
    return listOf((await o.store.transact(batchPlans.listBatches(undefined, limit + 1, after))).map((b) => ({ ...batchObject(b), tenant: b.tenantId })), limit);
  });
}

/** Reads the multipart upload (a `purpose` field and one `file`) into the store as it arrives; only a whole, valid file becomes visible. */
async function upload(request: FastifyRequest, who: { owner: string; tenantId: string }, o: BatchRoutesOptions & { store: Store }): Promise<FileRecord> {
  if (!request.isMultipart()) throw new FlotillaError("invalid_request", "upload a file as multipart/form-data with the fields purpose and file", { param: "file" });
  const id = newFileId();
  let purpose: string | undefined;
  let stored: FileRecord | undefined;
  let failure: unknown;
  // Every part is read to the end, even after a failure, so the client gets to read the answer.
  for await (const part of request.parts()) {
    if (failure !== undefined) {
      if (part.type === "file") part.file.resume();
      continue;
    }
    try {
      if (part.type === "field") {
        if (part.fieldname !== "purpose") throw new FlotillaError("invalid_request", `${part.fieldname} is not a field of a file upload; send purpose and file`, { param: part.fieldname });
        purpose = String(part.value);
      } else {
        if (part.fieldname !== "file" || stored !== undefined) throw new FlotillaError("invalid_request", "send one file, in the field named file", { param: "file" });
        stored = await storeUpload(o, id, who, part.filename, part.file);
      }
    } catch (err) {
      failure = err;
      if (part.type === "file") part.file.resume();
    }
  }
  if (failure === undefined && stored === undefined) failure = new FlotillaError("invalid_request", "the upload has no file; send it in the field named file", { param: "file" });
  if (failure === undefined && purpose !== "batch") failure = new FlotillaError("invalid_request", `purpose must be "batch" (the files this server takes are batch input files), got ${JSON.stringify(purpose ?? null)}`, { param: "purpose" });
  if (failure !== undefined) {
    await o.store.transact(batchPlans.deleteFile(who.owner, id));
    throw failure;
  }
  return stored!;
}

async function storeUpload(o: BatchRoutesOptions & { store: Store }, id: string, who: { owner: string; tenantId: string }, filename: string, content: AsyncIterable<Buffer> & { truncated?: boolean }): Promise<FileRecord> {
  const record: FileRecord = { id, ...who, purpose: "batch", filename: filename.slice(0, 255), bytes: 0, lines: 0, createdAt: o.clock.epochMs(), kind: "upload", endpoint: null, batchId: null };
  await o.store.transact(batchPlans.createFile(record));
  const reader = new InputFileReader(o.bodyLimit);
  let seq = 0;
  for await (const chunk of content) {
    for (const piece of reader.push(chunk)) await o.store.transact(batchPlans.addChunk(id, seq++, piece));
  }
  if (content.truncated === true) throw new FlotillaError("invalid_request", `the file is larger than ${MAX_FILE_BYTES / 1024 / 1024} MB, the most a batch input file may be; split it into several batches`, { param: "file" });
  for (const piece of reader.end()) await o.store.transact(batchPlans.addChunk(id, seq++, piece));
  await o.store.transact(batchPlans.finishUpload(id, reader.bytes, reader.lines, reader.endpoint ?? null));
  return { ...record, bytes: reader.bytes, lines: reader.lines, endpoint: reader.endpoint ?? null };
}

/** A file's content as it is read from the store: an upload's pieces, or a finished batch's result lines. */
async function* fileContent(store: Store, f: FileRecord): AsyncGenerator<string> {
  if (f.kind === "upload") {
    for (let seq = 0; ; seq++) {
      const piece = await store.transact(batchPlans.fileChunk(f.id, seq));
      if (piece === undefined) return;
      yield `${piece}\n`;
    }
  }
  const kind = f.kind === "output" ? "output" : "errors";
  for (let after = 0; ; ) {
    const lines = await store.transact(batchPlans.resultLines(f.batchId ?? "", kind, after, PAGE));
    if (lines.length === 0) return;
    yield lines.map((l) => `${l.text}\n`).join("");
    after = lines[lines.length - 1]!.line;
  }
}

async function ownBatch(store: Store, owner: string, id: string): Promise<BatchRecord> {
  const b = await store.transact(batchPlans.getBatch(id, owner));
  if (b === undefined) throw notFound("Batch", id);
  return b;
}

function notFound(what: "File" | "Batch", id: string): FlotillaError {
  return new FlotillaError("not_found", `No such ${what} object: ${id}`, { param: "id" });
}

/** OpenAI's list: the first `limit` of what was read (one more was read to tell whether there is more). */
function listOf(data: readonly Record<string, unknown>[], limit: number): Record<string, unknown> {
  const page = data.slice(0, limit);
  return { object: "list", data: page, first_id: page[0]?.id ?? null, last_id: page[page.length - 1]?.id ?? null, has_more: data.length > limit };
}

/** `limit` (1 to `max`; OpenAI's defaults: 20 batches, 10,000 files) and `after` of a list's query string; other parameters are the caller's. */
function listParams(q: Record<string, string | undefined>, max: number, byDefault = 20): { limit: number; after: string | undefined } {
  const limit = q.limit === undefined ? byDefault : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) throw new FlotillaError("invalid_request", `limit must be an integer from 1 to ${max}`, { param: "limit" });
  if (q.order !== undefined && q.order !== "desc") throw new FlotillaError("invalid_request", 'order must be "desc" (newest first)', { param: "order" });
  return { limit, after: q.after };
}

const createBatchSchema = {
  type: "object",
  additionalProperties: false,
  required: ["input_file_id", "endpoint", "completion_window"],
  properties: {
    input_file_id: { type: "string", minLength: 1, maxLength: 200 },
    endpoint: { enum: ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"] },
    completion_window: { const: "24h" },
    metadata: { type: ["object", "null"], maxProperties: 16, additionalProperties: { type: "string", maxLength: 512 } },
  },
} as const;
