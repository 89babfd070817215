/**
 * First contact: does the server greet in plaintext, or is it waiting for a TLS ClientHello
 * (implicit TLS, RFC 8314 §3, on a port other than 465)? One short-lived connection: wait a short,
 * bounded time for the first reply; if none came, start a TLS handshake on that same silent
 * connection.
 *
 * Invariants: the wait is bounded by `waitMs` (and the handshake by the check's timeout); a
 * server that greets, however slowly after the wait, is never called implicit unless a real TLS
 * handshake completed; nothing but a ClientHello is sent to a silent server.
 */
import { ProbeConnection } from './conn.js';
import { tlsOptions, type CheckContext } from './probe-setup.js';

/** How long a plaintext server gets to greet before the checker tries TLS (RFC 5321 §4.5.3.2.1 allows 5 min; real servers greet at once). */
export const GREETING_SNIFF_MS = 3000;

export type FirstContact = { kind: 'greeting' } | { kind: 'tls'; protocol: string } | { kind: 'silent'; detail: string } | { kind: 'error'; detail: string };

export async function firstContact(ctx: CheckContext, waitMs: number): Promise<FirstContact> {
  let conn: ProbeConnection;
  try {
    conn = await ProbeConnection.open(ctx.target, { timeoutMs: ctx.timeoutMs });
  } catch (e) {
    return { kind: 'error', detail: e instanceof Error ? e.message : String(e) };
  }
  try {
    try {
      await conn.readReply(waitMs);
      return { kind: 'greeting' };
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      // Anything but silence (a close, a garbled line) is the main session's business to report.
      if (code !== 'CHECK_TIMEOUT') return { kind: 'greeting' };
      if (conn.hasUnread()) return { kind: 'greeting' };
    }
    const up = await conn.upgrade(tlsOptions(ctx));
    if (up.ok) return { kind: 'tls', protocol: up.socket.getProtocol() ?? 'TLS' };
    return { kind: 'silent', detail: `no greeting within ${waitMs} ms, and a TLS handshake failed: ${up.error}` };
  } finally {
    conn.close();
  }
}
