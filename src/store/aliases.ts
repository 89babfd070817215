/**
 * The alias half of the address table (the users table is the other half): SQL, write ops and
 * checks, so the shared store files only dispatch here (the tlsrpt.ts pattern).
 *
 * Invariants:
 * - An alias row is (address, target): an alias with several targets has several rows. The
 *   address is lower-cased (normalizeAddress) and is `local@domain` or `@domain` (that domain's
 *   catch-all alias, Postfix virtual(5) style).
 * - A target is `local@domain`: a local user, another alias, or an external address. Its domain
 *   is lower-cased; its local part is kept as written (an external mailbox may be case-sensitive,
 *   RFC 5321 §2.4); local lookups normalize it anyway.
 * - At most MAX_TARGETS_PER_ALIAS rows per alias address (the resolver caps the whole expansion).
 */
import type { Database, Statement } from 'better-sqlite3';
import { PostsealError } from '../errors.js';
import { isValidMailbox } from '../protocol/command.js';
import { normalizeAddress } from './address.js';

export const MAX_TARGETS_PER_ALIAS = 1000;

/** One alias and its targets, as `alias list` shows it. */
export interface AliasEntry {
  /** `local@domain`, or `@domain` for a domain's catch-all alias. */
  address: string;
  targets: string[];
}

export type AliasWriteOp =
  | { kind: 'addAlias'; address: string; targets: string[]; createdAt: string }
  | { kind: 'removeAlias'; address: string; target: string | null };

export interface AliasOpValues {
  /** Targets newly added (those already there are not counted). */
  addAlias: number;
  /** Rows removed. */
  removeAlias: number;
}

export const ALIAS_TABLE = `
  CREATE TABLE aliases (
    address    TEXT NOT NULL,              -- lower-cased; '@domain' = the domain's catch-all alias
    target     TEXT NOT NULL COLLATE NOCASE, -- local@domain, domain lower-cased; Bob@ = bob@ here
    created_at TEXT NOT NULL,
    PRIMARY KEY (address, target)
  ) WITHOUT ROWID;
`;

/** An alias address as stored: `local@domain` or `@domain`, lower-cased; else STORE_BAD_ALIAS. */
export function aliasAddress(raw: string): string {
  const a = raw.trim().toLowerCase();
  const ok = a.startsWith('@') ? /^@[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(a) && a.length <= 254 : isValidMailbox(a);
  if (!ok) throw new PostsealError('STORE_BAD_ALIAS', `not an alias address: ${JSON.stringify(raw.slice(0, 80))} (expected local@domain or @domain)`);
  return normalizeAddress(a);
}

/** A target as stored: local part as written, domain lower-cased; else STORE_BAD_ALIAS. */
export function aliasTarget(raw: string): string {
  const t = raw.trim();
  if (!isValidMailbox(t)) throw new PostsealError('STORE_BAD_ALIAS', `not a target address: ${JSON.stringify(raw.slice(0, 80))} (expected local@domain)`);
  normalizeAddress(t); // the store's own checks (control characters, brackets)
  const at = t.lastIndexOf('@');
  return t.slice(0, at + 1) + t.slice(at + 1).toLowerCase();
}

export interface AliasStatements {
  insert: Statement;
  count: Statement;
  removeAll: Statement;
  removeOne: Statement;
}

export function prepareAliases(db: Database): AliasStatements {
  return {
    insert: db.prepare('INSERT OR IGNORE INTO aliases (address, target, created_at) VALUES (?, ?, ?)'),
    count: db.prepare('SELECT count(*) FROM aliases WHERE address = ?').pluck(),
    removeAll: db.prepare('DELETE FROM aliases WHERE address = ?'),
    // Targets compare case-insensitively (COLLATE NOCASE): `alias remove` need not repeat the
    // case a target was added with, and `Bob@D` after `bob@D` is the same target.
    removeOne: db.prepare('DELETE FROM aliases WHERE address = ? AND target = ?'),
  };
}

export function runAliasOp(s: AliasStatements, op: AliasWriteOp): AliasOpValues[AliasWriteOp['kind']] {
  switch (op.kind) {
    case 'addAlias': {
      let added = 0;
      for (const t of op.targets) added += s.insert.run(op.address, t, op.createdAt).changes;
      const n = s.count.get(op.address);
      if (typeof n === 'number' && n > MAX_TARGETS_PER_ALIAS) {
        // Thrown inside the op's savepoint: nothing of this op is kept.
        throw new PostsealError('STORE_BAD_ALIAS', `alias ${op.address} would have ${n} targets (at most ${MAX_TARGETS_PER_ALIAS})`);
      }
      return added;
    }
    case 'removeAlias':
      return op.target === null ? s.removeAll.run(op.address).changes : s.removeOne.run(op.address, op.target).changes;
  }
}

/** Reads of the alias table (the read connection). */
export class AliasReads {
  private readonly targets: Statement;
  private readonly all: Statement;

  constructor(db: Database) {
    this.targets = db.prepare('SELECT target FROM aliases WHERE address = ? ORDER BY created_at, target').pluck();
    this.all = db.prepare('SELECT address, target FROM aliases ORDER BY address, created_at, target');
  }

  aliasTargets(address: string): string[] {
    return this.targets.all(address).filter((t): t is string => typeof t === 'string');
  }

  listAliases(): AliasEntry[] {
    const out: AliasEntry[] = [];
    for (const row of this.all.all() as Array<{ address: string; target: string }>) {
      const last = out[out.length - 1];
      if (last !== undefined && last.address === row.address) last.targets.push(row.target);
      else out.push({ address: row.address, targets: [row.target] });
    }
    return out;
  }
}
