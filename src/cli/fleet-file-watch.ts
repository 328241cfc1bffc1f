/**
 * Follows a fleet file: reloads on SIGHUP and when the file's content
 * changes. Editors and ConfigMap updates replace the file rather than write
 * it, and inotify may be unavailable (a host out of inotify instances answers
 * ENOSPC/EMFILE), so a change is noticed two ways: a watch on the folder for
 * speed, and a poll of the file's content that always works. A change is
 * applied once, whichever way saw it first.
 */
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { ReloadSummary } from "../gateway/membership.js";

export interface FleetFileWatch {
  stop(): void;
}

export interface FleetFileWatchOptions {
  /** How often the content is compared when no watch event came (ms). */
  readonly pollMs?: number;
  /** false: poll only (a network filesystem never delivers inotify events). */
  readonly watch?: boolean;
  /** The text of the version in force (what the gateway loaded); default: the file as it is when following starts. */
  readonly initial?: string | undefined;
  readonly log?: (line: string) => void;
  readonly warn?: (line: string) => void;
}

export function watchFleetFile(path: string, reload: () => Promise<ReloadSummary>, opts: FleetFileWatchOptions = {}): FleetFileWatch {
  const log = opts.log ?? ((l) => process.stdout.write(l));
  const warn = opts.warn ?? ((l) => process.stderr.write(l));
  let seen: Promise<string | undefined> = opts.initial === undefined ? contentOf(path) : Promise.resolve(opts.initial);
  let queue = Promise.resolve();
  const run = (why: string): void => {
    queue = queue.then(() => reload().then((r) => log(`flotilla: fleet file reloaded (${why}): ${summary(r)}\n`), (err: unknown) => warn(`flotilla: fleet file not reloaded (${why}): ${(err as Error).message}\n`)));
  };
  // Only content that differs from the last seen reloads: a save fires several events, and the poll sees it again.
  const changed = (): void => {
    seen = seen.then(async (before) => {
      const now = await contentOf(path);
      if (now !== undefined && now !== before) run("file changed");
      return now ?? before;
    });
  };
  const onHup = (): void => run("SIGHUP");
  process.on("SIGHUP", onHup);
  let timer: NodeJS.Timeout | undefined;
  const watcher = opts.watch === false ? undefined : watchFolder(path, () => {
    clearTimeout(timer);
    timer = setTimeout(changed, 200);
  }, warn);
  const poll = setInterval(changed, opts.pollMs ?? 2_000).unref();
  return {
    stop: () => {
      process.off("SIGHUP", onHup);
      watcher?.close();
      clearTimeout(timer);
      clearInterval(poll);
    },
  };
}

/** The folder is watched, not the file: the kubelet swaps the `..data` link the file points through (atomic_writer.go). */
function watchFolder(path: string, onChange: () => void, warn: (line: string) => void): FSWatcher | undefined {
  const noWatch = (err: Error): void => warn(`flotilla: not watching ${dirname(path)} (${err.message}); polling the fleet file instead\n`);
  try {
    const w = watch(dirname(path), (_event, name) => {
      if (name === basename(path) || name === "..data") onChange();
    });
    w.on("error", (err) => {
      noWatch(err);
      w.close();
    });
    return w.unref();
  } catch (err) {
    noWatch(err as Error);
    return undefined;
  }
}

function contentOf(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

function summary(r: ReloadSummary): string {
  const restart = r.needsRestart.length > 0 ? `; ${r.needsRestart.join(", ")} changed and take a restart` : "";
  const discovery = r.discovery.length > 0 ? `; discovery restarted for ${r.discovery.join(", ")}` : "";
  return `${r.added.length} added, ${r.removed.length} removed, ${r.kept} unchanged${restart}${discovery}`;
}
