/**
 * Plain-data summaries of a negotiated TLS session and of certificates, for logs, Received
 * headers (RFC 8314 §4.3), stored messages and checker reports.
 *
 * Invariants: nothing here throws on an odd peer certificate (unknown signature OIDs, odd SAN
 * types): fields degrade to 'unknown'/empty instead; outputs are JSON-safe (strings, numbers,
 * booleans, null; dates as ISO 8601). Only Node's own X509 parser runs here (no ASN.1 library):
 * the client summarizes the peer chain on every connection, so this is on the delivery path.
 */
import { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import type { TlsFacts } from '../types.js';

/** One certificate, as a checker or a log line wants it. */
export interface CertificateSummary {
  /** RFC 4514 string, e.g. 'CN=mx.example.org, O=Example'. */
  subject: string;
  issuer: string;
  /** SAN entries; type is 'dns' | 'ip' | 'email' | 'url' | 'dn' | 'id' | 'other'. */
  subjectAltNames: Array<{ type: string; value: string }>;
  notBefore: string;
  notAfter: string;
  /** 'AB:CD:...' as Node prints it. */
  fingerprint256: string;
  serialNumber: string;
  key: { type: string; bits: number | null; curve: string | null };
  signatureAlgorithm: { oid: string; name: string };
  isCa: boolean;
  /** Subject equals issuer and the signature verifies with its own key. */
  selfSigned: boolean;
}

/**
 * The TLS facts of a finished handshake. Server side: `group` is null (Node only reports the
 * ephemeral key on the client), `sni` is what the client sent. Client side: pass the name we
 * sent as `sni` if `socket.servername` is not set.
 */
export function summarizeTls(socket: tls.TLSSocket, options: { sni?: string | null } = {}): TlsFacts {
  const cipher = socket.getCipher();
  const info: unknown = socket.getEphemeralKeyInfo();
  let group: string | null = null;
  if (typeof info === 'object' && info !== null && 'name' in info && typeof info.name === 'string') {
    group = info.name;
  }
  const servername: unknown = (socket as { servername?: unknown }).servername;
  const sni = typeof servername === 'string' && servername !== '' ? servername : (options.sni ?? null);
  const alpn = typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null;
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    // The IANA name (RFC 8446 / RFC 5246 registries), the same on every TLS version and library.
    cipher: cipher.standardName ?? cipher.name,
    group,
    sni,
    alpn,
  };
}

/**
 * The peer's chain as it stands after the handshake, leaf first (Node's getPeerCertificate(true):
 * the certificates the peer sent, completed with trust anchors when verification found them).
 * Empty when the peer sent no certificate.
 * Node 20 pitfall (verified on 20.20): once getPeerX509Certificate() has been called on a
 * socket, every later getPeerCertificate()/getPeerX509Certificate() on it comes back empty.
 * So this reads the chain with getPeerCertificate(true) only (safe to repeat, and safe to mix with
 * getPeerCertificate()), and callers should avoid getPeerX509Certificate() on live sockets.
 */
export function describePeerCertificate(socket: tls.TLSSocket): CertificateSummary[] {
  // Not getPeerX509Certificate(): see the pitfall above.
  const first: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  const out: CertificateSummary[] = [];
  const seen = new Set<string>();
  let node: tls.DetailedPeerCertificate | undefined = first;
  while (node !== undefined && node.raw !== undefined) {
    const cert = new X509Certificate(node.raw);
    if (seen.has(cert.fingerprint256)) break;
    seen.add(cert.fingerprint256);
    out.push(summarizeCertificate(cert));
    const next: tls.DetailedPeerCertificate | undefined = node.issuerCertificate;
    if (next === node) break; // a self-signed root points at itself
    node = next;
  }
  return out;
}

const CURVE_BITS: Readonly<Record<string, number>> = {
  prime256v1: 256,
  'P-256': 256,
  secp384r1: 384,
  'P-384': 384,
  secp521r1: 521,
  'P-521': 521,
  secp256k1: 256,
};

/** Summarize one certificate (Node X509Certificate, PEM or DER). */
export function summarizeCertificate(input: X509Certificate | string | Buffer): CertificateSummary {
  const cert = input instanceof X509Certificate ? input : new X509Certificate(input);
  const pub = cert.publicKey;
  const details = pub.asymmetricKeyDetails ?? {};
  const type = pub.asymmetricKeyType ?? 'unknown';
  const curve = details.namedCurve ?? null;
  let bits: number | null = details.modulusLength ?? null;
  if (bits === null && curve !== null) bits = CURVE_BITS[curve] ?? null;
  if (bits === null && (type === 'ed25519' || type === 'x25519')) bits = 256;
  if (bits === null && (type === 'ed448' || type === 'x448')) bits = 448;
  return {
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    subjectAltNames: subjectAltNames(cert),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint256: cert.fingerprint256,
    serialNumber: cert.serialNumber,
    key: { type, bits, curve },
    signatureAlgorithm: signatureAlgorithm(cert.raw),
    isCa: cert.ca,
    // Not checkIssued(): OpenSSL says no when keyUsage lacks keyCertSign, as on a self-signed leaf.
    selfSigned: cert.subject === cert.issuer && safeVerify(cert),
  };
}

function safeVerify(cert: X509Certificate): boolean {
  try {
    return cert.verify(cert.publicKey);
  } catch {
    return false;
  }
}

/** Node's SAN rendering ("DNS:a, IP Address:1.2.3.4") as typed entries. */
const SAN_TYPES: Readonly<Record<string, string>> = { DNS: 'dns', 'IP Address': 'ip', email: 'email', URI: 'url', DirName: 'dn', 'Registered ID': 'id', othername: 'other' };

function subjectAltNames(cert: X509Certificate): Array<{ type: string; value: string }> {
  const text = cert.subjectAltName ?? '';
  return text
    .split(', ')
    .filter((s) => s !== '')
    .map((s) => {
      const i = s.indexOf(':');
      if (i < 0) return { type: 'unknown', value: s };
      const type = s.slice(0, i);
      return { type: SAN_TYPES[type] ?? type.toLowerCase(), value: s.slice(i + 1) };
    });
}

/** Node renders a distinguished name one RDN per line, in certificate order; we join with ", ". */
function dn(text: string): string {
  return text.split('\n').filter((x) => x !== '').join(', ');
}

/** Signature algorithm OIDs we name; anything else is reported by OID. */
const SIGNATURE_OIDS: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'rsassaPss',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};

/**
 * Node 20's X509Certificate has no signature algorithm, so read it from the DER (RFC 5280 §4.1:
 * Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... }).
 */
export function signatureAlgorithm(der: Uint8Array): { oid: string; name: string } {
  try {
    const outer = readTlv(der, 0);
    const tbs = readTlv(der, outer.contentStart);
    const algSeq = readTlv(der, tbs.end);
    const oid = readTlv(der, algSeq.contentStart);
    if (oid.tag !== 0x06) throw new Error('not an OID');
    const text = decodeOid(der.subarray(oid.contentStart, oid.end));
    return { oid: text, name: SIGNATURE_OIDS[text] ?? text };
  } catch {
    return { oid: '', name: 'unknown' };
  }
}

function readTlv(buf: Uint8Array, at: number): { tag: number; contentStart: number; end: number } {
  const tag = buf[at];
  const first = buf[at + 1];
  if (tag === undefined || first === undefined) throw new Error('truncated DER');
  let len = first;
  let pos = at + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[pos + i] ?? 0);
    pos += n;
  }
  if (pos + len > buf.length) throw new Error('truncated DER');
  return { tag, contentStart: pos, end: pos + len };
}

function decodeOid(bytes: Uint8Array): string {
  const parts: number[] = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (parts.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        parts.push(first, value - first * 40);
      } else {
        parts.push(value);
      }
      value = 0;
    }
  }
  return parts.join('.');
}
