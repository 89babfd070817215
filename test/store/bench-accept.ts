/**
 * Store throughput: N accepts of SIZE bytes from C concurrent callers.
 * Prints messages/s, commits (fsyncs) and the event-loop delay seen meanwhile. No assertions.
 *   node --import tsx test/store/bench-accept.ts [messages=5000] [concurrency=50] [bytes=2048]
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openSqliteStore } from '../../src/store/index.js';
import { makeMessage, tempDirs } from './helpers.js';

const [total = 5000, concurrency = 50, size = 2048] = process.argv.slice(2).map(Number);
const dirs = tempDirs();

async function run(): Promise<void> {
  const store = await openSqliteStore(dirs.make());
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
    `${total} x ${size} B, ${concurrency} callers: ${Math.round(total / seconds)} msg/s ` +
      `(${seconds.toFixed(2)} s, ${s.commits} commits, avg batch ${(s.messages / s.commits).toFixed(1)}, ` +
      `largest ${s.largestBatch}; event-loop delay p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms)`,
  );
}

try {
  await run();
} finally {
  dirs.cleanup();
}
