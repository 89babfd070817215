/**
 * TLS probes on fresh connections: the size of the server's Diffie-Hellman group for DHE/ADH
 * suites, and whether the server imposes its own cipher order.
 *
 * Invariants: one connection per handshake; a handshake that fails before TLS (connect,
 * STARTTLS refused) makes the probe 'not-tested', never 'refused'; the cipher-order verdict is
 * 'server' only when a second common suite exists (else 'inconclusive'), so a server with one
 * suite in common is never reported as imposing an order it never had to choose.
 */
import type tls from 'node:tls';
import { canOffer } from './tls-scan.js';
import { reachTls, tlsOptions, type CheckContext } from './probe-setup.js';
import type { CipherOrderOutcome, ProbeOutcome } from './types.js';

/**
 * DHE suites (anonymous ones included: Postfix offers ADH to opportunistic clients), AES-128 ones
 * first: OpenSSL's automatic DH size follows the suite's strength, and for anonymous AES-128
 * suites picks the 1024-bit group (80-bit security), so these show the smallest group served.
 */
export const DHE_CIPHERS_WEAKEST = 'DHE+AES128:ADH+AES128:!eNULL:@SECLEVEL=0';
export const DHE_CIPHERS = 'DHE:ADH:!eNULL:@SECLEVEL=0';

/** Strong TLS 1.2 suites of both key types, so most servers share at least two with us. */
export const ORDER_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384', 'AES128-GCM-SHA256', 'AES256-GCM-SHA384',
] as const;

type Handshake = { ok: true; cipher: string; info: tls.EphemeralKeyInfo | object | null } | { ok: false; beforeTls: boolean; error: string };

async function handshake(ctx: CheckContext, options: tls.ConnectionOptions): Promise<Handshake> {
  const s = await reachTls(ctx, tlsOptions(ctx, options));
  if (!s.ok) return { ok: false, beforeTls: s.stage !== 'handshake', error: s.error };
  const out: Handshake = { ok: true, cipher: s.socket.getCipher().name, info: s.socket.getEphemeralKeyInfo() };
  s.conn.close();
  return out;
}

/**
 * DHE/ADH suites only (TLS ≤ 1.2), then getEphemeralKeyInfo(): the group size the server uses.
 * Groups under 2048 bits are within reach of precomputation (Logjam); minDHSize is lowered so a
 * small group is measured instead of refused by our own side.
 */
export async function probeDhe(ctx: CheckContext): Promise<{ outcome: ProbeOutcome; bits: number | null; cipher: string | null }> {
  if (!canOffer(DHE_CIPHERS)) return { outcome: 'not-testable', bits: null, cipher: null };
  const opts = { minVersion: 'TLSv1', maxVersion: 'TLSv1.2', minDHSize: 1 } as const;
  let h = canOffer(DHE_CIPHERS_WEAKEST) ? await handshake(ctx, { ...opts, ciphers: DHE_CIPHERS_WEAKEST }) : null;
  if (h === null || !h.ok) h = await handshake(ctx, { ...opts, ciphers: DHE_CIPHERS });
  if (!h.ok) return { outcome: h.beforeTls ? 'not-tested' : 'refused', bits: null, cipher: null };
  const info = h.info as Partial<tls.EphemeralKeyInfo> | null;
  return { outcome: 'accepted', bits: info?.type === 'DH' && typeof info.size === 'number' ? info.size : null, cipher: h.cipher };
}

/**
 * Two TLS 1.2 handshakes offering the same suites in opposite orders. The same choice both times
 * means the server's order decides (confirmed by a third handshake without that suite, which
 * shows a second common suite exists); different choices mean the client's order decides.
 */
export async function probeCipherOrder(ctx: CheckContext): Promise<{ outcome: CipherOrderOutcome; evidence: string }> {
  const list = ORDER_CIPHERS.filter((c) => canOffer(c));
  const tls12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
  const first = await handshake(ctx, { ...tls12, ciphers: list.join(':') });
  if (!first.ok) return { outcome: 'not-tested', evidence: `no TLS 1.2 handshake with ${list.length} strong suites: ${first.error}` };
  const second = await handshake(ctx, { ...tls12, ciphers: [...list].reverse().join(':') });
  if (!second.ok) return { outcome: 'inconclusive', evidence: `second handshake failed: ${second.error}` };
  const evidence = `client order ${list[0] ?? '?'} first: ${first.cipher}; reversed: ${second.cipher}`;
  if (first.cipher !== second.cipher) return { outcome: 'client', evidence };
  const others = list.filter((c) => c !== first.cipher);
  const third = others.length > 0 ? await handshake(ctx, { ...tls12, ciphers: others.join(':') }) : null;
  if (third === null || !third.ok) return { outcome: 'inconclusive', evidence: `${evidence}; ${first.cipher} is the only suite in common` };
  return { outcome: 'server', evidence: `${evidence}; without it: ${third.cipher}` };
}
