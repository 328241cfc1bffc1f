/**
 * The Batch API's store plans on both backends: a line's result commits with
 * its ledger row or not at all, a stale attempt's result is refused and its
 * row charged nothing, lines a dead runner left running run again, and a
 * batch past its window expires with an error file whose size is its content's.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { batchPlans, openStore, type AdmitInput, type NewBatch, type SettleInput, type Store } from "../../src/store/index.js";
import { backends } from "../metering/harness.js";

const T0 = Date.UTC(2026, 11, 4, 12, 0, 0);
let n = 0;

const made: string[] = [];
const fileIds = (): string => `file-made-${++n}`;

/** A batch of `lines` pending lines; every batch made before is cancelled first, so claims see only this one's lines. */
async function batchOf(store: Store, lines: number, over: Partial<NewBatch> = {}): Promise<string> {
  for (const earlier of made.splice(0)) await store.transact(batchPlans.cancelBatch("acme-uid", earlier, T0));
  const fileId = `file-${++n}`;
  const owner = over.owner ?? "acme-uid";
  await store.transact(batchPlans.createFile({ id: fileId, owner, tenantId: "acme", purpose: "batch", filename: "in.jsonl", bytes: 0, lines: 0, createdAt: T0, kind: "upload", endpoint: null, batchId: null }));
  const text = Array.from({ length: lines }, (_, i) => JSON.stringify({ custom_id: `c${i}`, method: "POST", url: "/v1/chat/completions", body: { i } })).join("\n");
  await store.transact(batchPlans.addChunk(fileId, 0, text));
  await store.transact(batchPlans.finishUpload(fileId, text.length, lines, "/v1/chat/completions"));
  const id = `batch_${n}`;
  const batch: NewBatch = { id, owner, tenantId: "acme", keyId: null, endpoint: "/v1/chat/completions", inputFileId: fileId, completionWindow: "24h", metadata: null, createdAt: T0 + n, expiresAt: T0 + 86_400_000, ...over };
  const parse = (piece: string): { customId: string; body: string }[] => piece.split("\n").map((l) => ({ customId: (JSON.parse(l) as { custom_id: string }).custom_id, body: "{}" }));
  await store.transact(batchPlans.createBatch(batch, parse));
  made.push(id);
  return id;
}

function admission(id: string): AdmitInput {
  return { id, requestId: id, tenantId: "acme", keyId: null, model: "m", endpoint: "chat", stream: false, reservedNusd: 1000, reservedTokens: 10, outputBounded: true, instanceId: "i-1", now: T0 };
}

function settlement(id: string, over: Partial<SettleInput> = {}): SettleInput {
  return { id, status: "ok", errorCode: null, estimated: false, replica: "m/0", hardware: "h100", inputTokens: 4, cachedTokens: 0, outputTokens: 6, deviceSeconds: 0.5, energyJ: 2, costNusd: 80, attempts: 1, continuations: 0, now: T0 + 1000, ...over };
}

for (const backend of backends) {
  describe(`batch plans on ${backend.name}`, { skip: backend.skip }, () => {
    let db: { url: string; drop(): Promise<void> };
    let store: Store;
    before(async () => {
      db = await backend.fresh();
      store = await openStore(db.url, { databaseClock: false });
      await store.registerInstance({ id: "i-1", host: "h", pid: 1, startedAt: T0, heartbeatAt: T0 });
      await store.createTenant({ id: "acme", weight: 1, priority: "interactive", requestsPerMinute: null, tokensPerMinute: null, maxConcurrent: null, monthlyBudgetNusd: 10_000, createdAt: T0 });
    });
    after(async () => {
      await store?.close();
      await db?.drop();
    });

    test("a settlement carrying a line's result finishes the line; one carrying a stale attempt's is charged nothing", async () => {
      const id = await batchOf(store, 2);
      const [first] = await store.transact(batchPlans.claimLines(1));
      assert.equal(first!.attempt, 1);
      assert.equal(first!.customId, "c0");
      // A runner that took the lease over runs it again: attempt 2.
      assert.equal(await store.transact(batchPlans.requeueRunning()), 1);
      const [again] = await store.transact(batchPlans.claimLines(1));
      assert.deepEqual([again!.line, again!.attempt], [first!.line, 2]);

      const uid = (await store.getTenant("acme"))!.tenant.uid;
      for (const r of ["late", "current"]) assert.deepEqual(await store.admit({ ...admission(r), tenantUid: uid }), { ok: true });
      const line = (attempt: number) => ({ batchId: id, line: first!.line, attempt, state: "completed" as const, result: `{"attempt":${attempt}}` });
      assert.equal(await store.settle(settlement("current", { batchLine: line(2) })), true);
      assert.equal(await store.settle(settlement("late", { batchLine: line(1) })), true);
      const rows = new Map((await store.ledger({ tenantId: "acme" })).map((r) => [r.id, r]));
      assert.deepEqual([rows.get("current")!.status, rows.get("current")!.costNusd], ["ok", 80]);
      assert.deepEqual([rows.get("late")!.status, rows.get("late")!.errorCode, rows.get("late")!.costNusd, rows.get("late")!.outputTokens], ["cancelled", "batch_line_superseded", 0, 0]);
      assert.equal((await store.getTenant("acme"))!.state.spentNusd, 80, "charged once");
      assert.deepEqual(await store.transact(batchPlans.resultLines(id, "output", 0, 10)), [{ line: first!.line, text: '{"attempt":2}' }]);
      assert.equal((await store.transact(batchPlans.getBatch(id)))!.counts.completed, 1);
    });

    test("a line given back runs again under a new attempt; a released stale attempt changes nothing", async () => {
      const id = await batchOf(store, 1);
      const [a] = await store.transact(batchPlans.claimLines(5));
      assert.equal(a!.batchId, id);
      assert.equal(await store.transact(batchPlans.releaseLine(id, a!.line, a!.attempt)), true);
      const [b] = await store.transact(batchPlans.claimLines(5));
      assert.equal(b!.attempt, a!.attempt + 1);
      assert.equal(await store.transact(batchPlans.releaseLine(id, a!.line, a!.attempt)), false);
      assert.equal(await store.transact(batchPlans.finishLine({ batchId: id, line: b!.line, attempt: b!.attempt, state: "failed", result: "{}" })), true);
    });

    test("a batch past its window expires: pending lines go to its error file, whose size is its content's", async () => {
      const id = await batchOf(store, 3, { expiresAt: T0 + 10 });
      const [running] = await store.transact(batchPlans.claimLines(1));
      assert.equal(running!.batchId, id);
      assert.ok(!(await store.transact(batchPlans.sweepBatches(T0 + 20, fileIds))).includes(id), "not finished while a line runs");
      const b = (await store.transact(batchPlans.getBatch(id)))!;
      assert.equal(b.status, "expired");
      assert.deepEqual([b.counts.expired, b.counts.running], [2, 1]);
      // The running line finishes; then the batch is done, with both files.
      await store.transact(batchPlans.finishLine({ batchId: id, line: running!.line, attempt: running!.attempt, state: "completed", result: '{"ok":true}' }));
      assert.deepEqual(await store.transact(batchPlans.sweepBatches(T0 + 30, fileIds)), [id]);
      const done = (await store.transact(batchPlans.getBatch(id)))!;
      assert.equal(done.status, "expired");
      assert.ok(done.outputFileId !== null && done.errorFileId !== null);
      const errors = await store.transact(batchPlans.resultLines(id, "errors", 0, 10));
      assert.deepEqual(errors.map((e) => (JSON.parse(e.text) as { error: { code: string } }).error.code), ["batch_expired", "batch_expired"]);
      const file = (await store.transact(batchPlans.getFile("acme-uid", done.errorFileId!)))!;
      assert.equal(file.bytes, errors.reduce((s, e) => s + Buffer.byteLength(e.text) + 1, 0));
      assert.equal(file.lines, 2);
    });

    test("an upload a crash cut off is never listed, and is removed once it is a day old", async () => {
      await store.transact(batchPlans.createFile({ id: "file-cut", owner: "acme-uid", tenantId: "acme", purpose: "batch", filename: "cut.jsonl", bytes: 0, lines: 0, createdAt: T0, kind: "upload", endpoint: null, batchId: null }));
      await store.transact(batchPlans.addChunk("file-cut", 0, "{}"));
      assert.equal(await store.transact(batchPlans.getFile("acme-uid", "file-cut")), undefined);
      assert.equal(await store.transact(batchPlans.discardUploads(T0)), 0, "not yet");
      assert.equal(await store.transact(batchPlans.discardUploads(T0 + 1)), 1);
      assert.equal(await store.transact(batchPlans.fileChunk("file-cut", 0)), undefined);
    });

    test("cancelling cancels pending lines at once and finishes once nothing runs; another owner cannot cancel", async () => {
      const id = await batchOf(store, 3);
      const [running] = await store.transact(batchPlans.claimLines(1));
      assert.equal(await store.transact(batchPlans.cancelBatch("someone-else", id, T0)), undefined);
      const b = (await store.transact(batchPlans.cancelBatch("acme-uid", id, T0 + 5)))!;
      assert.deepEqual([b.status, b.counts.cancelled, b.counts.running], ["cancelling", 2, 1]);
      assert.deepEqual(await store.transact(batchPlans.stoppedBatches([id])), [id]);
      assert.ok(!(await store.transact(batchPlans.sweepBatches(T0 + 6, fileIds))).includes(id), "not finished while a line runs");
      await store.transact(batchPlans.finishLine({ batchId: id, line: running!.line, attempt: running!.attempt, state: "cancelled", result: batchPlans.unrunResult(id, running!.line, running!.customId, "cancelled") }));
      assert.deepEqual(await store.transact(batchPlans.sweepBatches(T0 + 7, fileIds)), [id]);
      const done = (await store.transact(batchPlans.getBatch(id)))!;
      assert.deepEqual([done.status, done.cancelledAt, done.outputFileId], ["cancelled", T0 + 7, null]);
      assert.equal((await store.transact(batchPlans.resultLines(id, "errors", 0, 10))).length, 3);
    });
  });
}
