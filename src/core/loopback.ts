/**
 * Whether a bind address, or a peer's address, is this machine's loopback:
 * what keys-required defaults and the operator's loopback rule both ask.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  return host !== undefined && (host === "localhost" || host === "::1" || host.startsWith("127.") || host.startsWith("::ffff:127."));
}
