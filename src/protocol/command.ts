/**
 * SMTP command parsing (RFC 5321 §4.1): a command line becomes a verb from a closed set plus
 * its argument text; the MAIL/RCPT paths and ESMTP parameters are parsed here too.
 *
 * Invariants: verbs are matched case-insensitively and exactly (no prefixes); nothing here throws
 * on any input (property-tested); results never contain CR or LF.
 */

export const VERBS = [
  'EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP',
  'STARTTLS', 'AUTH',
] as const;
export type Verb = (typeof VERBS)[number];

const VERB_SET: ReadonlySet<string> = new Set(VERBS);

/** HTTP request methods: a line starting with one of these is not SMTP (ALPACA, cross-protocol). */
const HTTP_VERBS: ReadonlySet<string> = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'PATCH', 'TRACE']);

export type Command =
  | { kind: 'command'; verb: Verb; args: string }
  | { kind: 'unknown'; word: string }
  | { kind: 'http'; word: string }
  | { kind: 'empty' };

export function parseCommand(line: string): Command {
  const sp = line.indexOf(' ');
  const word = sp < 0 ? line : line.slice(0, sp);
  const args = sp < 0 ? '' : line.slice(sp + 1);
  if (word.length === 0 && args.trim().length === 0) return { kind: 'empty' };
  const upper = word.toUpperCase();
  if (VERB_SET.has(upper)) return { kind: 'command', verb: upper as Verb, args };
  if (HTTP_VERBS.has(upper) && args.length > 0) return { kind: 'http', word: upper };
  // Header-like lines ("Host: x", "User-Agent: y") mean an HTTP client or a confused peer.
  if (/^[A-Za-z][A-Za-z0-9-]*:/.test(word)) return { kind: 'http', word };
  return { kind: 'unknown', word: word.slice(0, 32) };
}

/** One ESMTP parameter (`KEY` or `KEY=VALUE`), keyword upper-cased (RFC 5321 §4.1.2 esmtp-param). */
export interface EsmtpParam {
  key: string;
  value: string | null;
}

export type PathResult =
  | { ok: true; address: string; params: EsmtpParam[] }
  | { ok: false; reason: 'syntax' | 'address' | 'param' };

/**
 * Parses `FROM:<path> params` or `TO:<path> params`. `prefix` is 'FROM' or 'TO'. Whitespace after
 * the colon is tolerated (many clients send it; Postfix accepts it). `allowNull` admits `<>`.
 */
export function parsePathArgs(args: string, prefix: 'FROM' | 'TO', allowNull: boolean): PathResult {
  const head = prefix + ':';
  if (args.length < head.length || args.slice(0, head.length).toUpperCase() !== head) return { ok: false, reason: 'syntax' };
  let rest = args.slice(head.length).trimStart();
  let address: string;
  if (rest.startsWith('<')) {
    const close = findPathEnd(rest);
    if (close < 0) return { ok: false, reason: 'syntax' };
    address = rest.slice(1, close);
    rest = rest.slice(close + 1);
  } else {
    // RFC 5321 requires brackets; accept a bare address as Postfix does, but only one token.
    const sp = rest.indexOf(' ');
    address = sp < 0 ? rest : rest.slice(0, sp);
    rest = sp < 0 ? '' : rest.slice(sp);
  }
  // Strip an RFC 5321 §4.1.2 source route ("@a,@b:user@c"): obsolete, ignored.
  if (address.startsWith('@')) {
    const colon = address.indexOf(':');
    if (colon < 0) return { ok: false, reason: 'address' };
    address = address.slice(colon + 1);
  }
  if (address === '') {
    if (!allowNull) return { ok: false, reason: 'address' };
  } else if (!isValidMailbox(address)) {
    return { ok: false, reason: 'address' };
  }
  if (rest.length > 0 && rest[0] !== ' ') return { ok: false, reason: 'syntax' };
  const params = parseParams(rest);
  if (params === null) return { ok: false, reason: 'param' };
  return { ok: true, address: normalizeAddress(address), params };
}

function findPathEnd(s: string): number {
  let quoted = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted) {
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === '>' && !quoted) {
      return i;
    }
  }
  return -1;
}

export function parseParams(text: string): EsmtpParam[] | null {
  const out: EsmtpParam[] = [];
  for (const token of text.split(' ')) {
    if (token === '') continue;
    const eq = token.indexOf('=');
    const key = (eq < 0 ? token : token.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) return null;
    const value = eq < 0 ? null : token.slice(eq + 1);
    if (value !== null && !/^[\x21-\x3c\x3e-\x7e\u0080-\uffff]*$/.test(value)) return null;
    out.push({ key, value });
  }
  return out;
}

/**
 * Mailbox syntax (RFC 5321 §4.1.2, RFC 6531 for UTF-8): local@domain, the local part a dot-string
 * or quoted string, the domain a hostname or an address literal. Controls, spaces outside quotes
 * and angle brackets are refused; length limits from §4.5.3.1.
 */
export function isValidMailbox(address: string): boolean {
  if (address.length > 320) return false;
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64 * 4) return false;
  if (/[\x00-\x1f\x7f]/.test(address)) return false;
  if (local.startsWith('"')) {
    if (!/^"(?:[^"\\]|\\[\x20-\x7e])*"$/.test(local)) return false;
  } else if (!/^[^\s"(),:;<>@[\\\]]+$/.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) {
    return false;
  }
  return isValidDomain(domain);
}

export function isValidDomain(domain: string): boolean {
  if (domain.length > 255 || domain.length === 0) return false;
  if (domain.startsWith('[')) {
    // Address literal: [192.0.2.1] or [IPv6:...].
    return /^\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]$/.test(domain);
  }
  const labels = domain.split('.');
  return labels.every((l) => l.length > 0 && l.length <= 63 && /^[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?$/.test(l));
}

/** Lower-cases the domain part only: local parts may be case-sensitive (RFC 5321 §2.4). */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  return address.slice(0, at) + '@' + address.slice(at + 1).toLowerCase();
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** True when the text is 7-bit ASCII (RFC 6531 §3.4: anything else needs SMTPUTF8). */
export function isAscii(s: string): boolean {
  return !/[^\x00-\x7f]/.test(s);
}

/** EHLO/HELO argument: a domain or an address literal; we accept any printable token. */
export function isValidHeloName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && /^[\x21-\x7e\u0080-\uffff]+$/.test(name);
}
