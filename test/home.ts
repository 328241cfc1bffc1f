/**
 * Loaded into every test process (package.json's test script, `--import`):
 * Flotilla's home (the built-in model, the default SQLite ledger) is a
 * temporary folder of the process's own, inherited by every process a test
 * starts, so `npm test` never writes to the user's ~/.cache/flotilla, nor to
 * a FLOTILLA_HOME they set. Removed when the process exits.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const home = mkdtempSync(join(tmpdir(), "flotilla-test-home-"));
process.env.FLOTILLA_HOME = home;
process.on("exit", () => rmSync(home, { recursive: true, force: true }));
