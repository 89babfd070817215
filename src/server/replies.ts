/**
 * Every fixed reply the server sends, in one place (aiosmtpd's habit), with the RFC that
 * defines it. Handlers refer to these names; variable text is built by the small functions.
 */
import { fixedReply, reply, type Reply } from '../protocol/reply.js';

export const R = {
  ok: fixedReply(250, '2.0.0', 'OK'),
  senderOk: fixedReply(250, '2.1.0', 'Sender OK'),
  recipientOk: fixedReply(250, '2.1.5', 'Recipient OK'),
  flushed: fixedReply(250, '2.0.0', 'Flushed'),
  bye: fixedReply(221, '2.0.0', 'Bye'),
  startData: fixedReply(354, null, 'End data with <CR><LF>.<CR><LF>'),
  vrfy: fixedReply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'),
  help: fixedReply(214, '2.0.0', 'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH', 'See RFC 5321'),
  readyTls: fixedReply(220, '2.0.0', 'Ready to start TLS'),
  authOk: fixedReply(235, '2.7.0', 'Authentication successful'),
  // 4xx
  shuttingDown: fixedReply(421, '4.3.2', 'Service shutting down, closing connection'),
  timeout: fixedReply(421, '4.4.2', 'Idle timeout, closing connection'),
  commandTooSlow: fixedReply(421, '4.4.2', 'Command line not completed in time, closing connection'),
  dataTooSlow: fixedReply(421, '4.4.2', 'Message data arriving too slowly, closing connection'),
  tooManyErrors: fixedReply(421, '4.7.0', 'Too many errors, closing connection'),
  tooManyConnections: fixedReply(421, '4.7.0', 'Too many connections, try again later'),
  // RFC 4954 §6: 454 4.7.0 "Temporary authentication failure"; nothing was checked.
  authBusy: fixedReply(454, '4.7.0', 'Temporary authentication failure: too many attempts in progress, try again later'),
  // RFC 4954 §6 again: the user table could not be read (PostgreSQL unreachable): nothing was decided.
  authUnavailable: fixedReply(454, '4.7.0', 'Temporary authentication failure, try again later'),
  tooManyRecipients: fixedReply(452, '4.5.3', 'Too many recipients'), // RFC 5321 §4.5.3.1.10
  storeFailed: fixedReply(451, '4.3.0', 'Local error in processing, try again later'),
  insufficientStorage: fixedReply(452, '4.3.1', 'Insufficient system storage, try again later'), // RFC 5321 §4.5.3.1.10, RFC 3463
  tlsUnavailable: fixedReply(454, '4.7.0', 'TLS not available due to temporary reason'), // RFC 3207 §4
  // 5xx
  lineTooLong: fixedReply(500, '5.5.2', 'Line too long'), // RFC 5321 §4.5.3.1.4
  bareLfCommand: fixedReply(500, '5.5.2', 'Line must end with CRLF (RFC 5321 section 2.3.8); closing connection'), // ASCII only: replies go out as latin1
  unrecognized: fixedReply(500, '5.5.2', 'Command unrecognized'),
  notImplemented: fixedReply(502, '5.5.1', 'Command not implemented'),
  badSequenceHelo: fixedReply(503, '5.5.1', 'Send EHLO or HELO first'),
  nestedMail: fixedReply(503, '5.5.1', 'Sender already specified'),
  needMail: fixedReply(503, '5.5.1', 'Need MAIL command first'),
  needRcpt: fixedReply(503, '5.5.1', 'Need RCPT command first'),
  dataAfterBdat: fixedReply(503, '5.5.1', 'DATA not allowed after BDAT in one transaction'),
  alreadyTls: fixedReply(503, '5.5.1', 'TLS already active'), // RFC 3207 §4.2
  alreadyAuth: fixedReply(503, '5.5.1', 'Already authenticated'), // RFC 4954 §4
  authInTransaction: fixedReply(503, '5.5.1', 'AUTH not allowed during a mail transaction'),
  syntax: fixedReply(501, '5.5.4', 'Syntax error in parameters or arguments'),
  startTlsNoArgs: fixedReply(501, '5.5.4', 'STARTTLS takes no parameters'), // RFC 3207 §4
  badHelo: fixedReply(501, '5.5.4', 'Invalid domain name'),
  badAddress: fixedReply(553, '5.1.3', 'Invalid address syntax'),
  needSmtpUtf8: fixedReply(553, '5.6.7', 'Non-ASCII address requires SMTPUTF8'), // RFC 6531 §3.4
  badParam: fixedReply(555, '5.5.4', 'Unsupported or invalid parameter'),
  dsnSyntax: fixedReply(501, '5.5.4', 'Invalid DSN parameter'), // RFC 3461 §4
  duplicateParam: fixedReply(501, '5.5.4', 'Duplicate parameter'),
  authUnknownMech: fixedReply(504, '5.5.4', 'Unrecognized authentication type'),
  authCancelled: fixedReply(501, '5.7.0', 'Authentication cancelled'),
  authBadBase64: fixedReply(501, '5.5.2', 'Cannot decode response'),
  authFailed: fixedReply(535, '5.7.8', 'Authentication credentials invalid'), // RFC 4954 §6
  authNeedsTls: fixedReply(538, '5.7.11', 'Encryption required for requested authentication mechanism'), // RFC 4954 §6
  authRequired: fixedReply(530, '5.7.0', 'Authentication required'), // RFC 4954 §6
  mustStartTls: fixedReply(530, '5.7.0', 'Must issue a STARTTLS command first'), // RFC 3207 §4
  relayDenied: fixedReply(550, '5.7.1', 'Relaying denied'),
  nullSenderSubmission: fixedReply(553, '5.7.1', 'Sender address rejected: the null sender is not allowed from an authenticated user'),
  sizeExceeded: fixedReply(552, '5.3.4', 'Message size exceeds fixed maximum message size'), // RFC 1870
  bareLineEnding: fixedReply(550, '5.6.0', 'Message contains a bare CR or LF; line endings must be CRLF (RFC 5321 section 2.3.8)'), // ASCII only: replies go out as latin1
  notSmtp: fixedReply(554, '5.7.0', 'This is an SMTP server, not an HTTP server; closing connection'),
  earlyTalker: fixedReply(554, '5.5.0', 'Protocol error: client sent data before the greeting'),
} as const satisfies Record<string, Reply>;

let lastGreeting: Reply | null = null;

export function greeting(hostname: string): Reply {
  // One server has one hostname: keep the formatted greeting of the last one asked for.
  if (lastGreeting === null || lastGreeting.lines[0] !== `${hostname} ESMTP postseal`) lastGreeting = fixedReply(220, null, `${hostname} ESMTP postseal`);
  return lastGreeting;
}

/** 250 after a message is stored; the id is ours (base32 or the store's checked id: no CR/LF). */
export function queued(id: string): Reply {
  const text = `OK: queued as ${id}`;
  if (text.indexOf('\r') >= 0 || text.indexOf('\n') >= 0) return reply(250, '2.0.0', text);
  return { code: 250, enhanced: '2.0.0', lines: [text], wire: `250 2.0.0 ${text}\r\n` };
}

/** RFC 5321 §4.5.3.1.5-style text as Postfix words it; the address passed the path parser. */
export function unknownRecipient(address: string): Reply {
  return reply(550, '5.1.1', `<${address.slice(0, 320)}>: Recipient address rejected: User unknown`);
}

/** Postfix reject_sender_login_mismatch wording. */
export function senderNotOwned(user: string): Reply {
  return reply(553, '5.7.1', `Sender address rejected: not owned by user ${user.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 320)}`);
}

export function chunkOk(n: number): Reply {
  return reply(250, '2.0.0', `${n} octets received`);
}
