import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { CLI, script } from "../../test/paths.js";

/**
 * Upstream engines as child processes, so a bench can do to them what
 * happens to real servers: kill -9, SIGSTOP / SIGCONT, restart on the same
 * port. Each knows its state, so the chaos loop never takes the last one.
 */

export type ProcState = "starting" | "up" | "stopped" | "down";

export class UpstreamProc {
  state: ProcState = "down";
  #child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    /** What it runs: node's arguments after the executable. */
    readonly argv: readonly string[],
    /** A line on stdout that says it serves. */
    readonly ready: RegExp,
    readonly label: string,
    readonly env: NodeJS.ProcessEnv = process.env,
    /** Where its stderr goes (a peer that logs a stack per failed request is quieter ignored). */
    readonly stderr: "inherit" | "ignore" = "inherit",
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The running process's id (for its CPU time), if it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts it and resolves once it prints its ready line; rejects if it exits first. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [...this.argv], { env: this.env, stdio: ["ignore", "pipe", this.stderr] });
    this.#child = child;
    this.state = "starting";
    await new Promise<void>((ok, fail) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        if (this.state !== "starting") return;
        out += d.toString();
        if (this.ready.test(out)) {
          this.state = "up";
          ok();
        }
      });
      child.once("exit", (code, signal) => {
        if (this.#child === child) this.state = "down";
        fail(new Error(`${this.label} on ${this.port} exited (${signal ?? code}) during start`));
      });
    });
  }

  /** kill -9: no goodbye, open sockets reset by the kernel. */
  kill(): void {
    this.#child?.kill("SIGKILL");
    this.#child = undefined;
    this.state = "down";
  }

  /** SIGTERM, as an orchestrator stops a server: resolves with its exit code once it has drained and exited. */
  async terminate(): Promise<number | null> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    const code = await exited;
    this.#child = undefined;
    this.state = "down";
    return code;
  }

  /** SIGSTOP: the process freezes with its sockets open, as a wedged server does. */
  stop(): void {
    this.#child?.kill("SIGSTOP");
    this.state = "stopped";
  }

  cont(): void {
    if (this.state !== "stopped") return;
    this.#child?.kill("SIGCONT");
    this.state = "up";
  }
}

/** A fake upstream process (test/chaos/fake-upstream.ts) in `mode`. */
export function fakeProc(port: number, opts: { mode?: string; tokensPerChunk?: number; tokenDelayMs?: number; firstTokenMs?: number }): UpstreamProc {
  const argv = [...script("test/chaos/fake-upstream.ts"), "--port", String(port), "--mode", opts.mode ?? "good"];
  if (opts.tokensPerChunk !== undefined) argv.push("--tokens-per-chunk", String(opts.tokensPerChunk));
  if (opts.tokenDelayMs !== undefined) argv.push("--token-delay-ms", String(opts.tokenDelayMs));
  if (opts.firstTokenMs !== undefined) argv.push("--first-token-ms", String(opts.firstTokenMs));
  return new UpstreamProc(port, argv, /fake-upstream listening on/, `fake ${opts.mode ?? "good"}`);
}

/** A Flotilla process serving the built-in model through llama.cpp. */
export function realProc(port: number, modelPath: string, home: string): UpstreamProc {
  const argv = [...CLI, "serve", "--model", modelPath, "--port", String(port), "--parallel", "8", "--context", "1024"];
  return new UpstreamProc(port, argv, /listening on/, "engine", { ...process.env, FLOTILLA_HOME: home });
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}
