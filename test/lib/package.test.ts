/**
 * Flotilla as an installed package: `import ... from "flotilla"` resolves to
 * the built library with its type declarations, examples/library.mjs runs
 * against it, and `npm pack` ships only what a user needs. The package is
 * put together in a temporary folder (never this checkout's dist/).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { COMPILED, ROOT } from "../paths.js";

const run = promisify(execFile);

describe("the flotilla package", () => {
  let dir: string;
  let pkg: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flotilla-package-"));
    pkg = join(dir, "flotilla");
    // npm test has compiled src/ with its declarations and the dashboard's files already (.test-build/src):
    // the package takes that instead of type-checking and emitting src/ a second time. Run from source, it builds.
    if (COMPILED) await cp(join(ROOT, ".test-build/src"), join(pkg, "dist"), { recursive: true });
    else {
      await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.build.json"), "--outDir", join(pkg, "dist")], { cwd: ROOT });
      await cp(join(ROOT, "src/obs/ui"), join(pkg, "dist/obs/ui"), { recursive: true });
    }
    for (const f of ["package.json", "README.md", "bin", "examples"]) await cp(join(ROOT, f), join(pkg, f), { recursive: true });
    await symlink(join(ROOT, "node_modules"), join(pkg, "node_modules"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("examples/library.mjs runs against it: the hardware model, the twin and a gateway, through import from \"flotilla\"", async () => {
    const { stdout } = await run(process.execPath, [join(pkg, "examples/library.mjs")], { cwd: pkg, env: { ...process.env, FLOTILLA_HOME: join(dir, "home") }, timeout: 120_000 });
    assert.match(stdout, /^catalog: \d+ accelerators, \d+ models$/m);
    assert.match(stdout, /^estimate: llama-3\.1-8b on h100 fp8: \d+ output tokens\/s/m);
    assert.match(stdout, /^twin: 200 of 200 requests done/m);
    assert.match(stdout, /^gateway: 200, 8 tokens from tiny\/0$/m);
  });

  it("declares its types: the entry's .d.ts names the library's functions", async () => {
    const manifest = JSON.parse(await readFile(join(pkg, "package.json"), "utf8")) as { exports: Record<string, { types: string; default: string }> };
    const types = await readFile(join(pkg, manifest.exports["."]!.types), "utf8");
    for (const name of ["createGateway", "loadFleet", "simulate", "estimate", "catalog"]) assert.match(types, new RegExp(`\\b${name}\\b`), name);
  });

  it("npm pack ships bin/, dist/, the manifest and the README, nothing else", async () => {
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: pkg });
    const [packed] = JSON.parse(stdout) as { files: { path: string }[] }[];
    const paths = packed!.files.map((f) => f.path);
    const stray = paths.filter((p) => !/^(bin|dist)\//.test(p) && !["package.json", "README.md", "LICENSE"].includes(p));
    assert.deepEqual(stray, []);
    for (const p of ["bin/flotilla.js", "dist/index.js", "dist/index.d.ts", "dist/cli/run.js"]) assert.ok(paths.includes(p), p);
    assert.ok(!paths.some((p) => p.endsWith(".test.js") || p.startsWith("dist/test")), "no tests");
  });
});
