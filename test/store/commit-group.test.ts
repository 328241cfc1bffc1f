import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { CommitGroup, commitTogether, commitTogetherAsync } from "../../src/store/commit-group.js";

type Write = () => unknown;

function database(): { db: Database.Database; group: CommitGroup<Write>; commits: () => number } {
  const db = new Database(":memory:");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  let commits = 0;
  const inTransaction = db.transaction((work: () => void) => work());
  const group = new CommitGroup<Write>({
    commit: (writes) =>
      commitTogether(
        writes,
        (work) => {
          inTransaction.immediate(work);
          commits++;
        },
        (w) => w(),
      ),
  });
  return { db, group, commits: () => commits };
}

const ids = (db: Database.Database): number[] => (db.prepare("SELECT id FROM t ORDER BY id").all() as { id: number }[]).map((r) => r.id);

describe("CommitGroup", () => {
  it("commits the writes of one event-loop turn in one transaction, and acknowledges none before it", async () => {
    const { db, group, commits } = database();
    const insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)");
    const acks = [1, 2, 3].map((id) => group.run(() => insert.run(id, "x").changes));
    assert.deepEqual(ids(db), [], "nothing written before the group closes");
    assert.deepEqual(await Promise.all(acks), [1, 1, 1]);
    assert.equal(commits(), 1);
    assert.deepEqual(ids(db), [1, 2, 3]);
  });

  it("a write that fails is undone alone, half-done writes included; the others in its group commit", async () => {
    const { db, group } = database();
    const insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)");
    const ok = group.run(() => insert.run(1, "a"));
    const bad = group.run(() => {
      insert.run(2, "b");
      insert.run(1, "duplicate"); // fails: row 2 goes back with it
    });
    const after = group.run(() => insert.run(3, "c"));
    await ok;
    await assert.rejects(bad, /UNIQUE/);
    await after;
    assert.deepEqual(ids(db), [1, 3]);
  });

  it("when the commit itself fails every write of the group is refused, and flush() commits what waits at once", async () => {
    const db = new Database(":memory:");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    let fail = true;
    const group = new CommitGroup<Write>({
      commit: (writes) =>
        commitTogether(
          writes,
          (work) => {
            work();
            if (fail) throw new Error("disk full");
          },
          (w) => w(),
        ),
    });
    const writes = [group.run(() => 1), group.run(() => 2)];
    for (const w of writes) await assert.rejects(w, /disk full/);
    fail = false;
    const pending = group.run(() => "now");
    void group.flush();
    assert.equal(await pending, "now");
  });

  it("an asynchronous backend: one transaction per group; a failing write retried alone; a failed commit refuses the group", async () => {
    const committed: number[][] = [];
    let commitFails = false;
    const transaction = async (work: (c: number[]) => Promise<void>): Promise<void> => {
      const tx: number[] = [];
      await work(tx);
      if (commitFails) throw new Error("connection lost");
      committed.push(tx);
    };
    const apply = async (n: number, tx: number[]): Promise<number> => {
      if (n < 0) throw new Error(`bad write ${n}`);
      tx.push(n);
      return n * 10;
    };
    const group = new CommitGroup<number>({ commit: (writes) => commitTogetherAsync(writes, transaction, apply) });
    assert.deepEqual(await Promise.all([group.run(1), group.run(2)]), [10, 20]);
    assert.deepEqual(committed, [[1, 2]]);
    const mixed = [group.run(3), group.run(-1), group.run(4)];
    assert.equal(await mixed[0], 30);
    await assert.rejects(mixed[1]!, /bad write -1/);
    assert.equal(await mixed[2], 40);
    assert.deepEqual(committed.slice(1).sort(), [[3], [4]], "after the failure each good write committed on its own");
    commitFails = true;
    const lost = [group.run(5), group.run(6)];
    for (const w of lost) await assert.rejects(w, /connection lost/);
  });
});
