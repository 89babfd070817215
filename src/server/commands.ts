/**
 * The command table: one entry per verb with its flags and handler. The dispatcher in
 * session.ts applies the gates (TLS required, EHLO first) from the flags; handlers only do the
 * verb's own work and return a reply (or null when they changed phase themselves).
 */
import { isAscii, isValidHeloName, parsePathArgs, domainOf, type Verb, type EsmtpParam } from '../protocol/command.js';
import { formatReply, reply, type Reply } from '../protocol/reply.js';
import { R, senderNotOwned, unknownRecipient } from './replies.js';
import { senderOwned } from './senders.js';
import { newFacts, type Envelope, type SessionApi } from './state.js';
import { summarizeTls } from '../tls/summary.js';
import { handshakeFailureReason } from './events.js';
import { handleAuth } from './auth.js';
import { parseEnvId, parseNotify, parseOrcpt, parseRet, type RecipientDsn, type Ret } from '../protocol/dsn.js';

export interface CommandSpec {
  /** Allowed before STARTTLS on a listener that requires TLS (RFC 3207 §4). */
  beforeTls: boolean;
  /** Needs a successful EHLO/HELO first. */
  needsHelo: boolean;
  run(s: SessionApi, args: string): Reply | Promise<Reply | null> | null;
}

const ehlo = (s: SessionApi, args: string, extended: boolean): Reply => {
  const name = args.trim();
  if (!isValidHeloName(name)) return R.badHelo;
  s.facts.heloName = name;
  s.facts.esmtp = extended;
  s.endTransaction(); // RFC 5321 §4.1.4: EHLO resets the transaction
  if (!extended) return reply(250, null, `${s.opts.hostname}`);
  const tlsOn = s.facts.tls !== null;
  // RFC 3207 §4.2: STARTTLS is not offered once TLS is on (nor on implicit TLS, where it is on
  // from the start), and only when we have a certificate to offer.
  const starttls = !tlsOn && (s.listener.tls === 'may' || s.listener.tls === 'encrypt') && s.opts.tls.hasCertificate();
  // AUTH only inside TLS: credentials never cross the wire in plaintext (RFC 4954 §4, RFC 8314).
  const auth = tlsOn && s.listener.auth !== 'none' && !!s.opts.users;
  const tail = ehloTail(s, tlsOn, starttls, auth);
  const first = `${s.opts.hostname} greets ${name.slice(0, 64)}`;
  // The name passed isValidHeloName (printable, no CR/LF): the first line needs no cleaning.
  return { code: 250, enhanced: null, lines: [first, ...tail.lines], wire: `250-${first}\r\n${tail.wire}` };
};

interface EhloTail {
  lines: string[];
  wire: string;
}

/** The capability lines after the first, per server and (TLS on, STARTTLS offered, AUTH offered). */
const ehloTails = new WeakMap<object, Map<string, EhloTail>>();

function ehloTail(s: SessionApi, tlsOn: boolean, starttls: boolean, auth: boolean): EhloTail {
  let perServer = ehloTails.get(s.opts);
  if (perServer === undefined) ehloTails.set(s.opts, (perServer = new Map()));
  const size = s.opts.limits.maxMessageSize;
  const key = `${tlsOn ? 1 : 0}${starttls ? 1 : 0}${auth ? 1 : 0}${size}`;
  let t = perServer.get(key);
  if (t === undefined) {
    const lines = ['PIPELINING', `SIZE ${size}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN'];
    if (starttls) lines.push('STARTTLS');
    if (auth) lines.push('AUTH PLAIN LOGIN');
    // RFC 8689 §4: REQUIRETLS is advertised only on a TLS-protected session.
    if (tlsOn) lines.push('REQUIRETLS');
    lines.push('HELP');
    const wire = lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join('');
    t = { lines, wire };
    perServer.set(key, t);
  }
  return t;
}

function mail(s: SessionApi, args: string): Reply {
  if (s.listener.auth === 'required' && s.facts.authUser === null) return R.authRequired; // RFC 4954 §6
  if (s.envelope) return R.nestedMail;
  const p = parsePathArgs(args, 'FROM', true);
  if (!p.ok) return p.reason === 'param' ? R.badParam : p.reason === 'address' ? R.badAddress : R.syntax;
  if (!s.facts.esmtp && p.params.length > 0) return R.badParam; // HELO sessions have no extensions
  let body: '7BIT' | '8BITMIME' | null = null;
  let smtpUtf8 = false;
  let requireTls = false;
  let ret: Ret | null = null;
  let envId: string | null = null;
  const seen = new Set<string>();
  for (const param of p.params) {
    if (seen.has(param.key)) return R.duplicateParam;
    seen.add(param.key);
    const r = mailParam(s, param);
    if (typeof r !== 'string') return r;
    if (r === 'RET') ret = parseRet(param.value);
    else if (r === 'ENVID') envId = parseEnvId(param.value);
    else if (r === 'SMTPUTF8') smtpUtf8 = true;
    else if (r === 'REQUIRETLS') requireTls = true;
    else if (r === '7BIT' || r === '8BITMIME') body = r;
  }
  if (!smtpUtf8 && !isAscii(p.address)) return R.needSmtpUtf8;
  // Sender/login match (Postfix reject_sender_login_mismatch): an authenticated user sends as an
  // address they own; a bounce (<>, RFC 5321 §4.5.5) is never theirs to submit.
  const user = s.facts.authUser;
  if (user !== null && !senderOwned(s.facts, p.address, aliasOwner(s))) return p.address === '' ? R.nullSenderSubmission : senderNotOwned(user);
  s.envelope = { mailFrom: p.address, localRecipients: [], remoteRecipients: [], requireTls, body, smtpUtf8, ret, envId, recipientDsn: {}, mailboxes: [], forwardedFrom: {}, bdat: null };
  return R.senderOk;
}

/** Validates one MAIL parameter; returns its normalized name or an error reply. */
function mailParam(s: SessionApi, param: EsmtpParam): string | Reply {
  switch (param.key) {
    case 'SIZE': {
      // RFC 1870 §6: a declared size over the limit is refused up front.
      if (param.value === null || !/^\d{1,15}$/.test(param.value)) return R.badParam;
      if (Number(param.value) > s.opts.limits.maxMessageSize) return R.sizeExceeded;
      return 'SIZE';
    }
    case 'BODY': {
      const v = (param.value ?? '').toUpperCase();
      if (v === '7BIT' || v === '8BITMIME') return v;
      return R.badParam;
    }
    case 'SMTPUTF8':
      return param.value === null ? 'SMTPUTF8' : R.badParam;
    case 'REQUIRETLS':
      // RFC 8689 §4.1: only on a TLS session (it is not advertised otherwise).
      return s.facts.tls !== null && param.value === null ? 'REQUIRETLS' : R.badParam;
    case 'AUTH':
      // RFC 4954 §5: the AUTH= parameter is accepted when AUTH is offered; we do not relay it on.
      return s.facts.tls !== null && s.listener.auth !== 'none' ? 'AUTH' : R.badParam;
    case 'RET': // RFC 3461 §4.3
      return parseRet(param.value) !== null ? 'RET' : R.dsnSyntax;
    case 'ENVID': // RFC 3461 §4.4: xtext, at most 100 characters
      return parseEnvId(param.value) !== null ? 'ENVID' : R.dsnSyntax;
    default:
      return R.badParam;
  }
}

function rcpt(s: SessionApi, args: string): Reply {
  const env = s.envelope;
  if (!env) return R.needMail;
  let address: string;
  let dsn: RecipientDsn | null = null;
  // RFC 5321 §4.5.1: "Postmaster" without a domain must be accepted.
  if (/^to:\s*<postmaster>\s*$/i.test(args.trim())) {
    address = `postmaster@${s.opts.hostname.toLowerCase()}`;
  } else {
    const p = parsePathArgs(args, 'TO', false);
    if (!p.ok) return p.reason === 'param' ? R.badParam : p.reason === 'address' ? R.badAddress : R.syntax;
    if (!s.facts.esmtp && p.params.length > 0) return R.badParam; // HELO sessions have no extensions
    const d = rcptDsn(p.params);
    if ('code' in d) return d;
    dsn = d.dsn;
    if (!env.smtpUtf8 && !isAscii(p.address)) return R.needSmtpUtf8;
    address = p.address;
  }
  // Every RCPT counts too (a repeated address adds no target but grows the envelope).
  if (env.localRecipients.length + env.remoteRecipients.length >= s.opts.limits.maxRecipients) return R.tooManyRecipients;
  const domain = domainOf(address);
  if (s.opts.localDomains.includes(domain)) {
    // The sender test (server/sender-test.ts): its addresses are no table entries; a hostile
    // variant's first RCPT answers 451 and arms that client's next STARTTLS.
    // Only on the mx listener: the test is about sending MTAs, and its hostile STARTTLS must never
    // reach a submission client (a user's MUA behind the same IP would get a wrong certificate).
    const test = s.listener.name === 'mx' ? (s.opts.senderTest?.variantOf(address) ?? null) : null;
    if (test !== null) {
      const armed = s.opts.senderTest?.rcpt(s.remoteAddress, test, s, s.facts.tls !== null) ?? null;
      if (armed !== null) return armed;
    }
    const targets = test !== null ? { mailboxes: [address.toLowerCase()], external: [] } : localTargets(s, address);
    if (targets === null) return unknownRecipient(address);
    // Sets, not includes(): an alias may bring up to 1000 targets, and RCPTs repeat it. None is
    // built when there is nothing to compare (a message's first RCPT, a target with no forwards).
    const newMailboxes = env.mailboxes.length === 0 ? targets.mailboxes : notIn(targets.mailboxes, new Set(env.mailboxes));
    const newForwards = targets.external.length === 0 ? [] : notIn(targets.external, new Set(env.remoteRecipients)).filter((e) => !Object.hasOwn(env.forwardedFrom, e));
    // RFC 5321 §4.5.3.1.8: the limit counts final targets (an alias's expansion, not the RCPT).
    if (finalTargets(env) + newMailboxes.length + newForwards.length > s.opts.limits.maxRecipients) return R.tooManyRecipients;
    env.localRecipients.push(address);
    env.mailboxes.push(...newMailboxes);
    if (dsn) env.recipientDsn[address] = dsn;
    for (const e of newForwards) {
      // Forwarding: external targets are queued for the relay although this session may be an
      // unauthenticated mx session. Not an open relay: the admin made the alias (the client only
      // named a local address); a plain external RCPT below still needs AUTH.
      env.forwardedFrom[e] = address;
      // RFC 3461 §4.2: the client's RCPT is the original recipient of the expanded target. NOTIFY
      // is passed on unchanged (§6.2.7, forwarding): the runner's report for the target (relayed,
      // or passed on) is the one the sender gets; relay/local-dsn.ts makes none for this RCPT.
      env.recipientDsn[e] = { notify: dsn?.notify ?? null, orcpt: dsn?.orcpt ?? `rfc822;${address}` };
    }
    return R.recipientOk;
  }
  if (finalTargets(env) + 1 > s.opts.limits.maxRecipients) return R.tooManyRecipients;
  // No open relay: only an authenticated client may send to other domains.
  if (s.facts.authUser === null) return R.relayDenied;
  env.remoteRecipients.push(address);
  if (dsn) env.recipientDsn[address] = dsn;
  return R.recipientOk;
}

function notIn(list: readonly string[], have: ReadonlySet<string>): string[] {
  return list.filter((x) => !have.has(x));
}

/** Final targets so far: local mailboxes, remote RCPTs and forwarded alias targets. */
function finalTargets(env: Envelope): number {
  return env.mailboxes.length + env.remoteRecipients.length + Object.keys(env.forwardedFrom).length;
}

/** RCPT parameters: only NOTIFY and ORCPT (RFC 3461 §4.1/§4.2), each at most once. */
function rcptDsn(params: readonly EsmtpParam[]): { dsn: RecipientDsn | null } | Reply {
  let notify: RecipientDsn['notify'] = null;
  let orcpt: string | null = null;
  const seen = new Set<string>();
  for (const param of params) {
    if (seen.has(param.key)) return R.duplicateParam;
    seen.add(param.key);
    if (param.key === 'NOTIFY') {
      notify = parseNotify(param.value);
      if (notify === null) return R.dsnSyntax;
    } else if (param.key === 'ORCPT') {
      orcpt = parseOrcpt(param.value);
      if (orcpt === null) return R.dsnSyntax;
    } else {
      return R.badParam;
    }
  }
  return { dsn: notify === null && orcpt === null ? null : { notify, orcpt } };
}

/**
 * A local recipient's final targets from the address table (store/resolve.ts), or null when it is
 * unknown (550 5.1.1). Without a directory (library use without a store) every local recipient is
 * its own mailbox. postmaster at any local domain always resolves: RFC 5321 §4.5.1 requires it
 * (the resolver's step 4; the local part compared case-insensitively, as it says).
 */
function localTargets(s: SessionApi, address: string): { mailboxes: string[]; external: string[] } | null {
  const dir = s.opts.recipients;
  const lower = address.toLowerCase();
  if (!dir) return { mailboxes: [lower], external: [] };
  const r = dir.resolve(address);
  if (r.problems.length > 0) s.opts.logger.warn({ event: 'alias', rcpt: address, problems: r.problems.slice(0, 10) }, 'address table: problems while resolving a recipient');
  if (r.mailboxes.length + r.external.length > 0) return r;
  // RFC 5321 §4.5.1: postmaster is accepted even when its alias leads nowhere (a loop).
  if (lower.slice(0, lower.lastIndexOf('@')) === 'postmaster') return { mailboxes: [lower], external: [] };
  return null;
}

/** For the sender check: the mailboxes an address at a local domain resolves to (no catch-alls). */
function aliasOwner(s: SessionApi): ((address: string) => readonly string[]) | undefined {
  const dir = s.opts.recipients;
  if (!dir) return undefined;
  return (address) => (s.opts.localDomains.includes(domainOf(address)) ? dir.resolve(address, { forSender: true }).mailboxes : []);
}

function data(s: SessionApi, args: string): Reply | null {
  if (args.trim() !== '') return R.syntax;
  const env = s.envelope;
  if (!env) return R.needMail;
  if (env.bdat) return R.dataAfterBdat; // RFC 3030 §3
  if (env.localRecipients.length + env.remoteRecipients.length === 0) return R.needRcpt;
  s.beginData();
  return null;
}

function bdat(s: SessionApi, args: string): Reply | null {
  const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(args);
  if (!m) {
    // Without a valid size we cannot tell where the chunk ends: the session cannot continue.
    s.closeWith(reply(501, '5.5.4', 'Invalid BDAT syntax; closing connection'), 'bad BDAT');
    return null;
  }
  const size = Number(m[1]);
  const last = m[2] !== undefined;
  const env = s.envelope;
  let error: Reply | null = null;
  if (!env) error = R.needMail;
  else if (env.localRecipients.length + env.remoteRecipients.length === 0) error = R.needRcpt;
  else if ((env.bdat?.size ?? 0) + size > s.opts.limits.maxMessageSize) error = R.sizeExceeded;
  // RFC 3030 §2: the chunk is read whatever the verdict, so the stream stays in step.
  s.beginBdat(size, last, error);
  return null;
}

function startTls(s: SessionApi, args: string): Reply | Promise<Reply | null> {
  if (args.trim() !== '') return R.startTlsNoArgs; // RFC 3207 §4
  if (s.facts.tls !== null) return R.alreadyTls; // RFC 3207 §4.2: never twice
  if (s.listener.tls === 'none') return R.notImplemented;
  const opts = s.opts.tls.serverOptions();
  if (!opts) return R.tlsUnavailable; // RFC 3207 §4: 454, the session stays usable
  // Sender test (server/sender-test.ts): an armed client gets, once, 454 or a wrong-name certificate.
  // mx only: an IP armed on mx keeps the real certificate on submission (587) and never gets a 454.
  const hostile = s.listener.name === 'mx' ? (s.opts.senderTest?.starttls(s.remoteAddress, s) ?? null) : null;
  if (hostile?.kind === 'refuse') return R.tlsUnavailable;
  return s.upgradeToTls(formatReply(R.readyTls), hostile?.kind === 'badcert' ? hostile.options : opts).then((socket) => {
    // RFC 3207 §4.2: forget everything learned before TLS — EHLO name, AUTH, the envelope.
    s.facts = newFacts(summarizeTls(socket));
    s.endTransaction();
    return null;
  }, (err: unknown) => {
    // A failed or stalled handshake is the client's business, not a server error: the
    // connection is already closed without a plaintext reply, and the session line records
    // the reason ('tls handshake failed: …').
    s.opts.events?.starttlsFailed(s.listener.name, handshakeFailureReason(err));
    return null;
  });
}

export const COMMANDS: Record<Verb, CommandSpec> = {
  EHLO: { beforeTls: true, needsHelo: false, run: (s, a) => ehlo(s, a, true) },
  HELO: { beforeTls: true, needsHelo: false, run: (s, a) => ehlo(s, a, false) },
  MAIL: { beforeTls: false, needsHelo: true, run: mail },
  RCPT: { beforeTls: false, needsHelo: true, run: rcpt },
  DATA: { beforeTls: false, needsHelo: true, run: data },
  BDAT: { beforeTls: false, needsHelo: true, run: bdat },
  RSET: {
    beforeTls: false,
    needsHelo: false,
    run: (s) => {
      s.endTransaction();
      return R.flushed;
    },
  },
  NOOP: { beforeTls: true, needsHelo: false, run: () => R.ok },
  QUIT: {
    beforeTls: true,
    needsHelo: false,
    run: (s) => {
      s.closeWith(R.bye, 'quit');
      return null;
    },
  },
  VRFY: { beforeTls: false, needsHelo: false, run: () => R.vrfy },
  EXPN: { beforeTls: false, needsHelo: false, run: () => R.notImplemented },
  HELP: { beforeTls: false, needsHelo: false, run: () => R.help },
  STARTTLS: { beforeTls: true, needsHelo: false, run: startTls },
  AUTH: { beforeTls: false, needsHelo: true, run: handleAuth },
};
