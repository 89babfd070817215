/**
 * The owner lock of a data directory: one `postseal serve` per data directory (the embedded
 * SQLite store has one writer and its queue leases belong to the process that runs it). The lock
 * is a pid file, DATA/serve.pid, created exclusively (O_EXCL); a file naming a process that no
 * longer runs is stale (a crash, a SIGKILL) and is taken over. The CLI commands that read or
 * edit the store while serve runs (`queue`, `user`, `alias`, `mailbox`) do not take it.
 *
 * Why it matters: the queue runner leases the rows it claims; a process killed mid-delivery
 * leaves its leases behind (up to the longest attempt deadline: 15 min for LMTP). The owner of
 * the lock knows no other process runs the queue, so it may release them at start (serve.ts)
 * instead of letting the mail wait — at-least-once, as every MTA after a crash.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PostsealError } from '../errors.js';

export const OWNER_FILE = 'serve.pid';

export interface OwnerLock {
  /** The pid of the process that held the lock before us and died (null: the lock was free). */
  readonly tookOverFrom: number | null;
  release(): void;
}

function running(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists (another user's process); ESRCH: gone.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the data directory's owner lock, or throws STORE_LOCKED naming the pid that holds it. */
export function lockDataDir(dataDir: string): OwnerLock {
  const file = join(dataDir, OWNER_FILE);
  let tookOverFrom: number | null = null;
  for (let tries = 0; tries < 3; tries++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = NaN;
      try {
        pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
      } catch {
        // Vanished between open and read: try again.
      }
      // Our own pid: a library user running serve twice in one process on one directory.
      if (running(pid) && pid !== process.pid) {
        throw new PostsealError('STORE_LOCKED', `data directory ${dataDir} is in use by postseal serve (pid ${pid}; ${file}); one serve per data directory`);
      }
      try {
        unlinkSync(file);
      } catch {
        // Someone else removed it first; the next O_EXCL open decides.
      }
      if (Number.isInteger(pid) && pid !== process.pid) tookOverFrom = pid;
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    let released = false;
    return {
      tookOverFrom,
      release() {
        if (released) return;
        released = true;
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
        } catch {
          // Already gone.
        }
      },
    };
  }
  throw new PostsealError('STORE_LOCKED', `data directory ${dataDir}: could not take ${file}`);
}
