/**
 * The Received header the server prepends to every accepted message (RFC 5321 §4.4), naming the
 * protocol with RFC 3848 keywords (ESMTPS/ESMTPSA: the "S" records TLS, RFC 8314 §7.4 asks for
 * the TLS facts too). Header lines are folded under 78 characters where the parts allow.
 * On an authenticated session the login is named as Postfix does,
 * "(Authenticated sender: alice@example.org)" after the from clause, unless the operator hides it
 * (config received.showAuthenticatedSender = false; the ESMTPA/ESMTPSA keyword stays).
 */
import { rfc5322Date } from '../protocol/date.js';
import type { ReceivedProtocol, TlsFacts } from '../types.js';

/** The session-constant facts of the header (the id, TLS clause and tail are added per message). */
export interface ReceivedHeadInput {
  heloName: string;
  clientAddress: string;
  hostname: string;
  protocol: ReceivedProtocol;
  /** The AUTH identity to name, or null (not authenticated, or hidden by configuration). */
  authenticatedSender?: string | null;
}

function sanitize(s: string): string {
  // Header content must never carry CR/LF or unbalanced parentheses from the client.
  return s.replace(/[\x00-\x1f\x7f()]/g, '?').slice(0, 255);
}

/** The part before the id: the same for every message of a session (until EHLO/STARTTLS/AUTH). */
export function receivedHead(r: ReceivedHeadInput): string {
  const ip = r.clientAddress.includes(':') ? `IPv6:${r.clientAddress}` : r.clientAddress;
  const auth = r.authenticatedSender ? `\r\n\t(Authenticated sender: ${sanitize(r.authenticatedSender)})` : '';
  return `Received: from ${sanitize(r.heloName)} ([${ip}])${auth}\r\n\tby ${r.hostname} (postseal) with ${r.protocol} id `;
}

/** The TLS clause after the id ('' without TLS): the same for every message of a session. */
export function receivedTls(tls: TlsFacts | null): string {
  return tls ? `\r\n\t(using ${sanitize(tls.protocol)} with cipher ${sanitize(tls.cipher)})` : '';
}

/** The per-message end: the recipient, named only when there is exactly one (privacy of the others), and the date. */
export function receivedTail(recipient: string | null, date: Date): string {
  return `${recipient ? `\r\n\tfor <${sanitize(recipient)}>` : ''};\r\n\t${rfc5322Date(date)}\r\n`;
}
