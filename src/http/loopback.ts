/**
 * Which hosts and client addresses are loopback, for the HTTP face: the one answer to "is the
 * console on loopback (plain HTTP allowed, server.ts), must the MTA-STS policy be HTTPS-only
 * (mta-sts.ts), is this probe client local (app.ts)".
 *
 * Invariants: 127.0.0.0/8, ::1 and `localhost` are loopback; an IPv4-mapped ::ffff:127.x.y.z (how
 * a dual-stack socket reports an IPv4 peer) is too; nothing else is.
 */
import { isIP } from 'node:net';

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().startsWith('::ffff:') ? host.slice(7) : host;
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}
