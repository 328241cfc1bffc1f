/**
 * How long the `flotilla` command takes to start: `--help`, `catalog` and
 * `estimate` to exit, `serve` (the built-in model, already on disk) to print
 * its listening line. Runs the compiled CLI (`npm run build` first), as
 * users do, each command `--runs` times (default 7), and prints the median
 * and the best.
 *
 *   npm run build && node --import tsx bench/cli-start.ts [--runs 7]
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/flotilla.js");
const RUNS = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 7;
if (!existsSync(join(ROOT, "dist/cli/run.js"))) {
  process.stderr.write("dist/ is missing: run `npm run build` first\n");
  process.exit(2);
}

/** Milliseconds from spawn until the process exits, or until a stdout line matches `until` (then it is stopped). */
function timed(args: readonly string[], env: NodeJS.ProcessEnv, until?: RegExp): Promise<number> {
  return new Promise((ok, fail) => {
    const start = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (until !== undefined && until.test(out)) {
        const ms = performance.now() - start;
        child.kill("SIGKILL");
        ok(ms);
      }
    });
    child.once("exit", (code) => {
      if (until === undefined) {
        if (code === 0) ok(performance.now() - start);
        else fail(new Error(`flotilla ${args.join(" ")} exited ${code}`));
      } else if (!until.test(out)) fail(new Error(`flotilla ${args.join(" ")} exited before ${until}`));
    });
  });
}

const home = await mkdtemp(join(tmpdir(), "flotilla-cli-start-"));
const env = { ...process.env, FLOTILLA_HOME: home };
try {
  // The first serve writes the built-in model; what is timed is a start with it on disk.
  await timed(["serve", "--port", "0"], env, /listening on/);
  const commands: [string, string[], RegExp?][] = [
    ["flotilla --help", ["--help"]],
    ["flotilla catalog", ["catalog"]],
    ["flotilla estimate --hw h100 --model llama-3.1-8b", ["estimate", "--hw", "h100", "--model", "llama-3.1-8b"]],
    ["flotilla serve (built-in model), to listening", ["serve", "--port", "0"], /listening on/],
  ];
  const lines = ["| command | median | best |", "|---|---:|---:|"];
  for (const [label, args, until] of commands) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await timed(args, env, until));
    times.sort((a, b) => a - b);
    lines.push(`| \`${label}\` | ${(times[times.length >> 1]! / 1000).toFixed(2)} s | ${(times[0]! / 1000).toFixed(2)} s |`);
  }
  process.stdout.write(`node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "?"}), ${RUNS} runs each\n\n${lines.join("\n")}\n`);
} finally {
  await rm(home, { recursive: true, force: true });
}
