/**
 * A private PostgreSQL cluster for the bench (issue 13 "Measure"): the test helper's cluster
 * (test/helpers/postgres.ts: initdb in a temp dir, pg_ctl on a free 127.0.0.1 port, as the
 * postgres user when root, fsync on), plus what the bench needs around it:
 *
 * - the postmaster's pid, whose process tree (backends, walwriter, checkpointer…) is the
 *   PostgreSQL CPU of a run (exited backends are folded into the postmaster's cutime/cstime);
 * - pinning of that tree to a core (taskset on every member; backends forked later inherit the
 *   postmaster's affinity);
 * - databases created with per-database settings (synchronous_commit on/off: the durable
 *   contract, or a labelled not-durable comparison);
 * - counters read from pg_stat_database (xact_commit) and pg_stat_wal (wal_sync = WAL fsyncs,
 *   wal_bytes), and a sampler of pg_stat_activity wait events (where the backends spend time).
 *
 * The cluster is stopped and its dir removed by close(), by the bench's cleanup registry, and by
 * the helper's own exit hook.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { postgresAvailable, startPostgres, type PgCluster } from '../../test/helpers/postgres.js';
import { treePids } from './proc.js';

export interface BenchPg {
  cluster: PgCluster;
  /** Root of the PostgreSQL process tree (the postmaster). */
  pid: number;
  version: string;
  /** A fresh database; `settings` become ALTER DATABASE … SET (seen by sessions opened later). */
  createDatabase(prefix: string, settings?: Record<string, string>): Promise<{ url: string; name: string }>;
  /** Counters for one database plus the cluster-wide WAL counters. */
  counters(db: string): Promise<PgCounters>;
  /** Samples pg_stat_activity of `db` every `everyMs` until stop(); returns the wait-event histogram. */
  waitSampler(db: string, everyMs?: number): { stop(): Promise<WaitHistogram> };
  /** Pins every process of the tree to `core` (null: nothing). */
  pin(core: number | null): void;
  close(): Promise<void>;
}

/**
 * Two kinds of counters. Exact at any moment: nextXid (write transactions: only a transaction
 * that writes takes a transaction id; the bench's own reads do not) and walLsn (WAL bytes written,
 * cluster-wide). Cumulative statistics (xact_commit, wal_sync…): a backend reports them when it
 * goes idle at most once a second, and an idle backend's last second only after 10 s (PostgreSQL
 * 15's PGSTAT_IDLE_INTERVAL) or when it exits — read them after the nodes stopped or after 10 s
 * idle (idleFlush), or treat them as approximate.
 */
export interface PgCounters {
  nextXid: number;
  walLsn: number;
  xactCommit: number;
  xactRollback: number;
  /** WAL fsyncs (pg_stat_wal.wal_sync: issue_xlog_fsync calls, by backends and the walwriter). */
  walSync: number;
  walWrite: number;
  walBytes: number;
  at: number;
}

/** samples: how many; buckets: "state/wait_event_type:wait_event" → count over all samples and backends. */
export interface WaitHistogram {
  samples: number;
  buckets: Record<string, number>;
}

export function pgUnavailable(): string | null {
  return postgresAvailable() ? null : 'PostgreSQL not installed (initdb/pg_ctl/postgres; as root also the postgres user): apt-get install -y postgresql';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function startBenchPostgres(core: number | null): Promise<BenchPg> {
  const cluster = await startPostgres({ fsync: true });
  // Ctrl-C or a failure: the helper's own 'exit' hook stops the cluster and removes its dir.
  const pid = Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'latin1').split('\n')[0]);
  if (!(pid > 0)) {
    await cluster.close();
    throw new Error('PostgreSQL started but postmaster.pid has no pid');
  }
  const pin = (c: number | null): void => {
    if (c === null) return;
    for (const p of treePids(pid)) {
      try {
        execFileSync('taskset', ['-a', '-pc', String(c), String(p)], { stdio: 'ignore' });
      } catch {
        /* a backend that just exited */
      }
    }
  };
  pin(core);
  const admin = cluster.url();
  const version = await withClient(admin, async (c) => {
    // The durable contract: fsync on (the helper's default) and synchronous_commit on (PostgreSQL's default).
    const r = await c.query<{ v: string; f: string; s: string }>("SELECT current_setting('server_version') AS v, current_setting('fsync') AS f, current_setting('synchronous_commit') AS s");
    const row = r.rows[0];
    if (!row || row.f !== 'on' || row.s !== 'on') throw new Error(`bench PostgreSQL must run with fsync=on and synchronous_commit=on (got ${JSON.stringify(row)})`);
    return row.v;
  });
  let seq = 0;
  return {
    cluster,
    pid,
    version,
    async createDatabase(prefix, settings = {}) {
      const name = `${prefix.replace(/[^a-z0-9_]/g, '_')}_${++seq}`;
      await withClient(admin, async (c) => {
        await c.query(`CREATE DATABASE "${name}"`);
        // Names and values are ours (bench code), not input: [a-z_] names, quoted literal values.
        for (const [k, v] of Object.entries(settings)) {
          if (!/^[a-z_]+$/.test(k) || !/^[a-z0-9_.]+$/.test(v)) throw new Error(`bad setting ${k}=${v}`);
          await c.query(`ALTER DATABASE "${name}" SET ${k} = '${v}'`);
        }
      });
      return { url: cluster.url(name), name };
    },
    counters(db) {
      return withClient(admin, async (c) => {
        const d = await c.query<{ xact_commit: string; xact_rollback: string }>('SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1', [db]);
        const w = await c.query<{ wal_sync: string; wal_write: string; wal_bytes: string }>('SELECT wal_sync, wal_write, wal_bytes FROM pg_stat_wal');
        const x = await c.query<{ xmax: string; lsn: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS lsn");
        return {
          nextXid: Number(x.rows[0]?.xmax ?? NaN),
          walLsn: Number(x.rows[0]?.lsn ?? NaN),
          xactCommit: Number(d.rows[0]?.xact_commit ?? NaN),
          xactRollback: Number(d.rows[0]?.xact_rollback ?? NaN),
          walSync: Number(w.rows[0]?.wal_sync ?? NaN),
          walWrite: Number(w.rows[0]?.wal_write ?? NaN),
          walBytes: Number(w.rows[0]?.wal_bytes ?? NaN),
          at: performance.now(),
        };
      });
    },
    waitSampler(db, everyMs = 50) {
      const buckets: Record<string, number> = {};
      let samples = 0;
      let stopped = false;
      const loop = withClient(admin, async (c) => {
        while (!stopped) {
          // Client backends of the bench database, and the WAL writer (it flushes with synchronous_commit off).
          const r = await c.query<{ state: string | null; wt: string | null; we: string | null; bt: string }>(
            "SELECT state, wait_event_type AS wt, wait_event AS we, backend_type AS bt FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = $1 OR backend_type = 'walwriter')",
            [db],
          );
          samples++;
          for (const row of r.rows) {
            const who = row.bt === 'client backend' ? (row.state ?? '?') : row.bt;
            const key = `${who}/${row.wt ? `${row.wt}:${row.we}` : 'CPU'}`;
            buckets[key] = (buckets[key] ?? 0) + 1;
          }
          await sleep(everyMs);
        }
      }).catch(() => undefined);
      return {
        async stop() {
          stopped = true;
          await loop;
          return { samples, buckets };
        },
      };
    },
    pin,
    async close() {
      await cluster.close();
    },
  };
}

/** An idle backend reports its pending statistics after 10 s (PostgreSQL 15); a little more. */
export function idleFlush(): Promise<void> {
  return sleep(10_500);
}
