/**
 * AUTH PLAIN (RFC 4616) and LOGIN on the server (RFC 4954).
 *
 * Invariants: AUTH is accepted only inside TLS (538 otherwise, RFC 4954 §4/§6); one success per
 * session; never inside a transaction; "*" cancels (501); secrets are never logged or echoed.
 * Every attempt that reaches a password goes through the AuthLimiter (context.ts) first: it is
 * counted before the check, waits out its delay (exponential past limits.auth.maxFailures), and
 * is refused with 454 without any check when too many are in flight from its network or for
 * its account. A client that leaves while its attempt waits keeps the attempt counted.
 * After a success the user's sender patterns are looked up once and kept for the session.
 */
import { reply, type Reply } from '../protocol/reply.js';
import { R } from './replies.js';
import type { SessionApi } from './state.js';
import type { AuthAdmission } from './context.js';
import { rememberSenders } from './senders.js';

const USERNAME_PROMPT = reply(334, null, 'VXNlcm5hbWU6'); // "Username:"
const PASSWORD_PROMPT = reply(334, null, 'UGFzc3dvcmQ6'); // "Password:"
const EMPTY_CHALLENGE = reply(334, null, '');

function decodeB64(text: string): string | null {
  const t = text.trim();
  if (t === '=') return '';
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) return null;
  return Buffer.from(t, 'base64').toString('utf8');
}

export function handleAuth(s: SessionApi, args: string): Reply | Promise<Reply | null> | null {
  if (s.listener.auth === 'none' || !s.opts.users) return R.notImplemented;
  if (s.facts.tls === null) return R.authNeedsTls;
  if (s.facts.authUser !== null) return R.alreadyAuth;
  if (s.envelope) return R.authInTransaction;
  const [mechRaw = '', initial, extra] = args.trim().split(/\s+/);
  if (extra !== undefined) return R.syntax;
  const mech = mechRaw.toUpperCase();
  if (mech === 'PLAIN') {
    if (initial !== undefined) return plainResponse(s, initial);
    return prompt(s, EMPTY_CHALLENGE, (line) => plainResponse(s, line));
  }
  if (mech === 'LOGIN') {
    const askPassword = (user: string): Reply => prompt(s, PASSWORD_PROMPT, (line) => {
      if (line.trim() === '*') return R.authCancelled;
      const pass = decodeB64(line);
      if (pass === null) return R.authBadBase64;
      return verify(s, user, pass);
    });
    if (initial !== undefined) {
      const user = decodeB64(initial);
      return user === null ? R.authBadBase64 : askPassword(user);
    }
    return prompt(s, USERNAME_PROMPT, (line) => {
      if (line.trim() === '*') return R.authCancelled;
      const user = decodeB64(line);
      return user === null ? R.authBadBase64 : askPassword(user);
    });
  }
  return R.authUnknownMech;
}

/** Sends a 334 challenge and waits for the client's next line in phase 'auth'. */
function prompt(s: SessionApi, challenge: Reply, next: (line: string) => Reply | Promise<Reply | null>): Reply {
  s.expectAuthLine(next);
  return challenge;
}

function plainResponse(s: SessionApi, text: string): Reply | Promise<Reply | null> {
  if (text.trim() === '*') return R.authCancelled; // RFC 4954 §4
  const decoded = decodeB64(text);
  if (decoded === null) return R.authBadBase64;
  // RFC 4616 §2: [authzid] NUL authcid NUL passwd
  const parts = decoded.split('\u0000');
  if (parts.length !== 3) return R.authBadBase64;
  const [authzid = '', authcid = '', passwd = ''] = parts;
  // We do not let one user act for another: an authzid must name the same identity.
  if (authzid !== '' && authzid.toLowerCase() !== authcid.toLowerCase()) return R.authFailed;
  return verify(s, authcid, passwd);
}

/** Longest a held attempt sleeps before looking whether its client is still there. */
const HOLD_STEP_MS = 1000;

/**
 * Waits `ms` unless the session ends (or the server starts to drain) first; true when the wait
 * ran its course. In steps, so a client that leaves frees its session within HOLD_STEP_MS.
 */
async function hold(s: SessionApi, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (!s.active) return false;
    const left = until - Date.now();
    if (left <= 0) return true;
    // Not unref()d: a held session is a session in progress (close() waits for it, briefly).
    await new Promise<void>((resolve) => setTimeout(resolve, Math.min(left, HOLD_STEP_MS)));
  }
}

function verify(s: SessionApi, user: string, password: string): Reply | Promise<Reply | null> {
  const ip = s.remoteAddress;
  const admission = s.authLimiter.admit(ip, user);
  if (!admission.ok) {
    // Not checked and not counted: the attempts already in flight are what is being limited.
    s.opts.logger.warn({ event: 'auth', client: ip, user: user.slice(0, 64), result: 'refused', reason: admission.reason }, 'authentication refused: too many attempts in flight');
    return R.authBusy;
  }
  return check(s, user, password, admission);
}

async function check(s: SessionApi, user: string, password: string, admission: Extract<AuthAdmission, { ok: true }>): Promise<Reply | null> {
  const ip = s.remoteAddress;
  const { ticket, delayMs } = admission;
  let ok = false;
  let unavailable = false;
  try {
    if (delayMs > 0) {
      s.opts.logger.warn({ event: 'auth', client: ip, user: user.slice(0, 64), result: 'delayed', delayMs, by: admission.delayedBy }, 'authentication delayed after earlier failures');
      // The client left (or the server is stopping): the attempt stays counted, nothing is checked.
      if (!(await hold(s, delayMs))) return null;
    }
    ticket.checking();
    const users = s.opts.users;
    try {
      ok = users !== null && user.length > 0 && user.length <= 320 && (await users.verifyUser(user, password));
    } catch (err) {
      // The store could not answer (e.g. PostgreSQL down): RFC 4954 §6 454 4.7.0, a temporary
      // failure the client retries — not 535, which would tell it the password is wrong.
      s.opts.logger.error({ event: 'auth', client: ip, user: user.slice(0, 64), result: 'unavailable', error: err instanceof Error ? err.message : String(err) }, 'authentication could not be checked');
      unavailable = true;
    }
  } finally {
    ticket.settle(ok);
  }
  if (unavailable) return R.authUnavailable;
  if (ok) {
    // Read once here, so MAIL FROM checks cost no store read (senders.ts).
    rememberSenders(s.facts, s.opts.users?.senderPatterns?.(user) ?? []);
    s.facts.authUser = user;
    s.opts.logger.info({ event: 'auth', client: ip, user, result: 'ok' }, 'authenticated');
    return R.authOk;
  }
  s.opts.logger.warn({ event: 'auth', client: ip, user: user.slice(0, 64), result: 'failed' }, 'authentication failed');
  return R.authFailed;
}
