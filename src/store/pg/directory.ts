/**
 * The in-memory replica of the address directory (users: address, admin flag, sender patterns —
 * never password hashes; aliases), so that the reads the SMTP server makes at every RCPT and AUTH
 * (hasUser, senderPatterns, aliasTargets, resolveRecipient) stay synchronous with PostgreSQL.
 *
 * Invariants:
 * - A reload is one statement (one snapshot): the replica is always a state PostgreSQL committed,
 *   never a mix of two.
 * - Reloads are serialized, and a reload requested while one runs is done again after it (a
 *   change committed during a reload is not lost); requests meanwhile share that next reload.
 * - Kept current by three means: LISTEN postseal_directory (every transaction that changes users
 *   or aliases NOTIFYs it), a full reload every POLL_MS as a belt, and a full reload after the
 *   listening connection comes back (notifications sent while it was down are lost).
 * - The listening connection reconnects by itself with a growing delay (listen.ts); a failed
 *   reload keeps the last good replica.
 */
import type pg from 'pg';
import type { AddressReads } from '../resolve.js';
import { ListenConnection } from './listen.js';
import { DIRECTORY_CHANNEL, type Queryable } from './ops.js';

export const POLL_MS = 30_000;

const LOAD_SQL = `SELECT
  (SELECT coalesce(json_agg(json_build_array(address, admin) ORDER BY address), '[]') FROM users) AS users,
  (SELECT coalesce(json_agg(json_build_array(address, pattern) ORDER BY address, pattern), '[]') FROM user_senders) AS senders,
  (SELECT coalesce(json_agg(json_build_array(address, target) ORDER BY address, created_at, lower(target), target), '[]') FROM aliases) AS aliases`;

interface UserEntry {
  admin: boolean;
  senders: string[];
}

export class DirectoryReplica implements AddressReads {
  private users = new Map<string, UserEntry>();
  private aliases = new Map<string, string[]>();
  private current: Promise<void> | null = null;
  private pending: Promise<void> | null = null;
  /** Completed reloads (tests and status). */
  loads = 0;

  constructor(private readonly db: Queryable) {}

  isUser(address: string): boolean {
    return this.users.has(address);
  }

  isAdmin(address: string): boolean {
    return this.users.get(address)?.admin === true;
  }

  senderPatterns(address: string): string[] {
    return [...(this.users.get(address)?.senders ?? [])];
  }

  aliasTargets(address: string): string[] {
    return [...(this.aliases.get(address) ?? [])];
  }

  /**
   * Reloads; resolves once a reload that STARTED after this call has finished (so it saw every
   * transaction committed before the call). Rejects when that reload failed.
   */
  refresh(): Promise<void> {
    if (this.pending !== null) return this.pending;
    const before = this.current;
    const next = (async () => {
      // Always at least one tick: `this.pending = next` below runs before this line's successor.
      await (before ?? Promise.resolve()).catch(() => undefined);
      // From here on a new request needs a reload after this one: it must not join this one.
      this.pending = null;
      const p = this.load();
      this.current = p;
      await p;
    })();
    this.pending = next;
    return next;
  }

  private async load(): Promise<void> {
    const r = await this.db.query<{ users: Array<[string, boolean]>; senders: Array<[string, string]>; aliases: Array<[string, string]> }>(LOAD_SQL);
    const row = r.rows[0];
    if (row === undefined) return;
    const users = new Map<string, UserEntry>();
    for (const [address, admin] of row.users) users.set(address, { admin, senders: [] });
    for (const [address, pattern] of row.senders) users.get(address)?.senders.push(pattern);
    const aliases = new Map<string, string[]>();
    for (const [address, target] of row.aliases) {
      const list = aliases.get(address);
      if (list === undefined) aliases.set(address, [target]);
      else list.push(target);
    }
    this.users = users;
    this.aliases = aliases;
    this.loads++;
  }
}

/**
 * The LISTEN connection and the poll timer that keep a replica current. start() resolves once the
 * first LISTEN is in place or failed (the store opens either way; the listener keeps trying).
 */
export class DirectoryListener {
  private readonly listen: ListenConnection;
  private readonly poll: NodeJS.Timeout;

  constructor(config: pg.ClientConfig, replica: DirectoryReplica, pollMs = POLL_MS) {
    const reload = (): Promise<void> => replica.refresh().catch(() => undefined);
    this.listen = new ListenConnection({
      config,
      channel: DIRECTORY_CHANNEL,
      onNotify: () => void reload(),
      // Notifications sent while we were not listening are gone: read the whole directory again.
      onListening: reload,
      failFirst: false,
    });
    this.poll = setInterval(() => void reload(), pollMs);
    this.poll.unref();
  }

  /** LISTEN sessions established (the first one and every reconnect). */
  get connects(): number {
    return this.listen.connects;
  }

  async start(): Promise<void> {
    await this.listen.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.poll);
    await this.listen.stop();
  }
}
