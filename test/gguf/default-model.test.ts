import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readGgufFileInfo } from "node-llama-cpp";
import { DEFAULT_MODEL_FILE, DEFAULT_MODEL_OPTIONS, defaultCacheDir, ensureDefaultModel } from "../../src/gguf/default-model.js";
import { DEFAULT_TINY_SHAPE, randomLlamaGguf } from "../../src/gguf/random-llama.js";
import { encodeGguf } from "../../src/gguf/writer.js";

let root: string;
let expected: Buffer;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "flotilla-default-model-"));
  expected = encodeGguf(randomLlamaGguf(DEFAULT_TINY_SHAPE, DEFAULT_MODEL_OPTIONS));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("ensureDefaultModel", () => {
  test("writes the model once, then reuses it", async () => {
    const dir = join(root, "once", "nested"); // created on demand
    const first = await ensureDefaultModel(dir);
    assert.deepEqual(first, { path: join(dir, DEFAULT_MODEL_FILE), created: true });
    assert.deepEqual(await readFile(first.path), expected);
    const mtime = (await stat(first.path)).mtimeMs;

    const second = await ensureDefaultModel(dir);
    assert.deepEqual(second, { path: first.path, created: false });
    assert.equal((await stat(first.path)).mtimeMs, mtime);
    assert.deepEqual(await readdir(dir), [DEFAULT_MODEL_FILE]);

    const info = await readGgufFileInfo(first.path, { logWarnings: false });
    assert.equal(info.metadata.general.name, "flotilla-tiny-random-v1");
  });

  test("replaces a file of the wrong size (a truncated or foreign file)", async () => {
    const dir = join(root, "stale");
    await ensureDefaultModel(dir);
    const path = join(dir, DEFAULT_MODEL_FILE);
    await writeFile(path, expected.subarray(0, 1000));
    const again = await ensureDefaultModel(dir);
    assert.equal(again.created, true);
    assert.deepEqual(await readFile(path), expected);
  });

  test("concurrent calls all end with one complete file and no temp files", async () => {
    const dir = join(root, "race");
    const results = await Promise.all([ensureDefaultModel(dir), ensureDefaultModel(dir), ensureDefaultModel(dir)]);
    for (const r of results) assert.equal(r.path, join(dir, DEFAULT_MODEL_FILE));
    assert.ok(results.some((r) => r.created));
    assert.deepEqual(await readFile(join(dir, DEFAULT_MODEL_FILE)), expected);
    assert.deepEqual(await readdir(dir), [DEFAULT_MODEL_FILE]);
  });

  test("the cache directory is $FLOTILLA_HOME, else ~/.cache/flotilla", () => {
    const saved = process.env["FLOTILLA_HOME"];
    try {
      process.env["FLOTILLA_HOME"] = "/srv/flotilla";
      assert.equal(defaultCacheDir(), "/srv/flotilla");
      delete process.env["FLOTILLA_HOME"];
      assert.equal(defaultCacheDir(), join(homedir(), ".cache", "flotilla"));
    } finally {
      if (saved === undefined) delete process.env["FLOTILLA_HOME"];
      else process.env["FLOTILLA_HOME"] = saved;
    }
  });
});
