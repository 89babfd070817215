/**
 * The server TLS policy, in one place.
 *
 * Invariants:
 * - Every server-side SecureContext postseal creates goes through `serverContextOptions`, so the
 *   protocol floor, ciphers and `secureOptions` are the same on 25, 587 and 465.
 * - In Node, minVersion/ciphers/honorCipherOrder/secureOptions are properties of the
 *   SecureContext, not of the socket: a `TLSSocket` built with `secureContext` ignores them. That
 *   is why the policy is applied where contexts are created (certs.ts) and the socket options
 *   below carry only the context and the ALPN callback.
 * - ALPN: only 'smtp' is accepted; any other offer ends the handshake with the
 *   `no_application_protocol` alert (RFC 7301 §3.2), which defeats ALPACA-style cross-protocol
 *   redirection. A client that offers no ALPN at all is fine (most MTAs do not send it).
 *
 * Verified on Node 20.20 / OpenSSL 3.0: `ALPNCallback` works both on `tls.createServer` and on
 * `new tls.TLSSocket(raw, { isServer: true, secureContext, ALPNCallback })`, the latter being the
 * STARTTLS path (an existing plaintext net.Socket is wrapped). Returning `undefined` from the
 * callback makes OpenSSL send the fatal alert; the client sees
 * `ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL`, the server socket `ERR_SSL_NO_APPLICATION_PROTOCOL`.
 */
import { constants } from 'node:crypto';
import tls from 'node:tls';

/** The one ALPN protocol id we speak (IANA "smtp", registered for RFC 8314-era use). */
export const SMTP_ALPN = 'smtp' as const;

/** Protocol floor for production: RFC 8996 §2-§3 deprecates TLS 1.0 and 1.1. */
export const DEFAULT_MIN_VERSION: tls.SecureVersion = 'TLSv1.2';

/**
 * The server's cipher list, in preference order (honorCipherOrder: the server's order wins).
 *
 * TLS 1.3 suites first (Node hands the `TLS_` names to SSL_CTX_set_ciphersuites, the rest to
 * SSL_CTX_set_cipher_list). All three are AEAD (RFC 9325 §4.2 allows each); AES-128-GCM leads
 * because its SHA-256 key schedule is cheaper per handshake than AES-256-GCM's SHA-384 (OpenSSL's
 * default order, which put TLS_AES_256_GCM_SHA384 first), and AES-128 is cheaper per byte with
 * AES-NI. A client that offers only one of them still gets it.
 *
 * TLS 1.2 suites: ECDHE (or DHE) key exchange with an AEAD cipher only (RFC 9325 §4.2: no CBC,
 * no static RSA key exchange, no SHA-1 MAC). Node's default list adds CBC-SHA1/SHA2 suites via
 * "HIGH", which no TLS 1.2 MTA needs.
 */
export const AEAD_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
].join(':');

/** Knobs a caller may turn. Production code passes nothing. */
export interface ServerTlsPolicyOptions {
  /**
   * Lower the floor, for tests only (e.g. a checker tested against a TLS 1.0 server).
   * Below TLS 1.2 the OpenSSL security level is dropped to 0 too, as OpenSSL 3 otherwise refuses
   * the SHA-1 based handshake signatures TLS 1.0/1.1 need.
   */
  minVersion?: tls.SecureVersion;
}

const LEGACY_VERSIONS: ReadonlySet<tls.SecureVersion> = new Set<tls.SecureVersion>(['TLSv1', 'TLSv1.1']);

/**
 * SecureContext options (without cert/key) carrying the server policy.
 * Merge with `{ cert, key }` and hand to `tls.createSecureContext` or `server.setSecureContext`.
 */
export function serverContextOptions(policy: ServerTlsPolicyOptions = {}): tls.SecureContextOptions {
  const minVersion = policy.minVersion ?? DEFAULT_MIN_VERSION;
  const legacy = LEGACY_VERSIONS.has(minVersion);
  return {
    // RFC 8996 §2, §3: TLS 1.0/1.1 MUST NOT be used. RFC 9325 §3.1.1: support TLS 1.2.
    minVersion,
    // RFC 9325 §3.1.1: prefer TLS 1.3. Node's default maxVersion is TLSv1.3 and OpenSSL picks
    // the highest version both sides offer, so nothing is set here on purpose.
    //
    // RFC 9325 §4.1, §4.2: AEAD suites with forward secrecy (TLS 1.3 suites, then ECDHE/DHE
    // AEAD; no RC4/3DES/export/NULL/CBC). Legacy test mode only lowers the security level so
    // OpenSSL 3 will complete a TLS 1.0 handshake at all.
    ciphers: legacy ? `${tls.DEFAULT_CIPHERS}:@SECLEVEL=0` : AEAD_CIPHERS,
    // RFC 9325 §4.2: the server enforces its own preference order (TLS 1.3 and 1.2 alike).
    honorCipherOrder: true,
    secureOptions:
      // RFC 9325 §3.5: renegotiation is a source of attacks and MTAs do not need it.
      constants.SSL_OP_NO_RENEGOTIATION |
      // RFC 9325 §3.3: disable TLS-level compression (CRIME).
      constants.SSL_OP_NO_COMPRESSION,
    // Session-id resumption needs a context id; one constant per product is enough.
    sessionIdContext: 'postseal',
  };
}

/**
 * RFC 7301 §3.2: "In the event that the server supports no protocols that the client advertises,
 * then the server SHALL respond with a fatal no_application_protocol alert." Returning undefined
 * from Node's ALPNCallback is what makes OpenSSL send that alert.
 */
export function smtpAlpnCallback(arg: { servername: string; protocols: string[] }): string | undefined {
  return arg.protocols.includes(SMTP_ALPN) ? SMTP_ALPN : undefined;
}

/** Anything that can hand out the context for the next handshake (CertificateStore does). */
export type SecureContextGetter = () => tls.SecureContext | null;

/**
 * Options for `new tls.TLSSocket(rawSocket, options)` on the server side: the STARTTLS upgrade
 * (RFC 3207) and, equally, implicit TLS on 465 when the listener wraps accepted net.Sockets.
 * The getter is called now, once: the session keeps this context even if the store reloads.
 * Returns null when there is no certificate, so the caller answers STARTTLS with 454
 * (RFC 3207 §4) and keeps the plaintext session usable.
 * The handshake timeout is the caller's job (TLSSocket has none).
 */
export function upgradeSocketOptions(getContext: SecureContextGetter): ServerSocketOptions | null {
  const secureContext = getContext();
  return secureContext === null ? null : serverSocketOptions({ context: secureContext, sniCallback: null });
}

/** Node's SNICallback shape: hand back the context for `servername` (undefined: the default). */
export type SniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void;

/** What a handshake needs from the certificate store: the default context and, with several, SNI. */
export interface ServerContexts {
  /** For clients that send no SNI or ask for a name no certificate covers. */
  readonly context: tls.SecureContext;
  /** Present only when there is more than one context to choose from. */
  readonly sniCallback: SniCallback | null;
}

export type ServerSocketOptions = tls.TLSSocketOptions & { secureContext: tls.SecureContext };

/**
 * Socket options for one server handshake from the store's current contexts (see
 * upgradeSocketOptions). With several contexts the options carry `SNICallback`; the transport's
 * secureServerSocket honours it by choosing the context from the ClientHello *before* building
 * the TLSSocket, because Node's own SNI path keeps only one key pair of a context
 * (transport/client-hello.ts). Null without a certificate (454, RFC 3207 §4).
 */
export function serverSocketOptions(contexts: ServerContexts | null): ServerSocketOptions | null {
  if (contexts === null) return null;
  const options: ServerSocketOptions = {
    isServer: true,
    secureContext: contexts.context,
    // We do not ask for client certificates; AUTH happens in SMTP.
    requestCert: false,
    rejectUnauthorized: false,
    ALPNCallback: smtpAlpnCallback,
  };
  if (contexts.sniCallback !== null) options.SNICallback = contexts.sniCallback;
  return options;
}

/**
 * Options for `tls.createServer` (implicit TLS, RFC 8314 §3.3). The context is picked per
 * handshake through SNICallback. Caveat verified on Node 20: SNICallback only runs when the client
 * sends SNI; a client without SNI (e.g. one connecting by IP) gets the server's default context,
 * built from `defaults` (cert/key PEM). Keep that default current after reloads with
 * `CertificateStore.bindServer(server)`. Wrapping accepted sockets with `upgradeSocketOptions`
 * has no such caveat and shares the STARTTLS code path, so it is the preferred way. A second
 * caveat: Node's SNI path applies one key pair of the chosen context (nodejs/node#54235), so
 * ECDSA+RSA for one name only works through serverSocketOptions + transport's secureServerSocket.
 */
export function implicitTlsServerOptions(
  getContext: SecureContextGetter,
  defaults: { cert?: string | Buffer; key?: string | Buffer; policy?: ServerTlsPolicyOptions } = {},
): tls.TlsOptions {
  const options: tls.TlsOptions = {
    ...serverContextOptions(defaults.policy),
    requestCert: false,
    rejectUnauthorized: false,
    ALPNCallback: smtpAlpnCallback,
    SNICallback: (_servername, cb) => {
      const ctx = getContext();
      // undefined → OpenSSL continues with the server's default context.
      cb(null, ctx ?? undefined);
    },
  };
  if (defaults.cert !== undefined) options.cert = defaults.cert;
  if (defaults.key !== undefined) options.key = defaults.key;
  return options;
}
