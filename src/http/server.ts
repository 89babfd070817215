/**
 * The HTTP listener of `serve --http HOST:PORT`: plain HTTP on a loopback address, HTTPS with the
 * server's certificate store (SNI, reloads) on any other address. It serves the Hono app of app.ts.
 *
 * Invariants (bounded resources, ARCHITECTURE.md):
 * - headers within HEADERS_TIMEOUT_MS, a whole request within REQUEST_TIMEOUT_MS, idle keep-alive
 *   connections closed after KEEP_ALIVE_MS, at most MAX_CONNECTIONS sockets, at most 100 headers
 *   and 16 KiB of them (Node's maxHeaderSize); request bodies are limited by app.ts.
 * - A port in use (or any listen error) rejects with HTTP_LISTEN naming the address: serve stops
 *   at start (exit 1) rather than running without the console it was asked for.
 * - A non-loopback address without a certificate is refused (no console in plaintext on a network).
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type tls from 'node:tls';
import { getRequestListener } from '@hono/node-server';
import { ConfigError, PostsealError } from '../errors.js';
import { parseHostPort } from '../protocol/host-port.js';
import { createHttpApp, type HttpApp } from './app.js';
import type { HttpContext } from './context.js';
import { isLoopbackHost } from './loopback.js';

export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
export const KEEP_ALIVE_MS = 5_000;
export const MAX_CONNECTIONS = 1_000;
const MAX_HEADER_BYTES = 16 * 1024;

export interface RunningHttp {
  host: string;
  port: number;
  secure: boolean;
  app: HttpApp;
  close(): Promise<void>;
}

export async function startHttp(ctx: HttpContext, address: string): Promise<RunningHttp> {
  const hp = parseHostPort(address, { allowPortZero: true });
  if (!hp.ok) throw new ConfigError(`config: http.address = ${JSON.stringify(address)}: ${hp.problem}`);
  // Loopback hosts may speak plain HTTP (browsers treat them as secure contexts).
  const secure = !isLoopbackHost(hp.host);
  const app = createHttpApp(ctx);
  const listener = getRequestListener(app.app.fetch);
  const common: http.ServerOptions = {
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_MS,
    maxHeaderSize: MAX_HEADER_BYTES,
  };
  let server: http.Server | https.Server;
  let unbind: (() => void) | null = null;
  if (secure) {
    const certs = ctx.running.certs;
    if (certs.current() === null) throw new ConfigError(`config: http.address ${address} is not loopback, so the console is served over HTTPS, but there is no certificate (tls.cert/tls.key or tls.selfSigned); use a loopback address or --http off`);
    const sni = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
      const sel = certs.select();
      if (sel === null) cb(new Error('no certificate'));
      else if (sel.sniCallback !== null) sel.sniCallback(servername, cb);
      else cb(null, sel.context);
    };
    const s = https.createServer({ ...common, SNICallback: sni, minVersion: ctx.cfg.tls.minVersion }, listener);
    // Clients without SNI get the default context: keep it the current certificate after reloads.
    unbind = certs.bindServer(s);
    server = s;
  } else {
    server = http.createServer(common, listener);
  }
  server.maxHeadersCount = 100;
  server.maxConnections = MAX_CONNECTIONS;
  const sockets = new Set<Socket>();
  server.on('connection', (sock: Socket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  server.on('clientError', (_err, sock: Socket) => {
    // Malformed requests and header timeouts: a short answer when the socket is writable, then close.
    if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else sock.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      unbind?.();
      const what = err.code === 'EADDRINUSE' ? 'address in use (another program, or another serve, listens there; give --http HOST:PORT or --http off)' : err.message;
      reject(new PostsealError('HTTP_LISTEN', `http ${address}: ${what}`));
    };
    server.once('error', onError);
    server.listen(hp.port, hp.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => ctx.logger.error({ event: 'http', error: err.message }, 'HTTP server error'));
  const bound = server.address() as AddressInfo;
  const facts = { host: bound.address, port: bound.port, secure };
  ctx.http = facts;
  return {
    ...facts,
    app,
    close: () =>
      new Promise<void>((resolve) => {
        unbind?.();
        server.close(() => resolve());
        // Keep-alive and in-flight connections: the console has no transactions to finish.
        for (const s of sockets) s.destroy();
      }),
  };
}
