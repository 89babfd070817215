/**
 * Address normalization for mailboxes, users and queue domains.
 *
 * Invariant: every address the store writes or compares has passed normalizeAddress(), so
 * 'Alice@Example.ORG' and 'alice@example.org' are the same user and the same mailbox. The local
 * part is lower-cased too (RFC 5321 §2.4 allows case-sensitive local parts; no real system uses it).
 */
import { PostsealError } from '../errors.js';

// Control characters, whitespace and angle brackets never belong in a stored address.
const FORBIDDEN = /[\u0000-\u0020\u007f<>]/;

export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  if (a.length === 0 || a.length > 320 || FORBIDDEN.test(a)) {
    throw new PostsealError('STORE_BAD_ADDRESS', `not a usable address: ${JSON.stringify(address.slice(0, 80))}`);
  }
  return a;
}

/** The domain of an address, lower-cased ('' without '@'): the protocol core's own. */
export { domainOf } from '../protocol/command.js';

/**
 * A sender pattern a user may be given: '*' (any sender), '*@domain' (any local
 * part at that domain) or one address. Checked on the lower-cased form the store keeps.
 */
export function isSenderPattern(p: string): boolean {
  if (p === '*') return true;
  const domain = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/;
  if (p.startsWith('*@')) return domain.test(p.slice(2));
  const at = p.lastIndexOf('@');
  return at > 0 && p.length <= 320 && !FORBIDDEN.test(p) && !p.includes('*') && domain.test(p.slice(at + 1));
}
