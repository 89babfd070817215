/**
 * Signals between the nodes of one PostgreSQL store (issue 13 item 4): "the certificate was
 * renewed, reload it" reaches every running node without a restart.
 *
 * Two parts, because NOTIFY alone is lost by a node that was not listening at that moment:
 * - durable: a row per kind in `postseal_signals(kind, generation, at)`; publish bumps the
 *   generation and sends the NOTIFY in ONE transaction (PostgreSQL delivers a NOTIFY at commit,
 *   so a listener never hears of a generation it cannot read);
 * - live: `LISTEN postseal_signal` on one dedicated connection; the payload is JSON
 *   {kind, detail, from, generation}.
 *
 * Invariants:
 * - Each subscriber remembers the generation it acted on (the one current when it subscribed, or
 *   at open: the node read its files then) and is called only for a newer one, once per
 *   generation whichever way it learnt of it (a NOTIFY, the catch-up read after a reconnect, the
 *   poll). A subscriber's action must be idempotent (a certificate reload is).
 * - After the connection comes back the generations are read again (catch-up): a signal published
 *   while this node was cut off fires then. When they cannot be read the subscribers are called
 *   anyway ("maybe missed"). A poll every pollMs (default 30 s) reads them too, and so also notices
 *   a connection that died without a FIN (the read has a deadline).
 * - Reconnects wait BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS (listen.ts); the loss and the
 *   recovery are logged once each (not every failed attempt).
 * - Input from the channel is bounded and checked: a payload over MAX_PAYLOAD_BYTES, not JSON, of
 *   an unknown kind or without a safe integer generation is ignored (another version of postseal
 *   may share the channel); `detail` is cut to MAX_DETAIL_CHARS on both sides.
 * - The table is created idempotently here (CREATE TABLE IF NOT EXISTS under the migration lock,
 *   so nodes starting together do not race on it) until schema.ts carries it as a migration.
 */
import { hostname } from 'node:os';
import type pg from 'pg';
import { PostsealError, UsageError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { inTransaction, poolConfig, storeError } from './connect.js';
import { ListenConnection } from './listen.js';
import { MIGRATION_LOCK } from './schema.js';

export const SIGNAL_CHANNEL = 'postseal_signal';
export const SIGNAL_KINDS = ['certificates'] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];

/** PostgreSQL's own limit is 8000 bytes; ours is far below it (a kind, a short note, a node name). */
export const MAX_PAYLOAD_BYTES = 1024;
export const MAX_DETAIL_CHARS = 200;
const MAX_FROM_CHARS = 100;
export const POLL_MS = 30_000;

const CREATE_SQL = `CREATE TABLE IF NOT EXISTS postseal_signals (
  kind       text COLLATE "C" PRIMARY KEY,
  generation bigint NOT NULL,
  at         timestamptz NOT NULL DEFAULT now()
)`;

export interface SignalEvent {
  kind: SignalKind;
  generation: number;
  /** What the publisher said (e.g. why), cut to MAX_DETAIL_CHARS; null on a catch-up. */
  detail: string | null;
  /** The publishing node (hostname-pid or its node id); null on a catch-up. */
  from: string | null;
  /** How we learnt of it: the live NOTIFY, or a read of the generations (reconnect, poll, unreadable). */
  via: 'notify' | 'catch-up';
}

export interface PgSignalsOptions {
  /** A file holding the password (read once); else PGPASSWORD or ~/.pgpass. */
  passwordFile?: string | null;
  /** Deadline of a connection attempt and of each statement's answer (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Who publishes, in the payload (default hostname-pid). */
  from?: string;
  /** Period of the generation poll (default POLL_MS). */
  pollMs?: number;
  /** Connection lost / back, and ignored payloads. */
  logger?: Logger;
}

export interface PgSignals {
  /** Bumps the kind's generation and NOTIFYs every node, in one transaction; resolves with the new generation. */
  publish(kind: SignalKind, detail?: string): Promise<number>;
  /** Calls fn for every generation of `kind` newer than the current one. Returns an unsubscribe. */
  subscribe(kind: SignalKind, fn: (e: SignalEvent) => void): () => void;
  close(): Promise<void>;
  /** LISTEN sessions established (the first and every reconnect). */
  readonly connects: number;
}

function isKind(k: unknown): k is SignalKind {
  return typeof k === 'string' && (SIGNAL_KINDS as readonly string[]).includes(k);
}

function clip(s: unknown, n: number): string | null {
  return typeof s === 'string' ? s.slice(0, n) : null;
}

/** A payload from the channel, checked; null when it is not one of ours. */
export function parseSignalPayload(payload: string | undefined): { kind: SignalKind; generation: number; detail: string | null; from: string | null } | null {
  if (payload === undefined || Buffer.byteLength(payload, 'utf8') > MAX_PAYLOAD_BYTES) return null;
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (!isKind(o.kind) || typeof o.generation !== 'number' || !Number.isSafeInteger(o.generation) || o.generation < 1) return null;
  return { kind: o.kind, generation: o.generation, detail: clip(o.detail, MAX_DETAIL_CHARS), from: clip(o.from, MAX_FROM_CHARS) };
}

interface Subscriber {
  kind: SignalKind;
  fn: (e: SignalEvent) => void;
  /** The generation acted on (0: none published yet). */
  seen: number;
}

class PgSignalsImpl implements PgSignals {
  private readonly listen: ListenConnection;
  private stopped = false;
  private poll: NodeJS.Timeout | null = null;
  private readonly subscribers = new Set<Subscriber>();
  /** The newest generation read or heard per kind. */
  private readonly known = new Map<SignalKind, number>();
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(
    config: pg.ClientConfig,
    private readonly from: string,
    private readonly pollMs: number,
    private readonly logger: Logger,
  ) {
    this.listen = new ListenConnection({
      config,
      channel: SIGNAL_CHANNEL,
      onNotify: (payload) => this.onPayload(payload),
      setup: ensureTable,
      // LISTEN is in place before this read: a publish after it is heard, one before it is read.
      onListening: (_client, first) => this.catchUp(first ? 'open' : 'reconnect'),
      onDown: (err) =>
        this.logger.warn({ event: 'signals', state: 'lost', error: err instanceof Error ? err.message : null }, 'signal channel to PostgreSQL lost; reconnecting'),
      onBack: (downMs) => this.logger.info({ event: 'signals', state: 'back', downMs }, 'signal channel to PostgreSQL back; catching up'),
      failFirst: true,
    });
  }

  get connects(): number {
    return this.listen.connects;
  }

  /** The first connection: rejects (STORE_UNAVAILABLE) when PostgreSQL cannot be reached now. */
  async open(): Promise<void> {
    try {
      await this.listen.start();
    } catch (err) {
      await this.close();
      // A failed generation read is already STORE_UNAVAILABLE ('signal generations'); storeError keeps it.
      throw storeError(err, 'signal channel', 'STORE_UNAVAILABLE');
    }
    this.poll = setInterval(() => void this.catchUp('poll'), this.pollMs);
    this.poll.unref();
  }

  /** Reads every generation; fires the subscribers behind. At open it only records them. */
  private async catchUp(why: 'open' | 'reconnect' | 'poll'): Promise<void> {
    const client = this.listen.client;
    if (client === null || this.stopped) return;
    let rows: Array<{ kind: string; generation: number }>;
    try {
      rows = (await client.query<{ kind: string; generation: number }>('SELECT kind, generation FROM postseal_signals')).rows;
    } catch (err) {
      if (why === 'open') throw storeError(err, 'signal generations', 'STORE_UNAVAILABLE');
      // A lost connection reconnects and reads again. Any other failure (the table dropped, a
      // permission): nobody can tell what was missed, so a reconnect acts as if something was.
      if (why === 'reconnect') {
        this.logger.warn({ event: 'signals', error: err instanceof Error ? err.message : String(err) }, 'signal generations unreadable after a reconnect; acting as if a signal was missed');
        for (const s of [...this.subscribers]) this.call(s, { kind: s.kind, generation: s.seen, detail: null, from: null, via: 'catch-up' });
      }
      // The poll's read failed or timed out on the LISTEN connection: it may be dead without
      // having said so (a peer gone without FIN/RST). Reconnect; the reconnect reads again.
      if (why === 'poll') this.listen.reset(err);
      return;
    }
    for (const r of rows) {
      if (!isKind(r.kind)) continue;
      this.known.set(r.kind, Math.max(this.known.get(r.kind) ?? 0, r.generation));
      this.fire({ kind: r.kind, generation: r.generation, detail: null, from: null, via: 'catch-up' });
    }
  }

  private onPayload(payload: string | undefined): void {
    const p = parseSignalPayload(payload);
    if (p === null) {
      this.logger.debug({ event: 'signals', bytes: payload === undefined ? 0 : Buffer.byteLength(payload, 'utf8') }, 'ignored a signal that is not ours (unknown kind, malformed or too large)');
      return;
    }
    this.known.set(p.kind, Math.max(this.known.get(p.kind) ?? 0, p.generation));
    this.fire({ ...p, via: 'notify' });
  }

  /** Calls each subscriber of e.kind that has not acted on e.generation yet. */
  private fire(e: SignalEvent): void {
    for (const s of [...this.subscribers]) {
      if (s.kind !== e.kind || s.seen >= e.generation) continue;
      s.seen = e.generation;
      this.call(s, e);
    }
  }

  private call(s: Subscriber, e: SignalEvent): void {
    try {
      s.fn(e);
    } catch (err) {
      // One subscriber's failure must not stop the others nor the channel.
      this.logger.error({ event: 'signals', kind: e.kind, error: err instanceof Error ? err.message : String(err) }, 'signal subscriber failed');
    }
  }

  async publish(kind: SignalKind, detail?: string): Promise<number> {
    if (!isKind(kind)) throw new UsageError(`unknown signal kind ${JSON.stringify(String(kind).slice(0, 40))} (known: ${SIGNAL_KINDS.join(', ')})`);
    // One transaction at a time on the one connection (the driver queues statements, not transactions).
    const run = this.publishing.then(() => this.publishNow(kind, detail));
    this.publishing = run.catch(() => undefined);
    return run;
  }

  private async publishNow(kind: SignalKind, detail: string | undefined): Promise<number> {
    if (this.stopped) throw new PostsealError('STORE_CLOSED', 'signal channel closed');
    const client = this.listen.client;
    if (client === null) throw new PostsealError('STORE_UNAVAILABLE', 'PostgreSQL unavailable (signal channel): reconnecting');
    try {
      return await inTransaction(client, async () => {
        const r = await client.query<{ generation: number }>(
          `INSERT INTO postseal_signals (kind, generation, at) VALUES ($1, 1, now())
           ON CONFLICT (kind) DO UPDATE SET generation = postseal_signals.generation + 1, at = now()
           RETURNING generation`,
          [kind],
        );
        const generation = r.rows[0]?.generation;
        if (generation === undefined) throw new PostsealError('STORE_WRITE_FAILED', 'signal generation not returned');
        const payload = JSON.stringify({ kind, generation, detail: clip(detail ?? null, MAX_DETAIL_CHARS), from: this.from.slice(0, MAX_FROM_CHARS) });
        // Delivered at COMMIT, to every listener, this connection's included (we fire ourselves too).
        await client.query('SELECT pg_notify($1, $2)', [SIGNAL_CHANNEL, payload]);
        return generation;
      });
    } catch (err) {
      throw storeError(err, 'publish signal', 'STORE_WRITE_FAILED');
    }
  }

  subscribe(kind: SignalKind, fn: (e: SignalEvent) => void): () => void {
    const s: Subscriber = { kind, fn, seen: this.known.get(kind) ?? 0 };
    this.subscribers.add(s);
    return () => {
      this.subscribers.delete(s);
    };
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.poll !== null) clearInterval(this.poll);
    this.subscribers.clear();
    await this.listen.stop();
  }
}

/** Creates postseal_signals when it is missing, under the migration lock (nodes starting together). */
async function ensureTable(client: pg.Client): Promise<void> {
  const r = await client.query<{ t: string | null }>(`SELECT to_regclass('postseal_signals')::text AS t`);
  if (r.rows[0]?.t !== null && r.rows[0]?.t !== undefined) return;
  await inTransaction(client, async () => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(CREATE_SQL);
  });
}

/**
 * Opens the signal channel: one dedicated connection, LISTENing, the table in place and the
 * current generations read (subscribers added afterwards act only on newer ones). Rejects with
 * STORE_UNAVAILABLE when PostgreSQL cannot be reached, STORE_BAD_URL for a URL it refuses.
 */
export async function openPgSignals(url: string, opts: PgSignalsOptions = {}): Promise<PgSignals> {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const config: pg.ClientConfig = {
    ...poolConfig(url, { passwordFile: opts.passwordFile ?? null, connectTimeoutMs, statementTimeoutMs: connectTimeoutMs }),
    application_name: 'postseal-signals',
  };
  const signals = new PgSignalsImpl(config, opts.from ?? `${hostname()}-${process.pid}`, opts.pollMs ?? POLL_MS, opts.logger ?? silentLogger);
  await signals.open();
  return signals;
}
