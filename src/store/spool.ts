/**
 * Message bodies on disk: one file per large message in `<dataDir>/bodies/`, written as the
 * message arrives (the server never holds a large body whole in memory), fsync'd before the
 * message's row commits. The row in SQLite names the file; the row's commit is the moment the
 * message exists.
 *
 * Why a file per message and not chunks in SQLite: a body that goes through SQLite is written
 * twice (WAL, then checkpoint) and copied into the writer's batch; a file is written once, by the
 * session, in pieces of the spool threshold, and costs one fsync. Measured in bench/README.md.
 *
 * Invariants:
 * - a file is created exclusively (O_EXCL) under a name the session chose (the queue id), mode 0600;
 * - finish() returns only after the file's data is fsync'd; the directory entry is made durable
 *   by the writer (one directory fsync per batch that holds spooled messages) before COMMIT;
 * - a failed or abandoned message's file is unlinked by discard(); a file left behind by a crash
 *   between fsync and COMMIT is referenced by no row and is removed at the next `serve` start
 *   (removeOrphans, files older than an hour so another process's message in progress is safe).
 */
import { closeSync, fsync, fsyncSync, mkdirSync, openSync, readdirSync, statSync, unlinkSync, writevSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { PostsealError } from '../errors.js';

export const BODIES_DIR = 'bodies';
/** writev takes at most IOV_MAX (1024 on Linux) buffers per call. */
const IOV_MAX = 1024;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A message body being written to its spool file. */
export interface SpoolFile {
  /** Appends the pieces, in order (synchronous: the page cache takes them; see finish()). */
  write(parts: readonly Uint8Array[]): void;
  /** fsync and close; resolves with the file's name (relative to the bodies directory) and size. */
  finish(): Promise<SpooledBody>;
  /** Close and remove the file (the message was refused or abandoned). Idempotent. */
  discard(): void;
}

export interface SpooledBody {
  file: string;
  size: number;
}

export interface BodySpool {
  create(name: string): SpoolFile;
  /** The path of a finished spool file (for reading it as a stream, e.g. to verify it). */
  pathOf?(name: string): string;
  /**
   * Overwrites bytes of a finished spool file in place (same length: nothing shifts, the body is
   * not copied) and fsyncs it again; resolves once the change is on disk.
   */
  patch?(name: string, patches: readonly { offset: number; bytes: Uint8Array }[]): Promise<void>;
}

export class FileSpool implements BodySpool {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  create(name: string): SpoolFile {
    if (!NAME.test(name)) throw new PostsealError('STORE_BAD_ID', `unusable spool name ${JSON.stringify(name.slice(0, 80))}`);
    const path = join(this.dir, name);
    const fd = openSync(path, 'wx', 0o600);
    return new OpenSpoolFile(fd, path, name);
  }

  pathOf(name: string): string {
    if (!NAME.test(name)) throw new PostsealError('STORE_BAD_ID', `unusable spool name ${JSON.stringify(name.slice(0, 80))}`);
    return join(this.dir, name);
  }

  async patch(name: string, patches: readonly { offset: number; bytes: Uint8Array }[]): Promise<void> {
    if (patches.length === 0) return;
    const fh = await open(this.pathOf(name), 'r+');
    try {
      const size = (await fh.stat()).size;
      for (const p of patches) {
        // Same-length overwrites inside the file only: a patch never grows or shifts it.
        if (p.offset < 0 || p.offset + p.bytes.byteLength > size) throw new PostsealError('STORE_WRITE_FAILED', `patch outside ${name} (${p.offset}+${p.bytes.byteLength} > ${size})`);
        let done = 0;
        while (done < p.bytes.byteLength) done += (await fh.write(p.bytes, done, p.bytes.byteLength - done, p.offset + done)).bytesWritten;
      }
      // The durability contract: the patched bytes are on disk before the row commits.
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

class OpenSpoolFile implements SpoolFile {
  private size = 0;
  private state: 'open' | 'finishing' | 'done' | 'discarded' = 'open';

  constructor(
    private fd: number,
    private readonly path: string,
    private readonly name: string,
  ) {}

  write(parts: readonly Uint8Array[]): void {
    if (this.state !== 'open') throw new PostsealError('STORE_SPOOL_CLOSED', 'spool file is closed');
    for (let i = 0; i < parts.length; i += IOV_MAX) {
      let batch = parts.slice(i, i + IOV_MAX).filter((p) => p.byteLength > 0);
      while (batch.length > 0) {
        let n = writevSync(this.fd, batch);
        this.size += n;
        // A short write: skip what went out and go on with the rest.
        while (batch.length > 0 && n > 0) {
          const first = batch[0] as Uint8Array;
          if (n >= first.byteLength) {
            n -= first.byteLength;
            batch = batch.slice(1);
          } else {
            batch = [first.subarray(n), ...batch.slice(1)];
            n = 0;
          }
        }
      }
    }
  }

  finish(): Promise<SpooledBody> {
    if (this.state !== 'open') return Promise.reject(new PostsealError('STORE_SPOOL_CLOSED', 'spool file is closed'));
    this.state = 'finishing';
    // fsync in the thread pool: the event loop goes on serving other sessions meanwhile.
    return new Promise<SpooledBody>((resolve, reject) => {
      fsync(this.fd, (err) => {
        if (this.state === 'discarded') return reject(new PostsealError('STORE_SPOOL_CLOSED', 'spool file was discarded'));
        if (err) {
          this.discard();
          return reject(new PostsealError('STORE_WRITE_FAILED', `fsync ${this.path}: ${err.code ?? err.message}`, { cause: err }));
        }
        closeSync(this.fd);
        this.fd = -1;
        this.state = 'done';
        resolve({ file: this.name, size: this.size });
      });
    });
  }

  discard(): void {
    if (this.state === 'discarded') return;
    const wasOpen = this.fd >= 0;
    this.state = 'discarded';
    if (wasOpen) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = -1;
    }
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/**
 * Removes files in `dir` that no row references and that were last written more than `minAgeMs`
 * ago (a message another process is still receiving is younger). Returns how many were removed.
 */
export function removeOrphans(dir: string, referenced: (name: string) => boolean, minAgeMs = 3_600_000, now = Date.now()): number {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (referenced(name)) continue;
    const path = join(dir, name);
    try {
      if (now - statSync(path).mtimeMs < minAgeMs) continue;
      unlinkSync(path);
      removed++;
    } catch {
      // raced with its owner: leave it
    }
  }
  return removed;
}

/** Makes the entries of a directory (files created or renamed in it) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
