/** Runs `flotilla` commands in-process, their output captured: for tests of a command's behaviour without spawning it. */
import { Command, CommanderError } from "commander";

export interface CliRun {
  stdout: string;
  stderr: string;
  /** Commander's exit code where the command ended in an error; undefined when it succeeded. */
  exitCode: number | undefined;
}

/** What a command's register function writes to (the io every `register…Command` takes). */
export interface CliIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown; readonly isTTY: boolean; readonly columns: number };
}

/** Runs `flotilla <args>` with the commands `register` adds, capturing what they and commander print. */
export async function runCli(args: readonly string[], register: (program: Command, io: CliIo) => void): Promise<CliRun> {
  const run: CliRun = { stdout: "", stderr: "", exitCode: undefined };
  const out = { writeOut: (s: string) => void (run.stdout += s), writeErr: (s: string) => void (run.stderr += s) };
  const program = new Command().name("flotilla").exitOverride().configureOutput(out);
  register(program, { stdout: { write: (s: string) => (run.stdout += s) }, stderr: { write: (s: string) => (run.stderr += s), isTTY: false, columns: 120 } });
  for (const sub of program.commands) sub.exitOverride().configureOutput(out);
  try {
    await program.parseAsync(["node", "flotilla", ...args]);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    run.exitCode = err.exitCode;
  }
  return run;
}
