/**
 * The address table's resolver: what a recipient address at a local domain becomes — local
 * mailboxes and external (forwarding) targets — from two reads (is it a user, what are its alias
 * targets). Pure over those reads, so every Store implementation (SQLite, later PostgreSQL)
 * resolves the same way.
 *
 * Order for one address X at local domain D (Postfix virtual(5) habit, alias before mailbox):
 *  1. X is an alias → its targets, each resolved again (aliases of aliases);
 *  2. X is a user → the mailbox X;
 *  3. X = local+tag@D (subaddress separator on) → steps 1-2 for local@D; the mailbox is the user
 *     without the tag (the tag stays only in the envelope as the client gave it);
 *  4. postmaster@D → the mailbox postmaster@D (RFC 5321 §4.5.1: always accepted; an admin who wants
 *     it elsewhere makes a user or an alias postmaster@D, which steps 1-2 find first; the `@D`
 *     catch-all is deliberately NOT applied, so postmaster mail never leaves with a catch-all
 *     forward);
 *  5. the alias `@D` (that domain's catch-all alias) → its targets;
 *  6. D in catchAllDomains, or the global catchAll → the mailbox X as given (lower-cased);
 *  7. otherwise unknown: nothing (RCPT answers 550 5.1.1).
 *
 * Invariants (bounds: a hostile or mistaken table never makes a RCPT expensive):
 * - at most MAX_ALIAS_DEPTH levels of alias expansion; deeper targets are dropped and reported;
 * - a loop (an alias met again on its own expansion path) is ignored and reported; an address on
 *   the path that is a user is its mailbox (`alice → alice, alice@elsewhere` keeps a copy);
 * - each alias is expanded once per resolution (diamonds cost nothing twice), duplicates removed;
 * - at most MAX_FINAL_TARGETS final targets and MAX_LOOKUPS reads; past them: truncated, reported;
 * - a resolution with no final target is "unknown" (a loop with no way out gets 550 5.1.1).
 */
import { normalizeAddress } from './address.js';

export const MAX_ALIAS_DEPTH = 10;
export const MAX_FINAL_TARGETS = 1000;
/** Reads (user or alias lookups) per resolution: a bound on the work of one RCPT. */
export const MAX_LOOKUPS = 5000;

/** The two reads the resolver needs; addresses are already normalized (lower-cased). */
export interface AddressReads {
  isUser(address: string): boolean;
  /** Targets of the alias `address` (a normalized address or '@domain'); [] when none. */
  aliasTargets(address: string): string[];
}

export interface ResolveOptions {
  /** Domains whose addresses are resolved here (lower-case); other targets are external. */
  localDomains: readonly string[];
  /** `recipients.subaddressSeparator`: '+' by default; '' turns sub-addressing off. */
  subaddressSeparator?: string;
  /** `recipients.catchAllDomains`: any address there is accepted into its own mailbox. */
  catchAllDomains?: readonly string[];
  /** `recipients.catchAll`: the same for every local domain. */
  catchAll?: boolean;
  /**
   * Sender ownership check (server/senders.ts): catch-alls (`@D` aliases, catch-all domains) do
   * not count — only an address the table names explicitly can be "owned" through an alias.
   */
  forSender?: boolean;
}

export interface RecipientResolution {
  /** Final local mailboxes (normalized), in discovery order, no duplicates. */
  mailboxes: string[];
  /** External targets (domain lower-cased, local part as the admin wrote it), no duplicates. */
  external: string[];
  /** Loops, depth or size limits and dangling targets met on the way (for a log line). */
  problems: string[];
}

function domainPart(a: string): string {
  const at = a.lastIndexOf('@');
  return at < 0 ? '' : a.slice(at + 1);
}

/** `local+tag@D` → `local@D` (null when there is no tag, or the separator is off). */
export function stripSubaddress(address: string, separator: string): string | null {
  if (separator === '') return null;
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  const i = address.slice(0, at).indexOf(separator);
  // A leading separator ('+x@D') has no user part: not a subaddress.
  if (i <= 0) return null;
  return address.slice(0, i) + address.slice(at);
}

/** An external target keeps its local part as written; only the domain is lower-cased. */
function externalForm(target: string): string {
  const t = target.trim();
  const at = t.lastIndexOf('@');
  return t.slice(0, at + 1) + t.slice(at + 1).toLowerCase();
}

export function resolveAddress(address: string, reads: AddressReads, opts: ResolveOptions): RecipientResolution {
  const local = new Set(opts.localDomains.map((d) => d.toLowerCase()));
  const catchAllDomains = new Set((opts.catchAllDomains ?? []).map((d) => d.toLowerCase()));
  const separator = opts.subaddressSeparator ?? '+';
  const mailboxes = new Set<string>();
  const external = new Map<string, string>(); // lower-cased key → form kept
  const problems: string[] = [];
  const expanded = new Set<string>();
  let lookups = 0;
  let full = false;

  const budget = (): boolean => {
    if (lookups++ < MAX_LOOKUPS) return true;
    if (!full) problems.push(`more than ${MAX_LOOKUPS} lookups: expansion truncated`);
    full = true;
    return false;
  };
  const room = (): boolean => {
    if (mailboxes.size + external.size < MAX_FINAL_TARGETS) return true;
    if (!full) problems.push(`more than ${MAX_FINAL_TARGETS} targets: expansion truncated`);
    full = true;
    return false;
  };
  const addMailbox = (m: string): void => {
    if (!mailboxes.has(m) && room()) mailboxes.add(m);
  };

  /** Expands alias `key` if it exists; true when it is an alias (whatever its expansion gave). */
  const expandAlias = (key: string, path: readonly string[]): boolean => {
    if (!budget()) return true;
    const targets = reads.aliasTargets(key);
    if (targets.length === 0) return false;
    if (path.includes(key)) {
      problems.push(`alias loop ${[...path, key].join(' -> ')} ignored`);
      return true;
    }
    if (expanded.has(key)) return true; // met before on another branch: its targets are in
    expanded.add(key);
    if (path.length >= MAX_ALIAS_DEPTH) {
      problems.push(`alias ${key}: deeper than ${MAX_ALIAS_DEPTH} levels, not expanded`);
      return true;
    }
    for (const t of targets) {
      if (full) break;
      visit(t, [...path, key]);
    }
    return true;
  };

  /** Steps 1-2 for one address: alias, else user. */
  const aliasOrUser = (a: string, path: readonly string[]): boolean => {
    // An address already on the path that is a user: its own mailbox (a copy kept), not a loop.
    if (path.includes(a) && budget() && reads.isUser(a)) {
      addMailbox(a);
      return true;
    }
    if (expandAlias(a, path)) return true;
    if (budget() && reads.isUser(a)) {
      addMailbox(a);
      return true;
    }
    return false;
  };

  const visit = (raw: string, path: readonly string[]): void => {
    let a: string;
    try {
      a = normalizeAddress(raw);
    } catch {
      problems.push(`unusable target ${JSON.stringify(raw.slice(0, 80))} dropped`);
      return;
    }
    const domain = domainPart(a);
    if (!local.has(domain)) {
      if (path.length === 0) return; // not ours to resolve (the caller checks the domain first)
      const e = externalForm(raw);
      if (!external.has(e.toLowerCase()) && room()) external.set(e.toLowerCase(), e);
      return;
    }
    if (aliasOrUser(a, path)) return;
    const base = stripSubaddress(a, separator);
    if (base !== null && aliasOrUser(base, path)) return;
    if (a.slice(0, a.lastIndexOf('@')) === 'postmaster') {
      addMailbox(a); // RFC 5321 §4.5.1: postmaster at every local domain is always accepted
      return;
    }
    if (opts.forSender === true) return;
    if (expandAlias('@' + domain, path)) return;
    if (opts.catchAll === true || catchAllDomains.has(domain)) {
      addMailbox(a);
      return;
    }
    if (path.length > 0) problems.push(`target ${a} (from ${path[path.length - 1] ?? ''}) is no user or alias: dropped`);
  };

  visit(address, []);
  return { mailboxes: [...mailboxes], external: [...external.values()], problems };
}
