/**
 * Shared pieces for the TLS tests: a server on 127.0.0.1:0 that upgrades accepted plaintext
 * sockets exactly as STARTTLS does (new tls.TLSSocket(raw, upgradeSocketOptions(...))), and a
 * client connect that resolves on the handshake or rejects with the error the client saw.
 * No fixed ports, no sleeps; everything is closed by the returned `close()`.
 */
import net from 'node:net';
import tls from 'node:tls';
import { upgradeSocketOptions, type SecureContextGetter } from '../../src/tls/options.js';

export interface WrapServer {
  port: number;
  /** Server-side TLS sockets that completed a handshake, in order. */
  secured: tls.TLSSocket[];
  /** Errors seen by server-side TLS sockets (e.g. ERR_SSL_NO_APPLICATION_PROTOCOL). */
  errors: Array<Error & { code?: string }>;
  /** Resolves with the next server-side error. */
  nextError(): Promise<Error & { code?: string }>;
  close(): Promise<void>;
}

export async function startWrapServer(
  getContext: SecureContextGetter,
  onSecure: (socket: tls.TLSSocket) => void = (s) => s.pipe(s),
): Promise<WrapServer> {
  const sockets = new Set<net.Socket>();
  const secured: tls.TLSSocket[] = [];
  const errors: Array<Error & { code?: string }> = [];
  const waiters: Array<(e: Error & { code?: string }) => void> = [];
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    const options = upgradeSocketOptions(getContext);
    if (options === null) {
      raw.end('454 4.7.0 TLS not available\r\n');
      return;
    }
    const secure = new tls.TLSSocket(raw, options);
    secure.on('secure', () => {
      secured.push(secure);
      onSecure(secure);
    });
    secure.on('error', (err: Error & { code?: string }) => {
      errors.push(err);
      waiters.shift()?.(err);
      raw.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    secured,
    errors,
    nextError: () => new Promise((resolve) => waiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connect with TLS; resolves once the handshake is done, rejects with the client's error. */
export function connectTls(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Write a line and resolve with the echo (the default server pipes data back). */
export function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (d: Buffer) => resolve(d.toString('utf8')));
    socket.once('error', reject);
    socket.write(text);
  });
}

/** End a client socket and wait for it to close. */
export function closeSocket(socket: tls.TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    socket.destroy();
  });
}
