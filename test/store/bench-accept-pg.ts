/**
 * Store throughput on PostgreSQL beside SQLite: N accepts of SIZE bytes from C concurrent callers,
 * on a private cluster (test/helpers/postgres.ts, fsync on) and on a SQLite store in a temp dir.
 * Prints messages/s and commits for each. No assertions.
 *   node --import tsx test/store/bench-accept-pg.ts [messages=4000] [concurrency=200] [bytes=10240]
 */
import { randomBytes } from 'node:crypto';
import { openPgStore, openSqliteStore, type Store } from '../../src/store/index.js';
import { startPostgres } from '../helpers/postgres.js';
import { makeMessage, tempDirs } from './helpers.js';

const [total = 4000, concurrency = 200, size = 10_240] = process.argv.slice(2).map(Number);
const dirs = tempDirs();

async function run(name: string, store: Store): Promise<void> {
  const body = randomBytes(size);
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        await store.accept(makeMessage({ data: body, remoteRecipients: ['r@remote.example'] }));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const s = store.stats();
  await store.close();
  console.log(
    `${name}: ${total} x ${size} B, ${concurrency} callers: ${Math.round(total / seconds)} msg/s ` +
      `(${seconds.toFixed(2)} s, ${s.commits} commits, avg batch ${(s.messages / s.commits).toFixed(1)}, largest ${s.largestBatch})`,
  );
}

const cluster = await startPostgres({ fsync: true });
try {
  await run('sqlite', await openSqliteStore(dirs.make()));
  await run('postgres', await openPgStore(await cluster.createDatabase('bench'), { nodeId: 'bench', spoolDir: dirs.make() }));
} finally {
  await cluster.close();
  dirs.cleanup();
}
