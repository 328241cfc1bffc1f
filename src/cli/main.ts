import { Command, CommanderError } from "commander";
import { registerBatchCommands } from "./batch-commands.js";
import { registerCalibrateCommand } from "./calibrate-command.js";
import { registerFleetCommands } from "./fleet-commands.js";
import { registerHardwareCommands } from "./hardware-commands.js";
import { registerPlanCommand } from "./plan-command.js";
import { registerServeCommand } from "./serve.js";
import { registerSimCommand } from "./sim-command.js";
import { registerTenancyCommands } from "./tenancy-commands.js";

export function buildProgram(): Command {
  const program = new Command()
    .name("flotilla")
    .description("One controller that makes a fleet of accelerators behave as one device, behind an OpenAI-compatible API.")
    .showHelpAfterError("(run flotilla --help for usage)")
    .exitOverride();
  registerServeCommand(program);
  registerSimCommand(program);
  registerPlanCommand(program);
  registerFleetCommands(program);
  registerHardwareCommands(program);
  registerCalibrateCommand(program);
  registerTenancyCommands(program);
  registerBatchCommands(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`flotilla: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
