/**
 * One dedicated PostgreSQL connection that LISTENs on a channel and comes back by itself: what the
 * directory replica (directory.ts) and the signal channel (signals.ts) both need.
 *
 * Invariants:
 * - At most one client at a time; `client` is non-null only while it is connected and LISTENing.
 * - A lost connection (an 'error' or 'end' event, or a failed connect, setup or LISTEN) is ended
 *   and replaced after BACKOFF_MIN_MS, doubling to BACKOFF_MAX_MS while the attempts keep failing;
 *   the delay starts over after a LISTEN that succeeded.
 * - onDown is called once per outage (not per failed attempt), onBack once when LISTEN is in place
 *   again; onListening after every LISTEN (the first and each reconnect), once LISTEN is in place,
 *   so that a change after it is heard and one before it can be read there.
 * - stop() ends the client (connected or connecting) and every timer; nothing reconnects after it.
 */
import pg from 'pg';

export const BACKOFF_MIN_MS = 250;
export const BACKOFF_MAX_MS = 10_000;

export interface ListenOptions {
  /** The connection settings (connect.ts poolConfig: deadlines on connect and statements). */
  config: pg.ClientConfig;
  /** The channel name, an SQL identifier (a constant of ours, never input). */
  channel: string;
  /** A notification on the channel (the payload as sent, unchecked). */
  onNotify: (payload: string | undefined) => void;
  /** Run on a new connection before LISTEN (e.g. create a table); a failure counts as a failed connect. */
  setup?: (client: pg.Client) => Promise<void>;
  /**
   * After every LISTEN established; `first` for the one start() makes. At start() its rejection
   * rejects start(); on a reconnect it must not reject.
   */
  onListening: (client: pg.Client, first: boolean) => Promise<void>;
  /** The connection went down (once per outage); `err` when an error said why. */
  onDown?: (err: unknown) => void;
  /** LISTEN is in place again after an outage of `downMs`. */
  onBack?: (downMs: number) => void;
  /**
   * True: start() rejects (with the driver's error, the client ended) when the first connection
   * fails, and nothing retries. False: it resolves and the connection is retried in the background.
   */
  failFirst: boolean;
}

export class ListenConnection {
  /** The client of the current attempt, connected or connecting (what stop() ends). */
  private current: pg.Client | null = null;
  private listening = false;
  private stopped = false;
  private failures = 0;
  private downAt: number | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** LISTEN sessions established (the first one and every reconnect). */
  connects = 0;

  constructor(private readonly o: ListenOptions) {}

  /** The LISTENing client, or null while the connection is down or being made. */
  get client(): pg.Client | null {
    return this.listening ? this.current : null;
  }

  /** How to give up the current connection (set per connection by connect()). */
  private lose: ((err?: unknown) => void) | null = null;

  /**
   * Gives up the current connection and reconnects (with the usual backoff): for a caller whose
   * query on it failed or timed out — a connection that died without a FIN or RST never emits
   * 'error' or 'end' by itself, and would otherwise stay "listening" and deaf for hours.
   */
  reset(err?: unknown): void {
    this.lose?.(err);
  }

  /** The first connection; resolves once LISTEN is in place and onListening ran, or (failFirst false) it failed. */
  start(): Promise<void> {
    return this.connect(true);
  }

  private async connect(first: boolean): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client(this.o.config);
    this.current = client;
    this.listening = false;
    let lost = false;
    const onLost = (err?: unknown): void => {
      if (lost) return;
      lost = true;
      if (this.current === client) {
        this.current = null;
        this.listening = false;
      }
      client.end().catch(() => undefined);
      if (this.stopped) return;
      if (this.downAt === null) {
        this.downAt = Date.now();
        this.o.onDown?.(err);
      }
      this.scheduleReconnect();
    };
    this.lose = onLost;
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (n) => {
      if (n.channel === this.o.channel) this.o.onNotify(n.payload);
    });
    try {
      await client.connect();
      if (this.o.setup !== undefined) await this.o.setup(client);
      await client.query(`LISTEN ${this.o.channel}`);
    } catch (err) {
      if (first && this.o.failFirst) {
        lost = true;
        if (this.current === client) this.current = null;
        await client.end().catch(() => undefined);
        throw err;
      }
      onLost(err);
      return;
    }
    if (this.stopped) {
      lost = true;
      await client.end().catch(() => undefined);
      return;
    }
    this.listening = true;
    this.failures = 0;
    this.connects++;
    if (this.downAt !== null) {
      const downMs = Date.now() - this.downAt;
      this.downAt = null;
      this.o.onBack?.(downMs);
    }
    await this.o.onListening(client, first);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer !== null) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 10));
    this.failures++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect(false);
    }, delay);
    this.retryTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const c = this.current;
    this.current = null;
    this.listening = false;
    if (c !== null) {
      c.removeAllListeners('end');
      c.removeAllListeners('error');
      c.on('error', () => undefined);
      await c.end().catch(() => undefined);
    }
  }
}
