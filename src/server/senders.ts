/**
 * Sender/login match on authenticated sessions (Postfix reject_sender_login_mismatch): the MAIL
 * FROM of an authenticated user must be an address the user owns — the login itself, or one of
 * the user's sender patterns (an exact address, '*@domain', or '*' for any sender).
 *
 * Invariants:
 * - the patterns are read once per authenticated session (at AUTH) and kept beside the session
 *   facts, so MAIL costs a few string compares; only an address that is neither the login nor a
 *   pattern costs an address-table read (aliases; read per MAIL, so a new alias counts at once);
 *   STARTTLS replaces the facts object, and with it the cached patterns (AUTH is forgotten
 *   anyway, RFC 3207 §4.2);
 * - catch-alls never make an address owned: only an alias that names it explicitly;
 * - comparison is case-insensitive on the whole address: the domain part by RFC 5321 §2.4, the
 *   local part because the store lower-cases logins and mailboxes too (store/address.ts);
 * - the null sender <> is never owned (a bounce is not something a user submits).
 */
import type { SessionFacts } from './state.js';

const patternsBySession = new WeakMap<SessionFacts, readonly string[]>();

/** Keeps the user's sender patterns for this session (called once AUTH succeeded). */
export function rememberSenders(facts: SessionFacts, patterns: readonly string[]): void {
  patternsBySession.set(facts, patterns.map((p) => p.toLowerCase()));
}

/**
 * Whether `address` (MAIL FROM, '' for <>) is one the session's user may send as. `aliasMailboxes`
 * (the address table, catch-alls excluded) is asked only when the login and the patterns did not
 * match: an alias whose expansion includes the login is the user's too (Postfix
 * smtpd_sender_login_maps habit: `sales@D → alice@D, bob@D` lets alice and bob send as sales@D).
 */
export function senderOwned(facts: SessionFacts, address: string, aliasMailboxes?: (address: string) => readonly string[]): boolean {
  const user = facts.authUser;
  if (user === null || address === '') return false;
  const a = address.toLowerCase();
  const login = user.toLowerCase();
  if (a === login) return true;
  if (senderMatches(patternsBySession.get(facts) ?? [], a)) return true;
  return aliasMailboxes !== undefined && aliasMailboxes(a).includes(login);
}

/** Pattern match on a lower-cased address; patterns are lower-cased. */
export function senderMatches(patterns: readonly string[], address: string): boolean {
  const at = address.lastIndexOf('@');
  const domain = at >= 0 ? address.slice(at + 1) : '';
  for (const p of patterns) {
    if (p === '*' || p === address) return true;
    if (p.startsWith('*@') && at > 0 && p.slice(2) === domain) return true;
  }
  return false;
}
