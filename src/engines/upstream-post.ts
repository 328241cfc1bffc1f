import type { Dispatcher } from "undici";

/** How a POST to an upstream ended: 200, its body already handed over; any other status with its body as text. */
export type PostOutcome = { readonly statusCode: 200 } | { readonly statusCode: number; readonly text: string };

export interface Post {
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly signal: AbortSignal;
}

/** A refused request's body is kept for its error message up to this many characters; the rest is dropped. */
const ERROR_TEXT_MAX = 64 * 1024;

/**
 * One POST whose 200 answer is handed to `onBytes` chunk by chunk as it
 * arrives, through undici's dispatch API. `request()` wraps every answer in
 * a Readable stream read through an async iterator: several promises, a
 * stream and its events per request, which the gateway's CPU profile at
 * 2,000 req/s showed around each upstream call. Here the chunks go straight
 * from the socket's parser to the caller.
 *
 * Rejects with what `onBytes` threw (the request is then aborted), with the
 * signal's reason when it aborts, or with undici's error when the
 * connection fails, as `request()` would.
 */
export function postStreaming(pool: Dispatcher, post: Post, onBytes: (chunk: Buffer) => void): Promise<PostOutcome> {
  return new Promise((resolve, reject) => {
    const { signal } = post;
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let failure: unknown;
    let statusCode = 0;
    let errorText = "";
    const stop = (reason: unknown): void => {
      failure ??= reason;
      controller?.abort(reason as Error);
    };
    const onAbort = (): void => stop(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const end = (error: unknown): void => {
      signal.removeEventListener("abort", onAbort);
      if (failure !== undefined || error !== undefined) reject(failure ?? error);
      else resolve(statusCode === 200 ? { statusCode } : { statusCode, text: errorText });
    };
    pool.dispatch(
      { method: "POST", path: post.path, headers: post.headers, body: post.body },
      {
        onRequestStart(c) {
          controller = c;
          if (failure !== undefined) c.abort(failure as Error);
        },
        onResponseStart(_c, status) {
          statusCode = status;
        },
        onResponseData(_c, chunk) {
          if (failure !== undefined) return;
          if (statusCode !== 200) {
            if (errorText.length < ERROR_TEXT_MAX) errorText = (errorText + chunk.toString("utf8")).slice(0, ERROR_TEXT_MAX);
            return;
          }
          try {
            onBytes(chunk);
          } catch (err) {
            stop(err);
          }
        },
        onResponseEnd: () => end(undefined),
        onResponseError: (_c, err) => end(err),
      },
    );
  });
}
