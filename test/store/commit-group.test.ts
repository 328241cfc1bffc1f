import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { CommitGroup } from "../../src/store/commit-group.js";

function database(): { db: Database.Database; group: CommitGroup; commits: () => number } {
  const db = new Database(":memory:");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  let commits = 0;
  const group = new CommitGroup({
    transaction: (work) => {
      db.transaction(work).immediate();
      commits++;
    },
    savepoint: (write) => db.transaction(write)(),
  });
  return { db, group, commits: () => commits };
}

describe("CommitGroup", () => {
  it("commits the writes of one event-loop turn in one transaction, and acknowledges none before it", async () => {
    const { db, group, commits } = database();
    const insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)");
    const acks = [1, 2, 3].map((id) => group.run(() => insert.run(id, "x").changes));
    assert.equal((db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, 0, "nothing written before the group closes");
    assert.deepEqual(await Promise.all(acks), [1, 1, 1]);
    assert.equal(commits(), 1);
    assert.equal((db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, 3);
  });

  it("a write that fails is undone alone; the others in its group commit", async () => {
    const { db, group } = database();
    const insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)");
    const ok = group.run(() => insert.run(1, "a"));
    const bad = group.run(() => {
      insert.run(2, "b");
      insert.run(1, "duplicate"); // fails: the savepoint takes row 2 back too
    });
    const after = group.run(() => insert.run(3, "c"));
    await ok;
    await assert.rejects(bad, /UNIQUE/);
    await after;
    assert.deepEqual((db.prepare("SELECT id FROM t ORDER BY id").all() as { id: number }[]).map((r) => r.id), [1, 3]);
  });

  it("when the commit itself fails every write of the group is refused, and flush() commits what waits at once", async () => {
    const db = new Database(":memory:");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    let fail = true;
    const group = new CommitGroup({
      transaction: (work) => {
        db.transaction(work).immediate();
        if (fail) throw new Error("disk full");
      },
      savepoint: (write) => db.transaction(write)(),
    });
    const writes = [group.run(() => 1), group.run(() => 2)];
    for (const w of writes) await assert.rejects(w, /disk full/);
    fail = false;
    const pending = group.run(() => "now");
    group.flush();
    assert.equal(await pending, "now");
  });
});
