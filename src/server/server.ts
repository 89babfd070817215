/**
 * The SMTP server: listeners, connection limits, session bookkeeping, graceful shutdown. The
 * sockets themselves (listening, implicit-TLS accept, refusing) are transport/listener.ts's.
 *
 * Invariants: every listener binds where the config says (tests use port 0); connection limits,
 * total and per client IP, are checked before a session starts; on close(), idle sessions get
 * 421 at once and sessions inside a transaction get until the grace period ends.
 */
import { formatReply } from '../protocol/reply.js';
import { Listener, type Accepted } from '../transport/listener.js';
import { IdleSweeper, type ServerConnection } from '../transport/server-connection.js';
import { clientKey } from './client-network.js';
import { BodyBudget } from './body.js';
import { AuthLimiter } from './context.js';
import { R } from './replies.js';
import { Session, type ServerContext } from './session.js';
import { summarizeTls } from '../tls/summary.js';
import { handshakeFailureReason } from './events.js';
import type { ListenerOptions, ServerOptions } from './types.js';

export interface BoundListener {
  name: string;
  host: string;
  port: number;
  tls: ListenerOptions['tls'];
}

export class SmtpServer implements ServerContext {
  readonly opts: ServerOptions;
  readonly authLimiter: AuthLimiter;
  readonly bodyBudget: BodyBudget;
  private readonly listeners: Listener[] = [];
  private readonly sessions = new Set<Session>();
  /** Open connections per client key (IPv4 address or IPv6 /64, clientKey()). */
  private readonly perIp = new Map<string, number>();
  /** Open connections per listener name. */
  private readonly perListener = new Map<string, number>();
  /** One interval checks every connection's idle, handshake and close deadlines. */
  private readonly sweeper = new IdleSweeper();
  private closing = false;
  readonly bound: BoundListener[] = [];
  /** Counters for metrics and tests. */
  readonly stats = { connections: 0, refused: 0, messages: 0 };

  constructor(opts: ServerOptions) {
    this.opts = opts;
    this.authLimiter = new AuthLimiter(opts.limits.auth);
    this.bodyBudget = new BodyBudget(opts.limits.maxBodyMemory);
  }

  async listen(): Promise<BoundListener[]> {
    for (const l of this.opts.listeners) {
      const listener = await Listener.listen(
        {
          host: l.host,
          port: l.port,
          maxConnections: this.opts.limits.maxConnections + 64,
          // RFC 8314 §3: TLS from the first byte; the certificate is taken per handshake (a reload
          // applies to new connections only); none, or shutting down: the connection is dropped.
          implicitTls: l.tls === 'implicit' ? () => (this.closing ? null : this.opts.tls.serverOptions()) : null,
          handshakeTimeoutMs: this.opts.limits.handshakeTimeoutMs,
        },
        {
          onConnection: (a) => this.accept(a, l),
          onHandshakeFailed: (ip, reason) => {
            this.opts.events?.starttlsFailed(l.name, handshakeFailureReason(reason));
            this.opts.logger.info({ event: 'session', listener: l.name, client: ip, result: `tls handshake failed: ${reason}` }, 'session');
          },
          onError: (err) => this.opts.logger.error({ listener: l.name, err: String(err) }, 'listener error'),
        },
      );
      this.listeners.push(listener);
      this.bound.push({ name: l.name, host: listener.address, port: listener.port, tls: l.tls });
    }
    return this.bound;
  }

  private accept(a: Accepted, l: ListenerOptions): void {
    const ip = a.remoteAddress;
    const key = clientKey(ip);
    const count = this.perIp.get(key) ?? 0;
    const onListener = this.perListener.get(l.name) ?? 0;
    const limits = this.opts.limits;
    // Three caps: the listener's own (a flood on port 25 cannot take submission's slots), all
    // listeners together (file descriptors, memory), and per client network.
    const refused = this.closing
      ? 'shutting down'
      : onListener >= (l.maxConnections ?? limits.maxConnections)
        ? 'listener connection limit'
        : this.sessions.size >= limits.maxConnections
          ? 'connection limit'
          : count >= limits.maxConnectionsPerIp
            ? 'per-client connection limit'
            : null;
    if (refused !== null) {
      this.stats.refused++;
      // A client that never reads must not keep the socket: destroyed if not closed soon.
      a.refuse(formatReply(this.closing ? R.shuttingDown : R.tooManyConnections));
      this.opts.logger.info({ event: 'session', listener: l.name, client: ip, result: `refused: ${refused}` }, 'session');
      return;
    }
    this.stats.connections++;
    this.perIp.set(key, count + 1);
    this.perListener.set(l.name, onListener + 1);
    let session: Session | null = null;
    const conn: ServerConnection = a.open(
      {
        onInput: () => session?.onInput(),
        onClose: (reason) => session?.onClose(reason),
        onTimeout: (kind) => session?.onTimeout(kind),
      },
      limits.commandTimeoutMs,
      this.sweeper,
    );
    session = new Session(conn, l, this.opts, this, a.secure ? summarizeTls(a.secure) : null);
    this.sessions.add(session);
    this.opts.events?.sessionStart(l.name);
    session.start();
  }

  sessionEnded(s: Session, reason: string): void {
    if (!this.sessions.delete(s)) return;
    const ip = s.conn.remoteAddress;
    const key = clientKey(ip);
    const n = (this.perIp.get(key) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(key);
    else this.perIp.set(key, n);
    this.perListener.set(s.listener.name, (this.perListener.get(s.listener.name) ?? 1) - 1);
    this.stats.messages += s.messages;
    const t = s.facts.tls;
    this.opts.events?.sessionEnd(s.listener.name, t?.protocol ?? null);
    this.opts.logger.info(
      {
        event: 'session',
        listener: s.listener.name,
        client: ip,
        port: s.conn.remotePort,
        helo: s.facts.heloName,
        tls: t ? { protocol: t.protocol, cipher: t.cipher, sni: t.sni } : null,
        auth: s.facts.authUser,
        messages: s.messages,
        errors: s.errors,
        purgedAtStartTls: s.purgedAtStartTls,
        ms: Date.now() - s.startedAt,
        result: reason,
      },
      'session',
    );
    if (this.closing && this.sessions.size === 0) this.drained?.();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  private drained: (() => void) | null = null;

  /**
   * Graceful stop: listeners close, idle sessions get 421 now, busy ones at their next command
   * boundary or when the grace period ends.
   */
  async close(graceMs = this.opts.limits.shutdownGraceMs): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = Promise.all(this.listeners.map((s) => s.close()));
    const done = new Promise<void>((resolve) => {
      this.drained = resolve;
      if (this.sessions.size === 0) resolve();
    });
    for (const s of [...this.sessions]) {
      s.draining = true;
      if ((s.phase === 'command' || s.phase === 'greeting') && s.conn.buffered === 0) s.closeWith(R.shuttingDown, 'shutdown');
    }
    const timer = setTimeout(() => {
      for (const s of [...this.sessions]) s.closeWith(R.shuttingDown, 'shutdown (grace period over)');
      for (const s of [...this.sessions]) s.conn.destroy('shutdown');
    }, graceMs);
    timer.unref();
    await done;
    clearTimeout(timer);
    await closed;
  }
}
