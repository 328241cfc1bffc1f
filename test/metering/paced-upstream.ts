/**
 * An OpenAI-compatible upstream that answers at a set pace: its first token
 * `firstMs` after the request, then one every `everyMs`, `tokens` in all,
 * reporting `promptTokens` prompt tokens. The pace may be changed between
 * requests (an engine that slows down). For tests of what the gateway
 * measures of an engine's timing.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Pace {
  firstMs: number;
  everyMs: number;
  tokens: number;
  promptTokens: number;
}

export interface PacedUpstream {
  readonly url: string;
  readonly pace: Pace;
  /** Tokens written so far, over every request: what a test waits on to know a request is decoding. */
  readonly tokensSent: number;
  close(): void;
}

const chunk = (body: unknown): string => `data: ${JSON.stringify(body)}\n\n`;

export async function pacedUpstream(initial: Pace): Promise<PacedUpstream> {
  const pace = { ...initial };
  let tokensSent = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    if (req.method === "GET") return void res.end("ok");
    const { firstMs, everyMs, tokens, promptTokens } = pace;
    res.writeHead(200, { "content-type": "text/event-stream" });
    let sent = 0;
    // Each later token is due `everyMs` apart from when the first went out: a late timer on a loaded
    // machine delays one token, not every one after it, and a late first token does not squeeze the rest.
    let firstAt = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (sent === 0) firstAt = performance.now();
      sent++;
      tokensSent++;
      const last = sent >= tokens;
      res.write(chunk({ choices: [{ index: 0, text: " x", finish_reason: last ? "length" : null }] }));
      if (!last) return void setTimeout(next, Math.max(0, firstAt + sent * everyMs - performance.now()));
      res.end(chunk({ choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: tokens, total_tokens: promptTokens + tokens } }) + "data: [DONE]\n\n");
    };
    setTimeout(next, firstMs);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pace,
    get tokensSent() {
      return tokensSent;
    },
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
