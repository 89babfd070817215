/**
 * Where the store is: the one parser of what `--store`, `POSTSEAL_STORE` and the config's
 * `store.url` say (issue 13). Three spellings:
 * - a data directory (`./postseal-data`, `/var/lib/postseal`): the embedded SQLite store in it;
 * - `sqlite:DIR`: the same, said explicitly;
 * - `postgres://USER@HOST:PORT/DB` (or `postgresql://`): the PostgreSQL store shared by nodes.
 * Anything else (another scheme, an empty text, a URL with a password) is refused with
 * STORE_BAD_URL and a message saying what is expected.
 *
 * Invariants: no message built here contains the text of a URL that carries a password (errors
 * end up in logs and terminals); describeStore() never shows credentials.
 * Light on purpose (no driver import): config and the CLI parse specs without loading `pg`.
 */
import { PostsealError } from '../errors.js';

export type StoreSpec = { kind: 'sqlite'; dir: string } | { kind: 'postgres'; url: string };

export const STORE_SYNTAX = 'a data directory, sqlite:DIR or postgres://USER@HOST:PORT/DB';

/** Where the password of a PostgreSQL store goes instead of the URL. */
export const PASSWORD_PLACES = 'PGPASSWORD in the environment, ~/.pgpass, or the file named by store.passwordFile';

function bad(message: string): PostsealError {
  return new PostsealError('STORE_BAD_URL', message);
}

/** Query parameters libpq and the `pg` driver read a secret from. */
const SECRET_PARAMS = new Set(['password', 'sslpassword']);

/**
 * A postgres:// or postgresql:// URL, checked; throws STORE_BAD_URL. The one check of a PostgreSQL
 * URL: parseStoreSpec uses it, and so does the PostgreSQL store on every URL it is given
 * (store/pg/connect.ts poolConfig and describePgUrl), whoever calls it.
 */
export function parsePostgresUrl(text: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    // The text itself is not echoed: a malformed URL may still hold a password.
    throw bad(`not a valid PostgreSQL URL: expected postgres://USER@HOST:PORT/DB`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw bad(`not a PostgreSQL URL: scheme ${JSON.stringify(u.protocol.slice(0, 20))} (expected postgres://USER@HOST:PORT/DB)`);
  }
  // A URL lands in config files, `ps` output, shell history and logs: a secret in it leaks there.
  if (u.password !== '' || [...u.searchParams.keys()].some((k) => SECRET_PARAMS.has(k.toLowerCase()))) {
    throw bad(`a PostgreSQL URL must not carry a password (it would show in process lists, logs and config files): give postgres://USER@HOST:PORT/DB and put the password in ${PASSWORD_PLACES}`);
  }
  if (!text.slice(u.protocol.length).startsWith('//')) throw bad('not a valid PostgreSQL URL: expected postgres://USER@HOST:PORT/DB');
  return u;
}

/** Parses a store spec; throws STORE_BAD_URL (a PostsealError) when it is none of the three spellings. */
export function parseStoreSpec(text: string): StoreSpec {
  if (text.trim() === '') throw bad(`empty store: expected ${STORE_SYNTAX}`);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'sqlite', dir: text };
  if (scheme === 'sqlite') {
    const dir = text.slice('sqlite:'.length);
    if (dir.trim() === '') throw bad(`sqlite: needs a directory: sqlite:DIR (expected ${STORE_SYNTAX})`);
    if (dir.startsWith('//')) throw bad('sqlite:DIR takes a directory path (sqlite:/var/lib/postseal or sqlite:./data), not a URL');
    return { kind: 'sqlite', dir };
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    const url = text.trim();
    parsePostgresUrl(url);
    return { kind: 'postgres', url };
  }
  throw bad(`unknown store ${JSON.stringify(`${scheme.slice(0, 20)}:`)}: expected ${STORE_SYNTAX} (a directory whose name has a colon: write ./NAME or sqlite:NAME)`);
}

/** A PostgreSQL URL for logs and messages: user@host:port/db (no query, no credentials). */
export function describePostgresUrl(u: URL): string {
  return `${u.protocol}//${u.username === '' ? '' : `${decodeURIComponent(u.username)}@`}${u.host}${u.pathname}`;
}

/** The store for logs and messages: `sqlite:DIR`, or the URL as user@host:port/db (no query, no credentials). */
export function describeStore(spec: StoreSpec): string {
  if (spec.kind === 'sqlite') return `sqlite:${spec.dir}`;
  try {
    return describePostgresUrl(new URL(spec.url));
  } catch {
    return 'postgres://(invalid URL)';
  }
}
