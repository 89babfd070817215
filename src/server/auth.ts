/**
 * AUTH PLAIN (RFC 4616) and LOGIN on the server (RFC 4954).
 *
 * Invariants: AUTH is accepted only inside TLS (538 otherwise, RFC 4954 §4/§6); one success per
 * session; never inside a transaction; "*" cancels (501); failed attempts are counted per client IP
 * and past the limit the connection is closed; secrets are never logged or echoed.
 */
import { reply, type Reply } from '../protocol/reply.js';
import { R } from './replies.js';
import type { Session } from './session.js';

const USERNAME_PROMPT = reply(334, null, 'VXNlcm5hbWU6'); // "Username:"
const PASSWORD_PROMPT = reply(334, null, 'UGFzc3dvcmQ6'); // "Password:"
const EMPTY_CHALLENGE = reply(334, null, '');

function decodeB64(text: string): string | null {
  const t = text.trim();
  if (t === '=') return '';
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) return null;
  return Buffer.from(t, 'base64').toString('utf8');
}

export function handleAuth(s: Session, args: string): Reply | Promise<Reply | null> | null {
  if (s.listener.auth === 'none' || !s.opts.users) return R.notImplemented;
  if (s.facts.tls === null) return R.authNeedsTls;
  if (s.facts.authUser !== null) return R.alreadyAuth;
  if (s.envelope) return R.authInTransaction;
  if (s.ctx.authLimiter.blocked(s.conn.remoteAddress)) {
    s.closeWith(R.tooManyAuthFailures, 'auth rate limit');
    return null;
  }
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
function prompt(s: Session, challenge: Reply, next: (line: string) => Reply | Promise<Reply | null>): Reply {
  s.authStep = next;
  s.phase = 'auth';
  return challenge;
}

function plainResponse(s: Session, text: string): Reply | Promise<Reply | null> {
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

async function verify(s: Session, user: string, password: string): Promise<Reply | null> {
  const users = s.opts.users;
  const ip = s.conn.remoteAddress;
  const ok = users !== null && user.length > 0 && user.length <= 320 && (await users.verifyUser(user, password));
  if (ok) {
    s.facts.authUser = user;
    s.opts.logger.info({ event: 'auth', client: ip, user, result: 'ok' }, 'authenticated');
    return R.authOk;
  }
  s.ctx.authLimiter.fail(ip);
  s.opts.logger.warn({ event: 'auth', client: ip, user: user.slice(0, 64), result: 'failed' }, 'authentication failed');
  if (s.ctx.authLimiter.blocked(ip)) {
    s.send(R.authFailed);
    s.closeWith(R.tooManyAuthFailures, 'auth rate limit');
    return null;
  }
  return R.authFailed;
}
