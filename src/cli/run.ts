// The `flotilla` executable's entry: bin/flotilla.js loads the compiled copy of this file.
import { main } from "./main.js";

await main(process.argv);
