import { Option, type Command } from "commander";

/** The running gateway an admin command talks to: --url, else FLOTILLA_URL, else the local default. */
export const withGatewayUrl = (c: Command): Command =>
  c.addOption(new Option("--url <url>", "the gateway").env("FLOTILLA_URL").default("http://127.0.0.1:8080"));
