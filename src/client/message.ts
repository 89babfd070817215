/**
 * Everything the client checks or builds before a byte goes out: command arguments (EHLO name,
 * addresses, ESMTP parameters, AUTH user), message content line endings, and a minimal message
 * for `postseal send --subject/--body`.
 *
 * Invariants: a value with CR, LF or NUL never reaches a command line (CRLF_INJECTION, the
 * nodemailer advisories class); content with a bare CR or LF is refused or normalised, never sent
 * (a relay never forwards one: SMTP smuggling, CVE-2023-51764 class, RFC 5321 §2.3.8).
 */
import { randomBytes } from 'node:crypto';
import { hasBareCrOrLf, normalizeLineEndings } from '../protocol/data.js';
import { isAscii, isValidHeloName, isValidMailbox } from '../protocol/command.js';

export { isAscii, normalizeLineEndings };
import { SmtpClientError } from './errors.js';

const CONTROL = /[\r\n\0]/;

/** Refuses CR, LF and NUL in anything that becomes part of a command line. */
export function assertNoLineBreak(value: string, what: string): void {
  if (CONTROL.test(value)) throw new SmtpClientError('CRLF_INJECTION', `${what} contains CR, LF or NUL: refused before sending`);
}

export function checkHeloName(name: string): void {
  assertNoLineBreak(name, 'EHLO name');
  // RFC 5321 §4.1.1.1: a domain or an address literal; we only insist on one printable token.
  if (!isValidHeloName(name)) throw new SmtpClientError('INVALID_ARGUMENT', `EHLO name ${JSON.stringify(name)} is not a single printable token`);
}

/** `allowNull`: the reverse path may be empty (bounces, RFC 5321 §4.5.5). */
export function checkMailbox(address: string, what: string, allowNull = false): void {
  assertNoLineBreak(address, what);
  if (address === '' && allowNull) return;
  if (!isValidMailbox(address)) throw new SmtpClientError('INVALID_ARGUMENT', `${what} ${JSON.stringify(address)} is not a valid mailbox`);
}

/** RFC 5321 §4.1.2 esmtp-param: keyword [ "=" value ], value printable US-ASCII without "=" or space. */
export function checkParam(param: string): void {
  assertNoLineBreak(param, 'ESMTP parameter');
  if (!/^[A-Za-z0-9][A-Za-z0-9-]*(?:=[\x21-\x3c\x3e-\x7e]+)?$/.test(param)) {
    throw new SmtpClientError('INVALID_ARGUMENT', `ESMTP parameter ${JSON.stringify(param)} is not keyword[=value]`);
  }
}

export type BareLineEndings = 'reject' | 'normalize';

/** Returns content safe to send: only CRLF line endings. */
export function prepareContent(content: Uint8Array | string, mode: BareLineEndings): Uint8Array {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (!hasBareCrOrLf(bytes)) return bytes;
  if (mode === 'reject') {
    throw new SmtpClientError('BARE_LINE_ENDING', 'message content has a bare CR or LF: refused (pass bareLineEndings: "normalize" to convert to CRLF)');
  }
  return normalizeLineEndings(bytes);
}

export function has8bit(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b > 0x7f) return true;
  return false;
}


export interface SimpleMessage {
  from: string;
  to: string[];
  subject: string;
  body: string;
  date?: Date;
  /** Domain for the Message-ID; default the sender's domain. */
  idDomain?: string;
}

/** A minimal RFC 5322 message (Date, Message-ID, From, To, Subject), CRLF line endings. */
export function buildMessage(m: SimpleMessage): string {
  for (const v of [m.from, ...m.to, m.subject]) assertNoLineBreak(v, 'header value');
  const domain = m.idDomain ?? m.from.slice(m.from.lastIndexOf('@') + 1) ?? 'localhost';
  const id = `${Date.now().toString(36)}.${randomBytes(8).toString('hex')}@${domain || 'localhost'}`;
  const subject = isAscii(m.subject) ? m.subject : `=?UTF-8?B?${Buffer.from(m.subject, 'utf8').toString('base64')}?=`;
  const headers = [
    `Date: ${(m.date ?? new Date()).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}>`,
    `From: <${m.from}>`,
    `To: ${m.to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: ${subject}`,
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${isAscii(m.body) ? 'us-ascii' : 'utf-8'}`,
    `Content-Transfer-Encoding: ${isAscii(m.body) ? '7bit' : '8bit'}`,
  ];
  const body = m.body.replace(/\r\n|\r|\n/g, '\r\n');
  return headers.join('\r\n') + '\r\n\r\n' + body + (body.endsWith('\r\n') ? '' : '\r\n');
}
