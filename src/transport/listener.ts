/**
 * The server's listening sockets: one TCP listener per configured address, the implicit-TLS
 * accept (RFC 8314 §3), and the refusal of a connection over a cap. server/ decides (caps,
 * sessions, logging); this module does the socket work, so server/ holds no socket code.
 *
 * Invariants:
 * - an implicit-TLS connection is wrapped exactly as STARTTLS wraps one (secureServerSocket: one
 *   code path, one policy, the same handshake deadline); the options are asked for per handshake,
 *   so a certificate reload applies to new connections only, and `null` drops the connection
 *   before any byte is written (no certificate, or shutting down);
 * - a failed implicit handshake never reaches the server's accept: it is reported and the socket
 *   is gone;
 * - a refused connection gets its one reply and is destroyed after REFUSE_GRACE_MS at the latest,
 *   whether or not the peer reads it (a client that never reads cannot keep the socket);
 * - every accepted socket has an 'error' listener before anything else happens.
 */
import net from 'node:net';
import type { TLSSocket, TLSSocketOptions } from 'node:tls';
import { normalizeIp, secureServerSocket, ServerConnection, type ConnectionEvents, type IdleSweeper } from './server-connection.js';

/** How long a refused peer may keep the socket to read its reply. */
const REFUSE_GRACE_MS = 5000;

export interface ListenSpec {
  host: string;
  port: number;
  /** Node's hard cap on open sockets for this listener (the server's own caps are checked first). */
  maxConnections: number;
  /** RFC 8314 §3: TLS from the first byte; the options for each handshake, or null to drop. */
  implicitTls: (() => TLSSocketOptions | null) | null;
  handshakeTimeoutMs: number;
}

/** One accepted connection, before the server decides what to do with it. */
export interface Accepted {
  /** The peer's address (IPv4-mapped IPv6 shown as IPv4). */
  readonly remoteAddress: string;
  /** The TLS socket of an implicit-TLS connection (for its facts), else null. */
  readonly secure: TLSSocket | null;
  /** Writes `reply` (a formatted SMTP reply), closes, and destroys after a short grace. */
  refuse(reply: string): void;
  /** Hands the socket to a ServerConnection (the session's socket-level half). */
  open(events: ConnectionEvents, idleTimeoutMs: number, sweeper: IdleSweeper): ServerConnection;
}

export interface ListenHandlers {
  onConnection(conn: Accepted): void;
  /** An implicit-TLS handshake failed (the socket is already gone). */
  onHandshakeFailed(remoteAddress: string, reason: string): void;
  /** An error of the listening socket itself. */
  onError(err: Error): void;
}

function accepted(sock: net.Socket, secure: TLSSocket | null): Accepted {
  return {
    remoteAddress: normalizeIp(sock.remoteAddress ?? ''),
    secure,
    refuse(reply: string): void {
      sock.on('error', () => sock.destroy());
      sock.end(reply);
      setTimeout(() => sock.destroy(), REFUSE_GRACE_MS).unref();
    },
    open(events: ConnectionEvents, idleTimeoutMs: number, sweeper: IdleSweeper): ServerConnection {
      return new ServerConnection(sock, events, idleTimeoutMs, sweeper);
    },
  };
}

export class Listener {
  private constructor(
    private readonly server: net.Server,
    /** The address and port actually bound (port 0 → the one the system chose). */
    readonly address: string,
    readonly port: number,
  ) {}

  /** Binds and starts accepting; rejects when the address cannot be bound. */
  static async listen(spec: ListenSpec, handlers: ListenHandlers): Promise<Listener> {
    const implicit = spec.implicitTls;
    const server = net.createServer((raw) => {
      if (implicit === null) {
        handlers.onConnection(accepted(raw, null));
        return;
      }
      const opts = implicit();
      if (opts === null) {
        raw.destroy();
        return;
      }
      const ip = normalizeIp(raw.remoteAddress ?? '');
      raw.on('error', () => raw.destroy());
      secureServerSocket(raw, opts, spec.handshakeTimeoutMs).then(
        (sock) => handlers.onConnection(accepted(sock, sock)),
        (err: NodeJS.ErrnoException) => handlers.onHandshakeFailed(ip, err.code ?? err.message),
      );
    });
    server.maxConnections = spec.maxConnections;
    server.on('error', (err) => handlers.onError(err));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: spec.host, port: spec.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    return new Listener(server, addr.address, addr.port);
  }

  /** Stops accepting; resolves when the listening socket is closed (open sessions go on). */
  close(): Promise<void> {
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
