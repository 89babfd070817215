/**
 * Outbound throughput of the queue runner (issue 3 "Done means": messages/s of a 1000-message
 * outbound run). Queues N messages (default 1000 × 2 KiB) for one destination in a fresh SQLite
 * store, then times one QueueRunner pass delivering them over STARTTLS at `encrypt` to a
 * postseal server on 127.0.0.1:0 whose sink discards (startServe(cfg, { sink })), once with
 * connection reuse (maxMessagesPerConnection 100) and once without (1). Queueing is not timed;
 * the timed part includes recording each outcome in the sender's store (fsync'd, as in serve).
 *
 * Loopback only, bounded: the whole run is killed after --deadline seconds (default 300).
 * Usage: node --import tsx bench/outbound.ts [--messages 1000] [--size 2048] [--level encrypt]
 *        [--concurrency 8] [--mode both|reuse|no-reuse] [--json]
 */
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTlsLevel, uniformTimeouts, systemResolver, type TlsLevel } from '../src/client/index.js';
import { DEFAULT_RELAY } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { QueueRunner, type RunSummary } from '../src/relay/runner.js';
import { openSqliteStore } from '../src/store/index.js';
import { queueOutbound } from '../test/helpers/outbound.js';
import { startDiscardReceiver } from './lib/discard-receiver.js';
import { createCertificate } from '../src/tls/generate.js';
import { arg } from './lib/args.js';

const N = Number(arg('--messages', '1000'));
const SIZE = Number(arg('--size', '2048'));
const levelArg = arg('--level', 'encrypt');
const CONCURRENCY = Number(arg('--concurrency', '8'));
const MODE = arg('--mode', 'both');
const DEADLINE_S = Number(arg('--deadline', '300'));
const JSON_OUT = process.argv.includes('--json');
if (!isTlsLevel(levelArg)) throw new Error(`--level: none, may, encrypt or verify (got ${levelArg})`);
const LEVEL: TlsLevel = levelArg;
if (!(N > 0 && SIZE >= 256 && CONCURRENCY > 0)) throw new Error('--messages > 0, --size >= 256, --concurrency > 0');

const killer = setTimeout(() => {
  process.stderr.write(`outbound bench: deadline of ${DEADLINE_S} s reached, giving up\n`);
  process.exit(1);
}, DEADLINE_S * 1000);
killer.unref();

/** A SIZE-octet message: headers, then 76-character lines (one starts with a dot), CRLF. */
function message(i: number): Buffer {
  const head = `From: <bench@sender.test>\r\nTo: <rcpt${i}@bench.test>\r\nSubject: outbound ${i}\r\nMessage-ID: <${i}.outbound@sender.test>\r\n\r\n.dot-stuffed first line\r\n`;
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn\r\n';
  let body = '';
  while (head.length + body.length + line.length <= SIZE - 2) body += line;
  body += 'x'.repeat(Math.max(0, SIZE - 2 - head.length - body.length)) + '\r\n';
  return Buffer.from(head + body, 'latin1');
}

interface Run {
  mode: 'reuse' | 'no-reuse';
  maxMessagesPerConnection: number;
  messages: number;
  delivered: number;
  deferred: number;
  failed: number;
  seconds: number;
  messagesPerSecond: number;
  connections: number;
  receiverConnections: number;
}

const root = await mkdtemp(join(tmpdir(), 'postseal-bench-outbound-'));
const cleanups: Array<() => Promise<void>> = [async () => rm(root, { recursive: true, force: true })];
try {
  // A test CA and a leaf for 127.0.0.1 (the route's host and name).
  const day = 86_400_000;
  const now = Date.now();
  const ca = await createCertificate({ commonName: 'outbound bench CA', names: [], notBefore: new Date(now - day), notAfter: new Date(now + day), keyType: 'ec', isCa: true });
  const leaf = await createCertificate({ commonName: '127.0.0.1', names: ['127.0.0.1'], notBefore: new Date(now - day), notAfter: new Date(now + day), keyType: 'ec', isCa: false, issuer: ca });
  // The receiver: postseal's protocol engine with a discarding sink.
  let accepted = 0;
  const receiver = await startDiscardReceiver({ dir: root, certPem: leaf.certPem, keyPem: leaf.keyPem, domains: ['bench.test'], onAccept: () => accepted++ });
  cleanups.unshift(() => receiver.close());
  const port = receiver.port;

  const modes: Array<Run['mode']> = MODE === 'both' ? ['reuse', 'no-reuse'] : MODE === 'reuse' || MODE === 'no-reuse' ? [MODE] : [];
  if (modes.length === 0) throw new Error('--mode: both, reuse or no-reuse');
  const runs: Run[] = [];
  for (const mode of modes) {
    const store = await openSqliteStore(join(root, `sender-${mode}`));
    try {
      for (let i = 0; i < N; i++) {
        await queueOutbound(store, { from: 'bench@sender.test', to: [`rcpt${i}@bench.test`], data: message(i) });
      }
      const max = mode === 'reuse' ? 100 : 1;
      const runner = new QueueRunner(
        store,
        {
          ...DEFAULT_RELAY,
          hostname: 'out.sender.test',
          localDomains: ['sender.test'],
          routes: { 'bench.test': { host: '127.0.0.1', port } },
          tlsPolicy: { 'bench.test': LEVEL },
          ca: ca.certPem,
          concurrency: CONCURRENCY,
          maxMessagesPerConnection: max,
          timeouts: uniformTimeouts(30_000),
        },
        systemResolver(),
        silentLogger,
      );
      const before = receiver.connections();
      const t0 = process.hrtime.bigint();
      const s: RunSummary = await runner.runOnce();
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      runs.push({
        mode,
        maxMessagesPerConnection: max,
        messages: N,
        delivered: s.delivered,
        deferred: s.deferred,
        failed: s.failed,
        seconds,
        messagesPerSecond: s.delivered / seconds,
        connections: s.connections,
        receiverConnections: receiver.connections() - before,
      });
    } finally {
      await store.close();
    }
  }
  if (JSON_OUT) {
    process.stdout.write(JSON.stringify({ level: LEVEL, size: SIZE, concurrency: CONCURRENCY, node: process.version, accepted, runs }, null, 2) + '\n');
  } else {
    process.stdout.write(`outbound: ${N} messages of ${SIZE} octets, one route, STARTTLS at ${LEVEL}, concurrency ${CONCURRENCY}, postseal discard receiver on 127.0.0.1:${port}, Node ${process.version}\n`);
    process.stdout.write('| mode | per connection | delivered | deferred+failed | seconds | messages/s | connections |\n| --- | --- | --- | --- | --- | --- | --- |\n');
    for (const r of runs) {
      process.stdout.write(`| ${r.mode} | ${r.maxMessagesPerConnection} | ${r.delivered}/${r.messages} | ${r.deferred + r.failed} | ${r.seconds.toFixed(2)} | ${r.messagesPerSecond.toFixed(0)} | ${r.receiverConnections} |\n`);
    }
  }
  if (runs.some((r) => r.delivered !== r.messages)) process.exitCode = 1;
} finally {
  for (const c of cleanups) await c().catch(() => undefined);
  clearTimeout(killer);
}
