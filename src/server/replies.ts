/**
 * Every fixed reply the server sends, in one place (aiosmtpd's habit), with the RFC that
 * defines it. Handlers refer to these names; variable text is built by the small functions.
 */
import { reply, type Reply } from '../protocol/reply.js';

export const R = {
  ok: reply(250, '2.0.0', 'OK'),
  senderOk: reply(250, '2.1.0', 'Sender OK'),
  recipientOk: reply(250, '2.1.5', 'Recipient OK'),
  flushed: reply(250, '2.0.0', 'Flushed'),
  bye: reply(221, '2.0.0', 'Bye'),
  startData: reply(354, null, 'End data with <CR><LF>.<CR><LF>'),
  vrfy: reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'),
  help: reply(214, '2.0.0', 'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH', 'See RFC 5321'),
  readyTls: reply(220, '2.0.0', 'Ready to start TLS'),
  authOk: reply(235, '2.7.0', 'Authentication successful'),
  // 4xx
  shuttingDown: reply(421, '4.3.2', 'Service shutting down, closing connection'),
  timeout: reply(421, '4.4.2', 'Idle timeout, closing connection'),
  tooManyErrors: reply(421, '4.7.0', 'Too many errors, closing connection'),
  tooManyConnections: reply(421, '4.7.0', 'Too many connections, try again later'),
  tooManyAuthFailures: reply(421, '4.7.0', 'Too many failed authentication attempts, try again later'),
  tooManyRecipients: reply(452, '4.5.3', 'Too many recipients'), // RFC 5321 §4.5.3.1.10
  storeFailed: reply(451, '4.3.0', 'Local error in processing, try again later'),
  tlsUnavailable: reply(454, '4.7.0', 'TLS not available due to temporary reason'), // RFC 3207 §4
  // 5xx
  lineTooLong: reply(500, '5.5.2', 'Line too long'), // RFC 5321 §4.5.3.1.4
  unrecognized: reply(500, '5.5.2', 'Command unrecognized'),
  notImplemented: reply(502, '5.5.1', 'Command not implemented'),
  badSequenceHelo: reply(503, '5.5.1', 'Send EHLO or HELO first'),
  nestedMail: reply(503, '5.5.1', 'Sender already specified'),
  needMail: reply(503, '5.5.1', 'Need MAIL command first'),
  needRcpt: reply(503, '5.5.1', 'Need RCPT command first'),
  dataAfterBdat: reply(503, '5.5.1', 'DATA not allowed after BDAT in one transaction'),
  alreadyTls: reply(503, '5.5.1', 'TLS already active'), // RFC 3207 §4.2
  alreadyAuth: reply(503, '5.5.1', 'Already authenticated'), // RFC 4954 §4
  authInTransaction: reply(503, '5.5.1', 'AUTH not allowed during a mail transaction'),
  syntax: reply(501, '5.5.4', 'Syntax error in parameters or arguments'),
  startTlsNoArgs: reply(501, '5.5.4', 'STARTTLS takes no parameters'), // RFC 3207 §4
  badHelo: reply(501, '5.5.4', 'Invalid domain name'),
  badAddress: reply(553, '5.1.3', 'Invalid address syntax'),
  needSmtpUtf8: reply(553, '5.6.7', 'Non-ASCII address requires SMTPUTF8'), // RFC 6531 §3.4
  badParam: reply(555, '5.5.4', 'Unsupported or invalid parameter'),
  authUnknownMech: reply(504, '5.5.4', 'Unrecognized authentication type'),
  authCancelled: reply(501, '5.7.0', 'Authentication cancelled'),
  authBadBase64: reply(501, '5.5.2', 'Cannot decode response'),
  authFailed: reply(535, '5.7.8', 'Authentication credentials invalid'), // RFC 4954 §6
  authNeedsTls: reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'), // RFC 4954 §6
  authRequired: reply(530, '5.7.0', 'Authentication required'), // RFC 4954 §6
  mustStartTls: reply(530, '5.7.0', 'Must issue a STARTTLS command first'), // RFC 3207 §4
  relayDenied: reply(550, '5.7.1', 'Relaying denied'),
  sizeExceeded: reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'), // RFC 1870
  bareLineEnding: reply(550, '5.6.0', 'Message contains a bare CR or LF; line endings must be CRLF (RFC 5321 §2.3.8)'),
  notSmtp: reply(554, '5.7.0', 'This is an SMTP server, not an HTTP server; closing connection'),
  earlyTalker: reply(554, '5.5.0', 'Protocol error: client sent data before the greeting'),
} as const satisfies Record<string, Reply>;

export function greeting(hostname: string): Reply {
  return reply(220, null, `${hostname} ESMTP postseal`);
}

export function queued(id: string): Reply {
  return reply(250, '2.0.0', `OK: queued as ${id}`);
}

export function chunkOk(n: number): Reply {
  return reply(250, '2.0.0', `${n} octets received`);
}
