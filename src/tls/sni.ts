/**
 * Several server certificates: which loaded pair serves which host name (SNI, RFC 6066 §3), and
 * the SecureContexts for them, built once at load or reload (never per connection).
 *
 * Invariants:
 * - A pair covers the dNSName entries of its leaf's SAN, nothing else (RFC 6125 §6.4.4: no CN
 *   fallback). `*.example.org` covers exactly one label left of example.org (RFC 6125 §6.4.3);
 *   other wildcard forms (`f*.example.org`, `*.*.org`) cover nothing.
 * - Per name, at most one pair per key type (OpenSSL keeps one certificate per key type in a
 *   context). Two different pairs of one key type for the same SAN entry are refused
 *   (TLS_CERT_CONFLICT, naming both); the same certificate listed twice is not a conflict.
 * - Each distinct set of pairs gets ONE SecureContext holding all of them, so for a name with an
 *   ECDSA and an RSA pair OpenSSL chooses per client (signature algorithms, TLS 1.2 suites).
 * - The default context (no SNI, or a name nothing covers) is the set serving the default pair's
 *   first DNS name, i.e. the default certificate plus its other-key-type twin if configured.
 * - Lookup is at most two Map gets: the exact name, then its parent for a wildcard.
 */
import tls from 'node:tls';
import { PostsealError } from '../errors.js';
import type { LoadedKeyPair } from './certs.js';
import { serverContextOptions, type ServerContexts, type ServerTlsPolicyOptions, type SniCallback } from './options.js';

/** A loaded pair and the config key it came from (for messages: 'tls.certificates[1]'). */
export interface LabelledPair {
  label: string;
  pair: LoadedKeyPair;
}

export interface CertificateSelection extends ServerContexts {
  /** Context for a name; the default one when no certificate covers it. */
  pick(servername: string): tls.SecureContext;
  /** How many distinct contexts exist (1: SNI plays no part). */
  readonly contextCount: number;
}

/** Lower-case DNS names of the leaf's SAN (the names this pair can serve by SNI). */
export function sanDnsNames(pair: LoadedKeyPair): string[] {
  return pair.leaf.subjectAltNames.filter((n) => n.type === 'dns').map((n) => n.value.toLowerCase());
}

/** 'ec', 'rsa', 'rsa-pss', 'ed25519', ...: one OpenSSL certificate slot each. */
function keyType(pair: LoadedKeyPair): string {
  return pair.leaf.key.type;
}

/** Build the name → context maps. Throws PostsealError('TLS_CERT_CONFLICT'). */
export function buildSelection(pairs: LabelledPair[], policy: ServerTlsPolicyOptions = {}): CertificateSelection {
  const first = pairs[0];
  if (first === undefined) throw new PostsealError('TLS_NO_CERTIFICATE', 'no certificate to serve');
  // SAN entry → key type → index into pairs.
  const byEntry = new Map<string, Map<string, number>>();
  for (const [i, { label, pair }] of pairs.entries()) {
    const names = sanDnsNames(pair);
    if (names.length === 0 && i > 0) {
      throw new PostsealError('TLS_CERT_INVALID', `${label}: certificate ${pair.certFile} has no DNS name in its subjectAltName, so no client can select it by SNI`);
    }
    for (const entry of names) {
      const slots = byEntry.get(entry) ?? new Map<string, number>();
      byEntry.set(entry, slots);
      const type = keyType(pair);
      const seen = slots.get(type);
      if (seen === undefined) {
        slots.set(type, i);
        continue;
      }
      const other = pairs[seen];
      if (other === undefined || other.pair.leaf.fingerprint256 === pair.leaf.fingerprint256) continue;
      throw new PostsealError(
        'TLS_CERT_CONFLICT',
        `${label} (${pair.certFile}) and ${other.label} (${other.pair.certFile}) are both ${type.toUpperCase()} certificates for ${entry}: give each name one certificate per key type`,
      );
    }
  }
  // One context per distinct set of pairs; a single pair reuses the context validated at load.
  const bySet = new Map<string, tls.SecureContext>();
  const contextFor = (indices: number[]): tls.SecureContext => {
    const key = indices.join(',');
    const cached = bySet.get(key);
    if (cached !== undefined) return cached;
    const members = indices.map((i) => pairs[i]).filter((p): p is LabelledPair => p !== undefined);
    const only = members.length === 1 ? members[0] : undefined;
    let context: tls.SecureContext;
    if (only !== undefined) {
      context = only.pair.context;
    } else {
      try {
        // Several key pairs in one context: OpenSSL keeps one per key type and picks per client.
        context = tls.createSecureContext({
          ...serverContextOptions(policy),
          cert: members.map((m) => m.pair.certPem),
          key: members.map((m) => m.pair.keyPem),
        });
      } catch (err) {
        const labels = members.map((m) => m.label).join(' + ');
        throw new PostsealError('TLS_CERT_INVALID', `${labels}: OpenSSL refused them in one context: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    bySet.set(key, context);
    return context;
  };
  const exact = new Map<string, tls.SecureContext>();
  const wildcard = new Map<string, tls.SecureContext>();
  for (const [entry, slots] of byEntry) {
    const context = contextFor([...slots.values()].sort((a, b) => a - b));
    if (!entry.includes('*')) exact.set(entry, context);
    // RFC 6125 §6.4.3: only a whole left-most label '*' is honoured, and it matches one label.
    else if (entry.startsWith('*.') && !entry.slice(2).includes('*') && entry.slice(2).includes('.')) wildcard.set(entry.slice(2), context);
  }
  const primary = sanDnsNames(first.pair)[0];
  const primarySlots = primary === undefined ? undefined : byEntry.get(primary);
  const fallback = contextFor(primarySlots === undefined ? [0] : [...primarySlots.values()].sort((a, b) => a - b));
  const pick = (servername: string): tls.SecureContext => {
    let name = servername.toLowerCase();
    if (name.endsWith('.')) name = name.slice(0, -1);
    const hit = exact.get(name);
    if (hit !== undefined) return hit;
    const dot = name.indexOf('.');
    return (dot > 0 ? wildcard.get(name.slice(dot + 1)) : undefined) ?? fallback;
  };
  const contextCount = new Set([fallback, ...bySet.values()]).size;
  const sniCallback: SniCallback | null = contextCount > 1 ? (servername, cb) => cb(null, pick(servername)) : null;
  return { context: fallback, sniCallback, pick, contextCount };
}
