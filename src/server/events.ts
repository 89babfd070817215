/**
 * What the SMTP server tells an observer (metrics, issue 14): sessions, TLS, messages, refusals.
 * Optional (ServerOptions.events): absent or null, nothing is called and nothing is allocated.
 *
 * Invariants:
 * - every session that started (sessionStart) ends exactly once (sessionEnd), with the TLS
 *   version it ended with (null: plaintext throughout);
 * - label values handed out are bounded sets: listener names come from the config, handshake
 *   failure reasons from handshakeFailureReason() below (a fixed list), refusal codes from our
 *   own replies (the enhanced status code, else the three-digit code);
 * - observers are called synchronously on the event loop and must be cheap and must not throw.
 */

export interface ServerEvents {
  /** A connection was admitted (limits passed; on implicit TLS the handshake is done). */
  sessionStart(listener: string): void;
  /** The session is over; `tls` is the protocol it ended with ('TLSv1.3'…), null for plaintext. */
  sessionEnd(listener: string, tls: string | null): void;
  /** A STARTTLS (or implicit-TLS) handshake failed; `reason` is one of HANDSHAKE_FAILURE_REASONS. */
  starttlsFailed(listener: string, reason: HandshakeFailureReason): void;
  /** A message was stored (250 after DATA/BDAT LAST). */
  messageAccepted(listener: string): void;
  /** A 4xx/5xx reply to MAIL, RCPT, DATA or BDAT, or to a message's content. */
  rejected(listener: string, code: string): void;
}

export const HANDSHAKE_FAILURE_REASONS = ['no_shared_cipher', 'protocol_version', 'not_tls', 'certificate_rejected', 'alert', 'client_closed', 'timeout', 'other'] as const;
export type HandshakeFailureReason = (typeof HANDSHAKE_FAILURE_REASONS)[number];

/**
 * The class of a failed server-side handshake, from the error's code (OpenSSL's reason as Node
 * names it, ERR_SSL_*) or message. A fixed list, so a metric label cannot grow without bound.
 */
export function handshakeFailureReason(err: unknown): HandshakeFailureReason {
  const code = typeof err === 'string' ? err : err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : '';
  const c = code.toUpperCase();
  if (c === 'TLS_HANDSHAKE_TIMEOUT' || c.includes('TIMED OUT')) return 'timeout';
  if (c === 'ECONNRESET' || c === 'EPIPE' || c.includes('CONNECTION CLOSED') || c.includes('SOCKET HANG UP')) return 'client_closed';
  if (c.includes('NO_SHARED_CIPHER') || c.includes('NO_CIPHERS') || c.includes('NO_SHARED_GROUP') || c.includes('NO_SUITABLE')) return 'no_shared_cipher';
  // The peer's alert about our certificate (RFC 8446 §6.2: bad_certificate, unknown_ca, …).
  if (c.includes('ALERT_BAD_CERTIFICATE') || c.includes('ALERT_UNKNOWN_CA') || c.includes('ALERT_CERTIFICATE_UNKNOWN') || c.includes('ALERT_CERTIFICATE_EXPIRED') || c.includes('ALERT_UNSUPPORTED_CERTIFICATE') || c.includes('ALERT_CERTIFICATE_REVOKED')) return 'certificate_rejected';
  if (c.includes('UNSUPPORTED_PROTOCOL') || c.includes('NO_PROTOCOLS_AVAILABLE') || c.includes('ALERT_PROTOCOL_VERSION') || c.includes('VERSION_TOO_LOW') || c.includes('VERSION_TOO_HIGH') || c.includes('INAPPROPRIATE_FALLBACK')) return 'protocol_version';
  // Bytes that are no TLS record at all (a plaintext command, an HTTP request, garbage).
  if (c.includes('WRONG_VERSION_NUMBER') || c.includes('HTTP_REQUEST') || c.includes('HTTPS_PROXY_REQUEST') || c.includes('PACKET_LENGTH_TOO_LONG') || c.includes('RECORD_LENGTH_MISMATCH') || c.includes('UNKNOWN_PROTOCOL') || c.includes('RECORD_TOO_LARGE') || c.includes('RECORD_LAYER_FAILURE')) return 'not_tls';
  if (c.includes('ALERT')) return 'alert';
  return 'other';
}
