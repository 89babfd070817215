/**
 * Console admins and API tokens (issue 14): the `users.admin` flag and the `api_tokens` table —
 * SQL, write ops and reads, so the shared store files only dispatch here (the aliases.ts pattern).
 *
 * Invariants:
 * - A token is `ps_` + 32 random bytes base64url; only its SHA-256 (hex) is stored, so a copy of
 *   the database does not hand out working tokens. It is shown once, by `token create`.
 * - Token names are unique among tokens not revoked; a revoked row stays (list shows it) and
 *   never verifies again.
 * - Lookup is by the hash (an indexed equality on a value an attacker cannot choose freely to
 *   match): no string comparison of secrets in JavaScript.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { PostsealError } from '../errors.js';

export const TOKEN_PREFIX = 'ps_';
/** Longest token we look up (prefix + 43 base64url characters; longer input is refused unhashed). Both backends. */
export const MAX_TOKEN_LENGTH = 128;

export interface ApiTokenInfo {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  revoked: boolean;
}

export type TokenWriteOp =
  | { kind: 'setAdmin'; address: string; admin: boolean }
  | { kind: 'createToken'; id: string; name: string; hash: string; createdAt: string }
  | { kind: 'revokeToken'; nameOrId: string }
  | { kind: 'touchToken'; id: string; at: string };

export interface TokenOpValues {
  /** False when there is no such user. */
  setAdmin: boolean;
  createToken: null;
  /** Tokens revoked (0: none by that name or id was live). */
  revokeToken: number;
  touchToken: null;
}

// 10 -> 11
export const TOKEN_MIGRATION = `
  ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,   -- sha256 hex of the token; the token itself is not kept
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked      INTEGER NOT NULL DEFAULT 0
  );
  CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked = 0;
`;

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new token and its row values (the token is returned once, never stored). */
export function newToken(name: string): { token: string; id: string; hash: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, id: randomBytes(6).toString('hex'), hash: tokenHash(token) };
}

/** A token name: 1-64 printable characters without blanks; else TOKEN_BAD_NAME. */
export function tokenName(raw: string): string {
  if (!/^[\x21-\x7e]{1,64}$/.test(raw)) throw new PostsealError('TOKEN_BAD_NAME', `token name must be 1-64 printable ASCII characters without spaces: ${JSON.stringify(raw.slice(0, 80))}`);
  return raw;
}

export interface TokenStatements {
  setAdmin: Statement;
  insert: Statement;
  revoke: Statement;
  touch: Statement;
}

export function prepareTokens(db: Database): TokenStatements {
  return {
    setAdmin: db.prepare('UPDATE users SET admin = ? WHERE address = ?'),
    insert: db.prepare('INSERT INTO api_tokens (id, name, hash, created_at) VALUES (?, ?, ?, ?)'),
    revoke: db.prepare('UPDATE api_tokens SET revoked = 1 WHERE revoked = 0 AND (name = ? OR id = ?)'),
    touch: db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE id = ?'),
  };
}

export function runTokenOp(s: TokenStatements, op: TokenWriteOp): TokenOpValues[TokenWriteOp['kind']] {
  switch (op.kind) {
    case 'setAdmin':
      return s.setAdmin.run(op.admin ? 1 : 0, op.address).changes > 0;
    case 'createToken':
      s.insert.run(op.id, op.name, op.hash, op.createdAt);
      return null;
    case 'revokeToken':
      return s.revoke.run(op.nameOrId, op.nameOrId).changes;
    case 'touchToken':
      s.touch.run(op.at, op.id);
      return null;
  }
}

interface TokenRow {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  revoked: number;
}

function info(r: TokenRow): ApiTokenInfo {
  return { id: r.id, name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at, revoked: r.revoked !== 0 };
}

/** Reads of admins and tokens (the read connection). */
export class TokenReads {
  private readonly admin: Statement;
  private readonly byHash: Statement;
  private readonly all: Statement;

  constructor(db: Database) {
    this.admin = db.prepare('SELECT admin FROM users WHERE address = ?').pluck();
    this.byHash = db.prepare('SELECT id, name, created_at, last_used_at, revoked FROM api_tokens WHERE hash = ?');
    this.all = db.prepare('SELECT id, name, created_at, last_used_at, revoked FROM api_tokens ORDER BY created_at, id');
  }

  isAdmin(address: string): boolean {
    return this.admin.get(address) === 1;
  }

  /** The live token with this secret, or null (unknown, revoked, malformed). */
  verifyApiToken(token: string): ApiTokenInfo | null {
    if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(TOKEN_PREFIX)) return null;
    const row = this.byHash.get(tokenHash(token)) as TokenRow | undefined;
    return row === undefined || row.revoked !== 0 ? null : info(row);
  }

  listApiTokens(): ApiTokenInfo[] {
    return (this.all.all() as TokenRow[]).map(info);
  }
}
