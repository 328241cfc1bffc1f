/**
 * Cheap cancellation for the request path. On Node 20, `abort()` without a
 * reason builds a DOMException (with a stack trace) and `AbortSignal.any`
 * registers a WeakRef and a FinalizationRegistry entry; at thousands of
 * requests a second both showed in the gateway's CPU profile. Bookkeeping
 * aborts (a wait that is no longer needed) pass a reason made once, and a
 * controller that must follow a parent signal listens to it directly.
 */

/** The reason given when a wait or an attempt is stopped because it is no longer needed. */
export const NO_LONGER_NEEDED: Error = new Error("no longer needed");

/**
 * Makes `controller` abort when `parent` does (with the parent's reason);
 * returns what stops it listening, to call once the work is over.
 */
export function follow(controller: AbortController, parent: AbortSignal): () => void {
  if (parent.aborted) {
    controller.abort(parent.reason);
    return () => undefined;
  }
  const onAbort = (): void => controller.abort(parent.reason);
  parent.addEventListener("abort", onAbort, { once: true });
  return () => parent.removeEventListener("abort", onAbort);
}
