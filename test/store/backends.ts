/**
 * One store suite, two backends (issue 13): every case of test/store/*.test.ts that is about the
 * Store interface runs against SQLite and against PostgreSQL, with the backend's name first in the
 * test title (`sqlite: …`, `postgres: …`).
 *
 * - SQLite: each site is a fresh temp dir (openSqliteStore / openSqliteStoreReadOnly on it).
 * - PostgreSQL: one private cluster per test file (test/helpers/postgres.ts), started lazily by the
 *   first postgres case and closed in after(); each site is a fresh database of it, with a temp
 *   spool dir per store object.
 * - PostgreSQL not installed: the postgres cases skip on a dev machine and FAIL on CI (CI=true),
 *   through requirePostgres(t).
 *
 * A "site" is one place a store lives (a data dir, a database): open() it again after close (the
 * reopen of a restart), open it twice at once with two node ids (two nodes on one queue — SQLite
 * allows that in a test: the owner lock is serve's, not openSqliteStore's), or open a reader on it
 * (the CLI while serve runs). Every store and reader opened here is closed in after() too, so a
 * failing case leaves no pool or cluster behind; closing twice is fine (close is idempotent).
 * That after() hook is registered by storeTest()/forEachBackend() at the file's top level: register
 * the cases through them.
 *
 * Usage: `storeTest('title', async (b) => { const s = await b.open(); … })` — one case per
 * backend. Reads are awaited (a plain value for SQLite, a promise for PostgreSQL); the address
 * reads (hasUser, senderPatterns, aliasTargets, resolveRecipient) are synchronous on both. A case
 * about a documented difference branches on `b.name` and says why; a known gap of one backend is
 * `{ todo: { sqlite: 'why' } }`. Cases about SQLite itself (file format, migrations of old files,
 * the owner lock, the crash test) stay plain tests titled `sqlite only: …`.
 */
import { after, test, type TestContext } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openSqliteStore, openSqliteStoreReadOnly, type Store, type StoreReader } from '../../src/store/index.js';
import { openPgStore } from '../../src/store/pg/pg-store.js';
import { requirePostgres, startPostgres, type PgCluster } from '../helpers/postgres.js';

export type BackendName = 'sqlite' | 'postgres';

export interface OpenOptions {
  /** Who claims and records attempts (default: the backend's own default; PostgreSQL: `node-1`). */
  nodeId?: string;
  maxBatchOps?: number;
  maxBatchBytes?: number;
}

/** One place a store lives: a SQLite data dir or a PostgreSQL database. */
export interface Site {
  /** The data dir (SQLite) or the database URL (PostgreSQL): for messages. */
  readonly where: string;
  /** A store on this site (again after a close: a restart; twice at once: two nodes). */
  open(opts?: OpenOptions): Promise<Store>;
  /** A read-only reader on this site (SQLite: openSqliteStoreReadOnly; PostgreSQL: openPgStore readOnly). */
  openReader(): Promise<StoreReader>;
  /**
   * The rows of one SELECT on the site's database, outside the store (what is really stored: a
   * hash, not a secret). Plain SQL both engines read alike; no parameters.
   */
  rawQuery(sql: string): Promise<Array<Record<string, unknown>>>;
}

export interface Backend {
  readonly name: BackendName;
  /** A fresh, empty site. */
  site(): Promise<Site>;
  /** A store on a fresh site: `(await site()).open(opts)`. */
  open(opts?: OpenOptions): Promise<Store>;
  /** A store on the site of `store` (opened by this backend): the reopen after a restart, or a second node. */
  reopen(store: Store, opts?: OpenOptions): Promise<Store>;
  /** A reader on the site of `store` (opened by this backend). */
  openReader(store: Store): Promise<StoreReader>;
  /** Whether this backend can run here; false → the case skips (dev machine) or fails (CI). */
  available(t: TestContext): boolean;
  /** Closes every store and reader it opened, removes its temp dirs, stops its cluster. */
  cleanup(): Promise<void>;
}

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

const opened: Array<{ close(): Promise<void> }> = [];
function track<T extends { close(): Promise<void> }>(s: T): T {
  opened.push(s);
  return s;
}

const siteOf = new WeakMap<object, Site>();
function remember(site: Site, s: Store): Store {
  siteOf.set(s, site);
  return s;
}
function siteOfStore(store: Store): Site {
  const site = siteOf.get(store);
  if (site === undefined) throw new Error('this store was not opened through test/store/backends.ts');
  return site;
}

function withSites(name: BackendName, site: () => Promise<Site>, available: (t: TestContext) => boolean, stop: () => Promise<void>): Backend {
  return {
    name,
    site,
    async open(opts) {
      return (await site()).open(opts);
    },
    reopen: (store, opts) => siteOfStore(store).open(opts),
    openReader: (store) => siteOfStore(store).openReader(),
    available,
    async cleanup() {
      for (const s of opened.splice(0).reverse()) await s.close().catch(() => undefined);
      await stop();
    },
  };
}

export const sqlite: Backend = withSites(
  'sqlite',
  async () => {
    const dir = tempDir('postseal-store-');
    const site: Site = {
      where: dir,
      async open(opts = {}) {
        return remember(site, track(await openSqliteStore(dir, opts)));
      },
      async openReader() {
        return track(openSqliteStoreReadOnly(dir));
      },
      async rawQuery(sql) {
        const db = new Database(join(dir, 'postseal.db'), { readonly: true });
        try {
          return db.prepare(sql).all() as Array<Record<string, unknown>>;
        } finally {
          db.close();
        }
      },
    };
    return site;
  },
  () => true,
  async () => undefined,
);

let cluster: Promise<PgCluster> | null = null;

export const postgres: Backend = withSites(
  'postgres',
  async () => {
    cluster ??= startPostgres();
    const url = await (await cluster).createDatabase('store');
    const spool = (): string => tempDir('postseal-pg-spool-');
    const site: Site = {
      where: url,
      async open(opts = {}) {
        const s = await openPgStore(url, { connectTimeoutMs: 5000, statementTimeoutMs: 30_000, ...opts, nodeId: opts.nodeId ?? 'node-1', spoolDir: spool() });
        return remember(site, track(s));
      },
      async openReader() {
        return track(await openPgStore(url, { nodeId: 'reader', spoolDir: spool(), readOnly: true, connectTimeoutMs: 5000 }));
      },
      async rawQuery(sql) {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
        await client.connect();
        try {
          return (await client.query<Record<string, unknown>>(sql)).rows;
        } finally {
          await client.end();
        }
      },
    };
    return site;
  },
  (t) => requirePostgres(t),
  async () => {
    const c = cluster;
    cluster = null;
    if (c !== null) await (await c).close();
  },
);

export const BACKENDS: readonly Backend[] = [sqlite, postgres];

let hooked = false;
function hookCleanup(): void {
  if (hooked) return;
  hooked = true;
  after(async () => {
    // Stores first (a pool must end before its cluster stops), then the cluster, then the dirs.
    await sqlite.cleanup();
    await postgres.cleanup();
    for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
}

/** Calls `fn` once per backend (register tests inside it; check `b.available(t)` first in each). */
export function forEachBackend(fn: (b: Backend) => void): void {
  hookCleanup();
  for (const b of BACKENDS) fn(b);
}

export interface StoreTestOptions {
  timeout?: number;
  /** Only these backends (a case about one backend's documented difference). */
  only?: readonly BackendName[];
  /**
   * A known gap of one backend: its case still runs and reports, but does not fail the suite
   * (node:test `todo`). The reason says what differs and where it was reported.
   */
  todo?: Partial<Record<BackendName, string>>;
}

/**
 * One case per backend, titled `${name}: ${title}`. The postgres case skips when PostgreSQL is not
 * installed on a dev machine, and fails on CI.
 */
export function storeTest(title: string, fn: (b: Backend, t: TestContext) => Promise<void>, opts: StoreTestOptions = {}): void {
  forEachBackend((b) => {
    if (opts.only !== undefined && !opts.only.includes(b.name)) return;
    const todo = opts.todo?.[b.name];
    test(`${b.name}: ${title}`, { timeout: opts.timeout ?? 120_000, ...(todo !== undefined ? { todo } : {}) }, async (t) => {
      if (!b.available(t)) return;
      await fn(b, t);
    });
  });
}

/** Opens a store on a fresh site of `b`, runs `fn`, closes it. */
export async function withStore(b: Backend, fn: (s: Store) => Promise<void>, opts?: OpenOptions): Promise<void> {
  const s = await b.open(opts);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}
