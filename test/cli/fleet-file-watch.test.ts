/**
 * The fleet file follower applies each change once, whether inotify saw it or
 * only the poll did, and a rewrite with the same content reloads nothing.
 */
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { watchFleetFile, type FleetFileWatch } from "../../src/cli/fleet-file-watch.js";
import type { ReloadSummary } from "../../src/gateway/membership.js";
import { eventually } from "../helpers.js";

const SUMMARY: ReloadSummary = { added: [], removed: [], kept: 1, needsRestart: [], discovery: [] };

describe("following a fleet file", () => {
  let dir: string;
  let path: string;
  let follower: FleetFileWatch | undefined;
  let lines: string[];
  let reloads: number;
  const replace = async (text: string): Promise<void> => {
    await writeFile(`${path}.tmp`, text);
    await rename(`${path}.tmp`, path);
  };
  const follow = (watch: boolean): void => {
    follower = watchFleetFile(path, () => (reloads++, Promise.resolve(SUMMARY)), { pollMs: 50, watch, log: (l) => lines.push(l), warn: (l) => lines.push(l) });
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-follow-"));
    path = join(dir, "fleet.yaml");
    await writeFile(path, "a: 1\n");
    lines = [];
    reloads = 0;
  });
  afterEach(async () => {
    follower?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const watch of [true, false]) {
    it(`${watch ? "with inotify" : "polling only"}: a change reloads once, the same content again reloads nothing`, async () => {
      follow(watch);
      await replace("a: 2\n");
      await eventually(() => reloads === 1, "the reload", 10_000);
      await replace("a: 2\n");
      // Five polls later, still one reload.
      const polls = lines.length;
      await new Promise<void>((done) => {
        let n = 0;
        const t = setInterval(() => ++n === 5 && (clearInterval(t), done()), 50);
      });
      assert.equal(reloads, 1);
      assert.equal(lines.length, polls);
      assert.match(lines[0]!, /fleet file reloaded \(file changed\): 0 added, 0 removed, 1 unchanged/);
    });
  }

  it("a change made before following started (while the gateway was starting) is applied", async () => {
    await replace("a: 9\n");
    follower = watchFleetFile(path, () => (reloads++, Promise.resolve(SUMMARY)), { pollMs: 50, watch: false, initial: "a: 1\n", log: (l) => lines.push(l), warn: (l) => lines.push(l) });
    await eventually(() => reloads === 1, "the reload of the version loaded before", 10_000);
  });

  it("a failed reload is reported and the next change is still applied", async () => {
    let fail = true;
    follower = watchFleetFile(path, () => (reloads++, fail ? Promise.reject(new Error("models.0: bad")) : Promise.resolve(SUMMARY)), { pollMs: 50, log: (l) => lines.push(l), warn: (l) => lines.push(l) });
    await replace("broken");
    await eventually(() => lines.some((l) => /not reloaded \(file changed\): models\.0: bad/.test(l)), "the refusal", 10_000);
    fail = false;
    await replace("a: 3\n");
    await eventually(() => lines.some((l) => /fleet file reloaded/.test(l)), "the reload", 10_000);
  });
});
