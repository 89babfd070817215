/**
 * Client-side TLS: the options for a handshake toward the host we mean to reach, and the check
 * that follows it (chain + name), separated so `encrypt` can report why a certificate would not
 * verify while still using the session.
 *
 * Invariants:
 * - SNI is always the intended name (RFC 6066 §3), except for IP literals, where Node refuses
 *   to send an IP as server_name (RFC 6066 forbids it): then no SNI is sent;
 * - the name check is tls.checkServerIdentity against the intended name (the MX host or the
 *   name given by the caller), never against the address we connected to;
 * - the handshake itself never rejects a certificate (rejectUnauthorized: false); the decision
 *   is taken right after it by the caller, before any SMTP byte is written inside TLS;
 * - TLS 1.0/1.1 are not offered (RFC 8996) unless the caller lowers minVersion.
 */
import net from 'node:net';
import tls from 'node:tls';
import { verifyDane, type TlsaRecord } from '../tls/dane.js';
import { describePeerCertificate, summarizeTls, type CertificateSummary } from '../tls/summary.js';
import type { TlsFacts } from '../types.js';

export interface ClientTlsOptions {
  /** Trust anchors (PEM). Replaces the system roots when given (Node's `ca` semantics). */
  ca?: string | Buffer | Array<string | Buffer>;
  minVersion?: tls.SecureVersion;
  /** Client certificate, if the server asks for one. */
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** What a handshake gave us, as plain data. */
export interface TlsSessionInfo extends TlsFacts {
  /** Chain trusted (PKIX) and name matched. At level dane PKIX is not consulted: false. */
  verified: boolean;
  /** The peer was authenticated by a DANE-EE(3) or DANE-TA(2) record (level dane); else null. */
  dane: 'ee' | 'ta' | null;
  /** At level dane, why no TLSA record matched; else null. */
  daneError: string | null;
  /** Why not verified (OpenSSL code such as 'CERT_HAS_EXPIRED', or the name-mismatch reason). */
  verifyError: string | null;
  /** The name the certificate was checked against. */
  checkedName: string;
  /** Leaf first. */
  peerCertificates: CertificateSummary[];
}

export function tlsConnectOptions(intendedName: string, opts: ClientTlsOptions): tls.ConnectionOptions {
  const o: tls.ConnectionOptions = {
    rejectUnauthorized: false,
    // One context per distinct trust/identity setting, reused across connections: building one
    // parses every CA certificate, which would otherwise be paid on each delivery.
    secureContext: contextFor(opts),
    // Our own identity check runs in inspectSession(); keep Node's from throwing on 'encrypt'.
    checkServerIdentity: () => undefined,
  };
  // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
  if (net.isIP(stripBrackets(intendedName)) === 0) o.servername = intendedName;
  return o;
}

const contexts = new Map<string, tls.SecureContext>();
const contextKeys = new WeakMap<object, string>();

function keyPart(v: string | Buffer | Array<string | Buffer> | undefined): string {
  if (v === undefined) return '';
  if (Array.isArray(v)) return v.map((x) => keyPart(x)).join('\u0000');
  return typeof v === 'string' ? v : v.toString('latin1');
}

/** The client SecureContext for these options (RFC 8996: TLS 1.2 minimum unless lowered). */
export function contextFor(opts: ClientTlsOptions): tls.SecureContext {
  let key = contextKeys.get(opts);
  if (key === undefined) {
    // No `ca` (the system roots) and `ca: []` (no anchor at all: level dane) are different contexts.
    const ca = opts.ca === undefined ? '\u0002system' : keyPart(opts.ca);
    key = [opts.minVersion ?? 'TLSv1.2', ca, keyPart(opts.cert), keyPart(opts.key)].join('\u0001');
    contextKeys.set(opts, key);
  }
  let ctx = contexts.get(key);
  if (!ctx) {
    const o: tls.SecureContextOptions = { minVersion: opts.minVersion ?? 'TLSv1.2' };
    if (opts.ca !== undefined) o.ca = opts.ca;
    if (opts.cert !== undefined) o.cert = opts.cert;
    if (opts.key !== undefined) o.key = opts.key;
    ctx = tls.createSecureContext(o);
    // Bounded: a long-running process sees few distinct settings; start over if it sees many.
    if (contexts.size >= 64) contexts.clear();
    contexts.set(key, ctx);
  }
  return ctx;
}

/**
 * At level dane no trust anchor is loaded (RFC 7672 §3.1.3: PKIX is not used), so the chain Node
 * reports is exactly the one the server served, and a DANE-TA(2) anchor must be among it.
 */
export function daneTlsOptions(opts: ClientTlsOptions): ClientTlsOptions {
  return { ...opts, ca: [] };
}

/**
 * Chain result from OpenSSL plus our name check (RFC 6125 via tls.checkServerIdentity); with
 * `dane`, the TLSA decision (RFC 7672 §3.1) on the served chain instead.
 */
export function inspectSession(socket: tls.TLSSocket, intendedName: string, dane?: { tlsa: readonly TlsaRecord[]; names: readonly string[] }): TlsSessionInfo {
  const name = stripBrackets(intendedName);
  const facts = summarizeTls(socket, { sni: net.isIP(name) === 0 ? name : null });
  let verifyError: string | null = null;
  if (!socket.authorized) {
    const e: unknown = socket.authorizationError;
    verifyError = e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e ?? 'UNKNOWN');
  } else {
    const cert = socket.getPeerCertificate();
    const err = tls.checkServerIdentity(name, cert);
    if (err) verifyError = `${(err as NodeJS.ErrnoException).code ?? 'ERR_TLS_CERT_ALTNAME_INVALID'}: ${err.message}`;
  }
  let peerCertificates: CertificateSummary[] = [];
  try {
    peerCertificates = describePeerCertificate(socket);
  } catch {
    peerCertificates = [];
  }
  let daneMatch: 'ee' | 'ta' | null = null;
  let daneError: string | null = null;
  if (dane !== undefined) {
    const v = verifyDane(dane.tlsa, peerChainDer(socket), dane.names);
    daneMatch = v.matched;
    daneError = v.error;
  }
  return { ...facts, verified: verifyError === null, verifyError, dane: daneMatch, daneError, checkedName: name, peerCertificates };
}

/** The peer chain as DER, leaf first (getPeerCertificate(true): see tls/summary.ts on why not the X509 API). */
function peerChainDer(socket: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let node: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (node !== undefined && node.raw !== undefined && !seen.has(node.fingerprint256)) {
    seen.add(node.fingerprint256);
    out.push(node.raw);
    node = node.issuerCertificate;
  }
  return out;
}

function stripBrackets(name: string): string {
  return name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1).replace(/^IPv6:/i, '') : name;
}
