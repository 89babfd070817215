/**
 * The Received header the server prepends to every accepted message (RFC 5321 §4.4), naming the
 * protocol with RFC 3848 keywords (ESMTPS/ESMTPSA: the "S" records TLS, RFC 8314 §7.4 asks for
 * the TLS facts too). Header lines are folded under 78 characters where the parts allow.
 * On an authenticated session the login is named as Postfix does,
 * "(Authenticated sender: alice@example.org)" after the from clause, unless the operator hides it
 * (config received.showAuthenticatedSender = false; the ESMTPA/ESMTPSA keyword stays).
 */
import type { ReceivedProtocol, TlsFacts } from '../types.js';

export interface ReceivedInput {
  heloName: string;
  clientAddress: string;
  hostname: string;
  protocol: ReceivedProtocol;
  id: string;
  tls: TlsFacts | null;
  /** Named only when there is exactly one recipient (privacy of the others). */
  recipient: string | null;
  date: Date;
  /** The AUTH identity to name, or null (not authenticated, or hidden by configuration). */
  authenticatedSender?: string | null;
}

function sanitize(s: string): string {
  // Header content must never carry CR/LF or unbalanced parentheses from the client.
  return s.replace(/[\x00-\x1f\x7f()]/g, '?').slice(0, 255);
}

export function buildReceived(r: ReceivedInput): string {
  return receivedHead(r) + r.id + receivedTls(r.tls) + receivedTail(r.recipient, r.date);
}

/** The part before the id: the same for every message of a session (until EHLO/STARTTLS/AUTH). */
export function receivedHead(r: Pick<ReceivedInput, 'heloName' | 'clientAddress' | 'hostname' | 'protocol' | 'authenticatedSender'>): string {
  const ip = r.clientAddress.includes(':') ? `IPv6:${r.clientAddress}` : r.clientAddress;
  const auth = r.authenticatedSender ? `\r\n\t(Authenticated sender: ${sanitize(r.authenticatedSender)})` : '';
  return `Received: from ${sanitize(r.heloName)} ([${ip}])${auth}\r\n\tby ${r.hostname} (postseal) with ${r.protocol} id `;
}

/** The TLS clause after the id ('' without TLS): the same for every message of a session. */
export function receivedTls(tls: TlsFacts | null): string {
  return tls ? `\r\n\t(using ${sanitize(tls.protocol)} with cipher ${sanitize(tls.cipher)})` : '';
}

/** The per-message end: recipient (when there is exactly one) and date. */
export function receivedTail(recipient: string | null, date: Date): string {
  return `${recipient ? `\r\n\tfor <${sanitize(recipient)}>` : ''};\r\n\t${rfc5322Date(date)}\r\n`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let dateSecond = Number.NaN;
let dateText = '';

export function rfc5322Date(d: Date): string {
  // Many messages share a second: format each second once.
  const sec = Math.floor(d.getTime() / 1000);
  if (sec === dateSecond) return dateText;
  dateText = formatDate(d);
  dateSecond = sec;
  return dateText;
}

function formatDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
