/**
 * The admin commands find the gateway from FLOTILLA_URL when --url is not
 * given. The CLI runs as a child process: run-cli.ts's in-process runner
 * captures stdout, which would swallow the test reporter's lines.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, test } from "node:test";
import { gatewayPerSuite } from "./harness.js";
import { CLI } from "../paths.js";


describe("flotilla tenants with FLOTILLA_URL", () => {
  const suite = gatewayPerSuite();

  test("FLOTILLA_URL names the gateway when --url is not given; --url wins over it", async () => {
    const cli = (...args: string[]) => promisify(execFile)(process.execPath, [...CLI, ...args], { env: { ...process.env, FLOTILLA_URL: suite.gw.url } });
    assert.match((await cli("tenants", "create", "team-env")).stdout, /team-env/);
    assert.ok((JSON.parse((await cli("tenants", "list", "--json")).stdout) as { id: string }[]).some((t) => t.id === "team-env"));
    await assert.rejects(cli("tenants", "list", "--url", "http://127.0.0.1:9"), /127\.0\.0\.1:9/);
  });
});
