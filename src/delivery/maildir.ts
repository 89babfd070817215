/**
 * The Maildir delivery target (`maildir:DIR`, issue 12): each mailbox address is a directory
 * DIR/<address>/{tmp,new,cur} (created 0700), and a message is delivered the Maildir way
 * (D. J. Bernstein's maildir(5) as qmail, Courier and Dovecot read it): written to tmp/ under a
 * unique name, fsync'd, renamed into new/, and the directories fsync'd — only then `delivered`.
 *
 * Invariants:
 * - never throws: every problem is an outcome for its recipient (disk full or over quota →
 *   deferred; permission refused or a mailbox name that is not safe as a directory → failed);
 * - the message is written as given (CRLF, our Received header first), from the caller's Buffer,
 *   without another copy; `,S=<size>` in the name is the file's size;
 * - file names carry the queue id (`Q<id>R`), so a redelivery of the same queue id to the same
 *   mailbox is recognised and not written twice (at-least-once made exactly-once per mailbox);
 * - a name is unique across processes and restarts: seconds, microseconds, pid, queue id, a
 *   per-process counter and the host name, and the tmp/ file is created with O_EXCL.
 */
import { constants as fsc } from 'node:fs';
import { mkdir, open, opendir, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { DeliveryTarget, LocalDelivery, RecipientOutcome } from './types.js';

export interface MaildirOptions {
  /** The base directory: mailboxes are its subdirectories. */
  dir: string;
}

/** Why a mailbox address cannot be a directory name, or null when it can. */
export function unsafeMailboxName(mailbox: string): string | null {
  if (mailbox === '') return 'the mailbox name is empty';
  // One path component only: a '/' (or NUL, which ends a C path) would leave DIR.
  if (mailbox.includes('/') || mailbox.includes('\0')) return `mailbox ${JSON.stringify(mailbox)} contains '/' or NUL`;
  // A leading '.' makes '.', '..' (the parent: outside DIR) and hidden dot-folders (Maildir++ subfolders).
  if (mailbox.startsWith('.')) return `mailbox ${JSON.stringify(mailbox)} starts with '.'`;
  if (mailbox.includes('..')) return `mailbox ${JSON.stringify(mailbox)} contains '..'`;
  // Control characters (CR/LF, DEL...) make names that break tools that list the directory.
  if (/[\x00-\x1f\x7f\\]/.test(mailbox)) return `mailbox ${JSON.stringify(mailbox)} contains a control character or '\\'`;
  if (Buffer.byteLength(mailbox) > 255) return 'the mailbox name is longer than 255 bytes (a file name limit)';
  return null;
}

/** The queue id as it appears in file names: only [A-Za-z0-9_], anything else as %HH. */
export function encodeQueueId(id: string): string {
  let out = '';
  for (const b of Buffer.from(id, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The queue id encoded in a Maildir file name made by us, or null. A name is
 * `<sec>.M<usec>P<pid>Q<queue id>R<counter>.<host>,S=<size>` (+ `:2,<flags>` once in cur/):
 * the id sits between `Q` and `R` of the second dot-separated part.
 */
export function queueIdOfName(name: string): string | null {
  const m = /^[0-9]+\.M[0-9]+P[0-9]+Q([A-Za-z0-9_%]+)R[0-9]+\./.exec(name);
  return m === null ? null : (m[1] ?? null);
}

/** Outcome kind for a file-system error: disk full / over quota / read-only FS → deferred; refused → failed. */
export function classifyFsError(err: unknown): 'deferred' | 'failed' {
  const code = (err as { code?: unknown } | null)?.code;
  // Permission refused: retrying does not help until the operator fixes it; bounce now.
  if (code === 'EACCES' || code === 'EPERM') return 'failed';
  // ENOSPC, EDQUOT (over quota), EROFS, EIO, EMFILE...: may pass (space freed, quota raised).
  return 'deferred';
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

// Maildir convention for unsafe characters in the host part of a name: '/' and ':' as octal escapes.
const HOST = hostname().replace(/\//g, '\\057').replace(/:/g, '\\072') || 'localhost';
let counter = 0;

function uniqueName(qid: string, size: number): string {
  // Wall clock seconds and microseconds (the classic time + M<usec>), plus pid and a counter.
  const micros = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
  const sec = micros / 1_000_000n;
  const usec = micros % 1_000_000n;
  counter = (counter + 1) % 1_000_000_000;
  return `${sec}.M${usec}P${process.pid}Q${qid}R${counter}.${HOST},S=${size}`;
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Whether new/ or cur/ already holds a file of ours for this queue id (one pass, names streamed). */
async function alreadyDelivered(box: string, qid: string): Promise<boolean> {
  for (const sub of ['new', 'cur']) {
    const d = await opendir(join(box, sub), { bufferSize: 256 });
    for await (const e of d) if (queueIdOfName(e.name) === qid) return true;
  }
  return false;
}

export class MaildirTarget implements DeliveryTarget {
  readonly dir: string;

  constructor(opts: MaildirOptions) {
    this.dir = opts.dir;
  }

  async deliver(msg: LocalDelivery, signal?: AbortSignal): Promise<RecipientOutcome[]> {
    const out: RecipientOutcome[] = [];
    for (const recipient of msg.recipients) {
      if (signal?.aborted === true) {
        out.push({ recipient, outcome: 'deferred', error: 'delivery aborted' });
        continue;
      }
      out.push(await this.deliverOne(msg, recipient));
    }
    return out;
  }

  private async deliverOne(msg: LocalDelivery, recipient: string): Promise<RecipientOutcome> {
    const mailbox = recipient.toLowerCase();
    const unsafe = unsafeMailboxName(mailbox);
    if (unsafe !== null) return { recipient, outcome: 'failed', error: `maildir: ${unsafe}` };
    const box = join(this.dir, mailbox);
    const qid = encodeQueueId(msg.id);
    let tmpPath: string | null = null;
    try {
      let created = false;
      for (const sub of ['tmp', 'new', 'cur']) {
        // 0700: mail is private to the user the deliverer (and the mailbox server) runs as.
        if ((await mkdir(join(box, sub), { recursive: true, mode: 0o700 })) !== undefined) created = true;
      }
      if (created) {
        // New directories are durable only once their parents' entries are: fsync DIR and the mailbox.
        await fsyncDir(this.dir);
        await fsyncDir(box);
      }
      // Idempotency: delivery is at-least-once, and a crash between the rename below and the
      // queue's record of `delivered` brings the same queue id back. If new/ or cur/ (where the
      // user's reader may have moved it) already holds a file with this queue id, that delivery
      // happened: answer `delivered` without writing a second copy.
      if (await alreadyDelivered(box, qid)) return { recipient, outcome: 'delivered' };
      const name = uniqueName(qid, msg.data.length);
      tmpPath = join(box, 'tmp', name);
      // O_EXCL: never overwrite (maildir(5): a name in tmp/ that exists means try again).
      const fh = await open(tmpPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        // The caller's Buffer goes to the file as it is (no copy); loop for short writes.
        let off = 0;
        while (off < msg.data.length) {
          const { bytesWritten } = await fh.write(msg.data, off, msg.data.length - off);
          off += bytesWritten;
        }
        // maildir(5): the file is on disk before it appears in new/.
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmpPath, join(box, 'new', name));
      tmpPath = null;
      // The rename is durable once new/ is fsync'd (and tmp/, whose entry went away).
      await fsyncDir(join(box, 'new'));
      await fsyncDir(join(box, 'tmp'));
      return { recipient, outcome: 'delivered' };
    } catch (err) {
      if (tmpPath !== null) await unlink(tmpPath).catch(() => undefined);
      return { recipient, outcome: classifyFsError(err), error: `maildir ${box}: ${describe(err)}` };
    }
  }
}
