import { runLoad, type LoadSpec } from "./load.js";

// Runs one load in its own process, so the generator does not share the
// gateway's event loop: spec in argv[2] as JSON, result on stdout as JSON.
const spec = JSON.parse(process.argv[2] ?? "{}") as LoadSpec;
process.stdout.write(JSON.stringify(await runLoad(spec)));
