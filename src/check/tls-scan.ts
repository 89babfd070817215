/**
 * TLS probes on fresh connections: which protocol versions and weak cipher classes the server
 * accepts, client-initiated renegotiation, the certificate served without SNI; and the
 * certificate verdict (trust, name, days left) for an established session.
 *
 * Invariants: one connection per probe (a refused handshake must not affect the next); a probe
 * whose cipher list the local OpenSSL cannot build is 'not-testable', never 'refused'; a failure
 * before the handshake (connect, STARTTLS refused) is 'not-tested', never 'refused'.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { describePeerCertificate } from '../tls/summary.js';
import { errorText } from './conn.js';
import { reachTls, tlsOptions, type CheckContext } from './probe-setup.js';
import {
  CIPHER_CLASSES, TLS_VERSIONS,
  type CertificateFacts, type CertProblem, type CipherClass, type CipherClassResult, type ProbeOutcome, type TlsVersion,
} from './types.js';

/** OpenSSL cipher strings per weak class (TLS 1.2 and below; TLS 1.3 has no weak suites). */
export const CIPHER_CLASS_STRINGS: Readonly<Record<CipherClass, string>> = {
  null: 'eNULL:@SECLEVEL=0',
  export: 'EXP:@SECLEVEL=0',
  rc4: 'RC4:@SECLEVEL=0',
  '3des': '3DES:@SECLEVEL=0',
  anon: 'aNULL:!eNULL:@SECLEVEL=0',
  // Key exchange without forward secrecy (RFC 9325 §4.1).
  'rsa-kx': 'kRSA:@SECLEVEL=0',
  // CBC with HMAC-SHA1: Lucky13-class padding oracles, no AEAD (RFC 9325 §4.2).
  'cbc-sha1': 'SHA1:!eNULL:!aNULL:@SECLEVEL=0',
};

/** Whether the local OpenSSL can offer a cipher list at all. */
export function canOffer(ciphers: string): boolean {
  try {
    tls.createSecureContext({ ciphers, minVersion: 'TLSv1', maxVersion: 'TLSv1.2' });
    return true;
  } catch {
    return false;
  }
}

async function handshakeOutcome(ctx: CheckContext, options: tls.ConnectionOptions): Promise<{ outcome: ProbeOutcome; cipher: string | null; socket: tls.TLSSocket | null; close: () => void }> {
  const s = await reachTls(ctx, tlsOptions(ctx, options));
  if (s.ok) return { outcome: 'accepted', cipher: s.socket.getCipher().name, socket: s.socket, close: () => s.conn.close() };
  return { outcome: s.stage === 'handshake' ? 'refused' : 'not-tested', cipher: null, socket: null, close: () => undefined };
}

export async function probeVersion(ctx: CheckContext, v: TlsVersion): Promise<ProbeOutcome> {
  // TLS 1.0/1.1 need SHA-1 handshake signatures that OpenSSL 3 refuses above security level 0.
  const legacy = v === 'TLSv1' || v === 'TLSv1.1';
  const r = await handshakeOutcome(ctx, { minVersion: v, maxVersion: v, ...(legacy ? { ciphers: 'DEFAULT:@SECLEVEL=0' } : {}) });
  r.close();
  return r.outcome;
}

export async function probeCipherClass(ctx: CheckContext, c: CipherClass): Promise<CipherClassResult> {
  const ciphers = CIPHER_CLASS_STRINGS[c];
  if (!canOffer(ciphers)) return { outcome: 'not-testable', cipher: null };
  const r = await handshakeOutcome(ctx, { ciphers, minVersion: 'TLSv1', maxVersion: 'TLSv1.2' });
  r.close();
  return { outcome: r.outcome, cipher: r.cipher };
}

/**
 * Client-initiated renegotiation on a TLS 1.2 session. RFC 9325 §3.5 (and SSL_OP_NO_RENEGOTIATION
 * servers) refuse it; accepting it costs the server a handshake per request (DoS lever).
 */
export async function probeRenegotiation(ctx: CheckContext): Promise<ProbeOutcome> {
  const r = await handshakeOutcome(ctx, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
  const socket = r.socket;
  if (socket === null) return 'not-tested';
  const outcome = await new Promise<ProbeOutcome>((resolve) => {
    let done = false;
    const finish = (o: ProbeOutcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const timer = setTimeout(() => finish('not-tested'), ctx.timeoutMs);
    socket.once('error', () => finish('refused'));
    socket.once('close', () => finish('refused'));
    const started = socket.renegotiate({ rejectUnauthorized: false }, (err) => finish(err ? 'refused' : 'accepted'));
    if (!started) finish('not-tested');
  });
  socket.destroy();
  return outcome;
}

export async function probeAllVersions(ctx: CheckContext): Promise<Record<TlsVersion, ProbeOutcome>> {
  const out = {} as Record<TlsVersion, ProbeOutcome>;
  for (const v of TLS_VERSIONS) out[v] = await probeVersion(ctx, v);
  return out;
}

export async function probeAllCipherClasses(ctx: CheckContext): Promise<Record<CipherClass, CipherClassResult>> {
  const out = {} as Record<CipherClass, CipherClassResult>;
  for (const c of CIPHER_CLASSES) out[c] = await probeCipherClass(ctx, c);
  return out;
}

/** The certificate served when the client sends no SNI (a second handshake). */
export async function probeNoSni(ctx: CheckContext): Promise<{ fingerprint256: string | null; subject: string | null } | null> {
  const s = await reachTls(ctx, tlsOptions(ctx, { sni: false }));
  if (!s.ok) return null;
  const chain = describePeerCertificate(s.socket);
  await s.conn.quit();
  const leaf = chain[0];
  return leaf ? { fingerprint256: leaf.fingerprint256, subject: leaf.subject } : { fingerprint256: null, subject: null };
}

let systemAnchors: X509Certificate[] | null = null;

function anchorsFor(ca: readonly string[]): X509Certificate[] {
  systemAnchors ??= tls.rootCertificates.flatMap((pem) => {
    try {
      return [new X509Certificate(pem)];
    } catch {
      return [];
    }
  });
  const extra = ca.flatMap((bundle) => (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).flatMap((pem) => {
    try {
      return [new X509Certificate(pem)];
    } catch {
      return [];
    }
  }));
  return [...systemAnchors, ...extra];
}

const issuedBy = (cert: X509Certificate, issuer: X509Certificate): boolean => cert.checkIssued(issuer) && cert.verify(issuer.publicKey);

/**
 * Trust by signature alone, whatever the dates: is there a path from the leaf through the
 * certificates the server sent to a trust anchor? OpenSSL stops at its first error (an expired
 * certificate from an unknown CA is only "expired"); this answers the trust question separately.
 */
export function trustPath(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): 'trusted' | 'self-signed' | 'untrusted' {
  const leaf = chain[0];
  if (leaf === undefined) return 'untrusted';
  const isAnchor = (c: X509Certificate): boolean => anchors.some((a) => a.fingerprint256 === c.fingerprint256);
  let cert = leaf;
  for (let depth = 0; depth < 10; depth++) {
    if (isAnchor(cert) || anchors.some((a) => issuedBy(cert, a))) return 'trusted';
    const next = chain.find((c) => c !== cert && c.fingerprint256 !== cert.fingerprint256 && issuedBy(cert, c));
    if (next === undefined) break;
    cert = next;
  }
  return chain.length === 1 && issuedBy(leaf, leaf) ? 'self-signed' : 'untrusted';
}

const TIME_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** Every certificate problem at once (see CertificateFacts.problems). */
export function certProblems(chainDer: readonly string[], opts: { authorized: boolean; verifyError: string | null; nameMatches: boolean; ca: readonly string[]; now: number }): CertProblem[] {
  const out: CertProblem[] = [];
  const chain = chainDer.flatMap((b64) => {
    try {
      return [new X509Certificate(Buffer.from(b64, 'base64'))];
    } catch {
      return [];
    }
  });
  if (chain.some((c) => Date.parse(c.validTo) < opts.now)) out.push('expired');
  if (chain.some((c) => Date.parse(c.validFrom) > opts.now)) out.push('not-yet-valid');
  if (!opts.authorized) {
    if (opts.verifyError === 'DEPTH_ZERO_SELF_SIGNED_CERT') out.push('self-signed');
    else if (opts.verifyError === null || !TIME_ERRORS.has(opts.verifyError)) out.push('untrusted');
    else {
      // OpenSSL gave only the time error: decide trust by the signatures.
      const path = trustPath(chain, anchorsFor(opts.ca));
      if (path !== 'trusted') out.push(path);
      if (out.length === 0) out.push(opts.verifyError === 'CERT_HAS_EXPIRED' ? 'expired' : 'not-yet-valid');
    }
  }
  if (!opts.nameMatches) out.push('name-mismatch');
  return out;
}

/** Trust and name verdicts for an established session (the chain is judged, not enforced). */
export function certificateFacts(socket: tls.TLSSocket, host: string, now = Date.now(), ca: readonly string[] = []): CertificateFacts {
  // Read before describePeerCertificate: on Node 20, getPeerCertificate() returns {} once
  // getPeerCertificate(true) has been called on the same socket.
  const peer = socket.getPeerCertificate(true);
  const chainDer: string[] = [];
  const seen = new Set<string>();
  for (let node: tls.DetailedPeerCertificate | undefined = peer; node?.raw !== undefined && !seen.has(node.fingerprint256); node = node.issuerCertificate) {
    seen.add(node.fingerprint256);
    chainDer.push(node.raw.toString('base64'));
  }
  const chain = describePeerCertificate(socket);
  const authErr: unknown = socket.authorizationError;
  const verifyError = socket.authorized ? null : authErr instanceof Error ? (((authErr as { code?: string }).code ?? authErr.message)) : authErr ? String(authErr) : 'UNKNOWN';
  let nameError: string | null = 'no certificate';
  if (peer && Object.keys(peer).length > 0) {
    // RFC 6125 §6 as Node implements it (SAN dNSName/iPAddress; wildcard in the left-most label).
    const err = tls.checkServerIdentity(host, peer);
    nameError = err ? errorText(err) : null;
  }
  const leaf = chain[0];
  const daysLeft = leaf ? Math.floor((Date.parse(leaf.notAfter) - now) / 86_400_000) : null;
  const problems = certProblems(chainDer, { authorized: socket.authorized, verifyError, nameMatches: nameError === null, ca, now });
  return { chain, chainDer, trusted: socket.authorized, verifyError, nameMatches: nameError === null, nameError, daysLeft, problems, noSni: null };
}
