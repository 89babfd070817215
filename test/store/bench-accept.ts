/**
 * Store throughput: N accepts of SIZE bytes from C concurrent callers, on SQLite (a temp dir), on
 * PostgreSQL (a private cluster, test/helpers/postgres.ts, fsync on) or on both, one after the other.
 * Prints messages/s, commits and the event-loop delay seen meanwhile, per backend. No assertions.
 *   node --import tsx test/store/bench-accept.ts [--backend sqlite|postgres|both] [messages=5000] [concurrency=50] [bytes=2048]
 * PostgreSQL beside SQLite as measured for issue 13: --backend both 4000 200 10240
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openPgStore, openSqliteStore, type Store } from '../../src/store/index.js';
import { startPostgres, type PgCluster } from '../helpers/postgres.js';
import { makeMessage, tempDirs } from './helpers.js';

const args = process.argv.slice(2);
const flag = args.indexOf('--backend');
const backend = flag === -1 ? 'sqlite' : args.splice(flag, 2)[1];
if (backend !== 'sqlite' && backend !== 'postgres' && backend !== 'both') {
  console.error('usage: bench-accept.ts [--backend sqlite|postgres|both] [messages] [concurrency] [bytes]');
  process.exit(2);
}
const [total = 5000, concurrency = 50, size = 2048] = args.map(Number);
const dirs = tempDirs();

async function run(name: string, store: Store): Promise<void> {
  const body = randomBytes(size);
  let next = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
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
  h.disable();
  const s = store.stats();
  await store.close();
  console.log(
    `${name}: ${total} x ${size} B, ${concurrency} callers: ${Math.round(total / seconds)} msg/s ` +
      `(${seconds.toFixed(2)} s, ${s.commits} commits, avg batch ${(s.messages / s.commits).toFixed(1)}, ` +
      `largest ${s.largestBatch}; event-loop delay p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms)`,
  );
}

let cluster: PgCluster | null = null;
try {
  if (backend !== 'postgres') await run('sqlite', await openSqliteStore(dirs.make()));
  if (backend !== 'sqlite') {
    cluster = await startPostgres({ fsync: true });
    await run('postgres', await openPgStore(await cluster.createDatabase('bench'), { nodeId: 'bench', spoolDir: dirs.make() }));
  }
} finally {
  await cluster?.close();
  dirs.cleanup();
}
