/** Gateways with the official openai client on them, started before a suite's tests and closed after them. */
import { after, before } from "node:test";
import OpenAI from "openai";
import { startGateway, tinyFleet, type RunningGateway } from "./helpers.js";

const clientOn = (gw: RunningGateway): OpenAI => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: "unused", maxRetries: 0 });

/** A gateway over `config` and a client on it, for the enclosing suite (read them inside its tests and hooks). */
export function clientSuite(config: unknown = tinyFleet()): { readonly gw: RunningGateway; readonly client: OpenAI } {
  const suite = {} as { gw: RunningGateway; client: OpenAI };
  before(async () => {
    suite.gw = await startGateway(config);
    suite.client = clientOn(suite.gw);
  });
  after(() => suite.gw?.close());
  return suite;
}

/**
 * The tiny model on one gateway (`tiny`), and a second gateway that serves it as `remote-tiny` through the
 * openai engine (`replica`: more engine settings), with a client on each: a real server on both sides.
 */
export function frontedSuite(replica: Readonly<Record<string, unknown>> = {}): { readonly upstream: RunningGateway; readonly front: RunningGateway; readonly direct: OpenAI; readonly viaFront: OpenAI } {
  const suite = {} as { upstream: RunningGateway; front: RunningGateway; direct: OpenAI; viaFront: OpenAI };
  before(async () => {
    suite.upstream = await startGateway(tinyFleet({ name: "tiny" }));
    suite.front = await startGateway({ models: [{ name: "remote-tiny", replicas: [{ engine: "openai", url: suite.upstream.url, upstream_model: "tiny", context: 512, ...replica }] }] });
    suite.direct = clientOn(suite.upstream);
    suite.viaFront = clientOn(suite.front);
  });
  after(async () => {
    await suite.front?.close();
    await suite.upstream?.close();
  });
  return suite;
}
