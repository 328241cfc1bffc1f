import { createInterface } from "node:readline";

/**
 * A streaming client in its own process, as a real client would be, so that
 * reading the stream does not share the gateway's event loop. For each line
 * "go" on stdin it streams one completion and prints its tokens/s.
 */
const [url, body] = [process.argv[2]!, process.argv[3]!];
for await (const _line of createInterface({ input: process.stdin })) {
  const t = performance.now();
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
  const text = await res.text();
  const usage = /"completion_tokens":(\d+)/.exec(text);
  if (usage === null) throw new Error(`no usage in stream: ${text.slice(0, 200)}`);
  process.stdout.write(`${Number(usage[1]) / ((performance.now() - t) / 1000)}\n`);
}
