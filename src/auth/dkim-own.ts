/**
 * DKIM signing of the mail postseal writes itself (bounces/DSNs, TLS-RPT reports): signed once,
 * when the message is generated and before it is stored, never per delivery attempt.
 *
 * The signing domain (d=) is the author domain (the From of the generated message) when it has
 * active keys; otherwise the nearest configured domain that is a parent of it (MAILER-DAEMON@
 * mail.example.org signed with d=example.org: RFC 7489 §3.1.1 relaxed alignment holds, since the
 * organisational domain is the same); otherwise the message goes unsigned and that is logged once
 * per author domain. It uses the one signer of dkim-sign.ts (its parser, body hash and signHeader).
 *
 * Invariants: never throws and never loses the message: a key that cannot be read leaves the
 * message unsigned (logged), since a bounce nobody can retry is worth more unsigned than lost;
 * the bytes returned are the signature fields followed by the message bytes unchanged.
 */
import { signingKeys, type DkimKey } from './dkim-keys.js';
import { authorDomain, parseHeader, RelaxedBodyHash, signHeader, splitMessage } from './dkim-sign.js';
import type { Logger } from '../log.js';

export interface OwnMailSignerOptions {
  /** The data directory (keys under dkim/). */
  dataDir: string;
  /** The configured `domains`: candidates for the parent fallback. */
  domains: readonly string[];
  expirySeconds: number | null;
  logger?: Logger;
  now?: () => Date;
}

/** The signing domain and keys for an author domain: its own keys, else a configured parent's. */
export function ownSigningKeys(dataDir: string, author: string, domains: readonly string[]): { domain: string; keys: DkimKey[] } | null {
  const own = signingKeys(dataDir, author);
  if (own.length > 0) return { domain: author, keys: own };
  // Longest configured parent first: the closest organisational parent we hold keys for.
  const parents = [...new Set(domains.map((d) => d.toLowerCase().replace(/\.$/, '')))]
    .filter((d) => d.includes('.') && author.endsWith(`.${d}`))
    .sort((a, b) => b.length - a.length);
  for (const p of parents) {
    const keys = signingKeys(dataDir, p);
    if (keys.length > 0) return { domain: p, keys };
  }
  return null;
}

/**
 * Returns `sign(message) → message with DKIM-Signature fields prepended` (or the same bytes when
 * there is nothing to sign with). Keys are read at each call: generated mail is rare.
 */
export function createOwnMailSigner(o: OwnMailSignerOptions): (data: Uint8Array) => Promise<Uint8Array> {
  const told = new Set<string>();
  const once = (key: string, fields: Record<string, unknown>, msg: string): void => {
    if (told.has(key)) return;
    if (told.size < 1000) told.add(key);
    o.logger?.warn({ event: 'dkim', ...fields }, msg);
  };
  const sign = (data: Uint8Array): Uint8Array => {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const split = splitMessage(buf.subarray(0, Math.min(buf.length, 1 << 20)));
    if (split === null) return data;
    const fields = parseHeader(split.header);
    const author = authorDomain(fields);
    if (author === null) {
      once('(no author)', {}, 'generated message has no single From domain: not DKIM-signed');
      return data;
    }
    const chosen = ownSigningKeys(o.dataDir, author, o.domains);
    if (chosen === null) {
      once(author, { domain: author }, `no DKIM key for ${author} nor for a configured parent domain: bounces and reports from it go unsigned (postseal dkim keygen ${author})`);
      return data;
    }
    const body = new RelaxedBodyHash();
    body.update(buf.subarray(split.bodyOffset));
    const sig = signHeader(fields, chosen.domain, body.digest(), chosen.keys, { expirySeconds: o.expirySeconds, ...(o.now ? { now: o.now() } : {}) });
    return sig === '' ? data : Buffer.concat([Buffer.from(sig, 'latin1'), buf]);
  };
  return (data) => {
    try {
      return Promise.resolve(sign(data));
    } catch (err) {
      once('(error)', { error: err instanceof Error ? err.message : String(err) }, 'DKIM signing of a generated message failed: sent unsigned');
      return Promise.resolve(data);
    }
  };
}
