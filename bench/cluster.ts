/**
 * Issue 13 "Measure": several `serve` nodes on one PostgreSQL (`npm run bench -- --scenario cluster`).
 *
 * One private PostgreSQL cluster for the whole run (bench/lib/pg.ts: initdb in a temp dir, fsync
 * on, synchronous_commit on). Per configuration: a fresh database, N nodes
 * (`node dist/cli/main.js serve --store postgres://… --config F`, F giving node.id and
 * store.poolSize; each node its own data dir for its spool), then the throughput load of
 * `npm run bench` (bench/loadgen.ts: C STARTTLS connections, 2 KiB messages, lock-step, one
 * connection per worker for the whole run) spread over the nodes (worker i → node i mod N).
 *
 * Nothing is pinned: the nodes, PostgreSQL and the load generator share the machine's cores,
 * as they would on one host; that is what the machine-busy column says.
 *
 * Configurations: N = 1..3 durable (synchronous_commit on); the same N with synchronous_commit off
 * (NOT durable: a crash of PostgreSQL loses the last acknowledged messages; shown only to tell
 * the cost of the WAL fsync apart); and the pool size varied at the largest N.
 *
 * Reported per configuration: msgs/s, p50/p99 per message, node CPU per message (Σ over the
 * nodes' process trees, /proc), PostgreSQL CPU per message (the postmaster's tree), commits/s
 * (pg_stat_database.xact_commit of the bench database: the nodes' write batches plus their
 * read-only statements), WAL fsyncs/s (pg_stat_wal.wal_sync) and messages per WAL fsync, the
 * machine's busy % and iowait % (/proc/stat, of all cores), the load generator's CPU, and where
 * the PostgreSQL backends of the bench database were when sampled every 100 ms
 * (pg_stat_activity: running = CPU, IO:WALSync = waiting for the fsync, Client:ClientRead =
 * idle, waiting for a node, Lock/LWLock = contention).
 *
 * Bounded: ≤ --count messages and --duration seconds per configuration; the whole run is killed
 * after --deadline seconds (default 900). --quick: 3 s per configuration, synchronous_commit=off
 * at the largest N only, pool 2 only, no 10 s wait for the statistics (WAL fsyncs ≈): < 2 min.
 * Usage: node --import tsx bench/cluster.ts [--nodes 1,2,3] [--duration 10] [--conns 50]
 *        [--pools 2,30] [--no-async] [--body base64|x] [--quick] [--dist DIR] [--json] [--out FILE]
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg } from './lib/args.js';
import { startLoadgen, type LoadgenProc } from './lib/loadgen-proc.js';
import { idleFlush, pgUnavailable, startBenchPostgres, type BenchPg, type PgCounters, type WaitHistogram } from './lib/pg.js';
import { serveArgs } from './lib/peers.js';
import { makeBenchCert } from './lib/pki.js';
import { installExitHandlers, onCleanup, runCleanupsSync, sampleTree, spawnPinned, waitForLine, type Spawned } from './lib/proc.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const QUICK = process.argv.includes('--quick');
const NODES = arg('--nodes', '1,2,3').split(',').map(Number);
const DURATION_S = Number(arg('--duration', QUICK ? '3' : '10'));
const CONNS = Number(arg('--conns', '50'));
const SIZE = Number(arg('--size', '2048'));
const COUNT = Number(arg('--count', '500000'));
const POOLS = arg('--pools', QUICK ? '2' : '2,30').split(',').filter(Boolean).map(Number);
const DEFAULT_POOL = 10;
/** base64: an attachment-like body PostgreSQL cannot compress (x: the main bench's body, which it compresses ~30×). */
const BODY = arg('--body', 'base64');
const ASYNC = !process.argv.includes('--no-async');
const DIST = arg('--dist', join(ROOT, 'dist'));
const DEADLINE_S = Number(arg('--deadline', '900'));
const JSON_OUT = process.argv.includes('--json');
const OUT = arg('--out', '');
if (!(NODES.length && NODES.every((n) => Number.isInteger(n) && n >= 1 && n <= 8))) throw new Error('--nodes: a list of 1..8');
if (!(DURATION_S > 0 && DURATION_S <= 120 && CONNS >= 1 && CONNS <= 500 && SIZE >= 256 && SIZE <= 1 << 20 && COUNT > 0)) throw new Error('--duration 1..120, --conns 1..500, --size 256..1048576, --count > 0');
if (BODY !== 'x' && BODY !== 'base64') throw new Error('--body: x or base64');
if (!POOLS.every((p) => Number.isInteger(p) && p >= 1 && p <= 1000)) throw new Error('--pools: a list of 1..1000');

const killer = setTimeout(() => {
  process.stderr.write(`cluster bench: deadline of ${DEADLINE_S} s reached, giving up\n`);
  runCleanupsSync();
  process.exit(1);
}, DEADLINE_S * 1000);
killer.unref();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Config {
  nodes: number;
  durable: boolean;
  poolSize: number;
}

interface Result extends Config {
  label: string;
  status: 'ok' | 'failed';
  reason?: string;
  wallMs?: number;
  messages?: number;
  errors?: number;
  errorSamples?: Record<string, number>;
  perNode?: number[];
  msgsPerSec?: number;
  latencyMs?: { p50: number; p99: number };
  nodeCpuMsPerMsg?: number;
  pgCpuMsPerMsg?: number;
  serverCpuMsPerMsg?: number;
  nodeCpuPct?: number;
  pgCpuPct?: number;
  loadgenCpuPct?: number;
  loadgenCpuMsPerMsg?: number;
  machineBusyPct?: number;
  /** CPU used meanwhile by everything but the nodes, PostgreSQL and the load generator (other people's work), in % of one core. */
  otherLoadPct?: number;
  iowaitPct?: number;
  commitsPerSec?: number;
  msgsPerCommit?: number;
  walSyncsPerSec?: number;
  msgsPerWalSync?: number;
  walBytesPerMsg?: number;
  waits?: WaitHistogram;
}

/** /proc/stat, all cores: busy (user+nice+system+irq+softirq+steal) and iowait, in ms. */
function machine(): { busyMs: number; iowaitMs: number; at: number } {
  const v = (readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  return { busyMs: (user + nice + system + irq + softirq + steal) * 10, iowaitMs: iowait * 10, at: performance.now() };
}

/** fdatasync latency of the temp dir's disk: 8 KiB write + fdatasync in a loop for `ms`. */
function fsyncProbe(dir: string, ms: number): { perSec: number; meanMs: number } {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(8192, 1);
  let n = 0;
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < ms) {
      writeSync(fd, buf, 0, buf.length, 0);
      fdatasyncSync(fd);
      n++;
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  const el = performance.now() - t0;
  return { perSec: (n / el) * 1000, meanMs: el / n };
}

interface Node {
  sp: Spawned;
  port: number;
  dir: string;
}

async function startNode(i: number, url: string, poolSize: number, work: string, cert: { certFile: string; keyFile: string }): Promise<Node> {
  const dir = mkdtempSync(join(work, `node${i}-`));
  const config = join(dir, 'postseal.json');
  writeFileSync(config, JSON.stringify({ node: { id: `bench-node-${i}` }, store: { poolSize } }));
  const args = [...serveArgs({ dist: DIST, ...cert }, dir), '--config', config, '--store', url];
  const sp = spawnPinned(null, process.execPath, args, { cwd: ROOT });
  try {
    const m = await waitForLine(sp, /listening mx 127\.0\.0\.1:(\d+)/, 60_000);
    return { sp, port: Number(m[1]), dir };
  } catch (e) {
    await sp.stop(500);
    throw e;
  }
}

function label(c: Config): string {
  return `${c.nodes} node${c.nodes > 1 ? 's' : ''}, ${c.durable ? 'durable' : 'synchronous_commit=off (NOT durable)'}, pool ${c.poolSize}`;
}

async function runConfig(pgc: BenchPg, c: Config, work: string, cert: { certFile: string; keyFile: string }): Promise<Result> {
  const db = await pgc.createDatabase(`bench_${c.nodes}n`, c.durable ? {} : { synchronous_commit: 'off' });
  const nodes: Node[] = [];
  let lg: LoadgenProc | null = null;
  try {
    // The first node migrates; the others start together afterwards (the migration lock is tested elsewhere).
    nodes.push(await startNode(1, db.url, c.poolSize, work, cert));
    nodes.push(...(await Promise.all(Array.from({ length: c.nodes - 1 }, (_, i) => startNode(i + 2, db.url, c.poolSize, work, cert)))));
    lg = startLoadgen(['--ports', nodes.map((n) => n.port).join(','), '--conns', String(CONNS), '--msgs-per-conn', '0', '--size', String(SIZE), '--count', String(COUNT), '--duration', String(DURATION_S), '--warmup', QUICK ? '0.5' : '1', '--body', BODY], null);
    await lg.next('ready', 90_000);
    // The warm-up's statistics reach pg_stat_wal only after 10 s idle (bench/lib/pg.ts); --quick does not wait (WAL fsyncs ≈).
    if (!QUICK) await idleFlush();
    const c0: PgCounters = await pgc.counters(db.name);
    const n0 = nodes.map((n) => sampleTree(n.sp.pid).cpuMs);
    const p0 = sampleTree(pgc.pid).cpuMs;
    const m0 = machine();
    const sampler = pgc.waitSampler(db.name, 100);
    lg.send('go');
    const end = await lg.next('end', DURATION_S * 1000 + 120_000);
    const m1 = machine();
    const n1 = nodes.map((n) => sampleTree(n.sp.pid).cpuMs);
    const p1 = sampleTree(pgc.pid).cpuMs;
    const waits = await sampler.stop();
    // Stopped nodes: their backends exit and report their last statistics.
    lg.stop();
    await Promise.all(nodes.map((n) => n.sp.stop(5000)));
    await sleep(300);
    const c1 = await pgc.counters(db.name);
    const wallMs = end.wallMs as number;
    const windowMs = m1.at - m0.at;
    const messages = end.messages as number;
    const nodeCpu = n1.reduce((s, v, i) => s + v - (n0[i] ?? 0), 0);
    const pgCpu = p1 - p0;
    const perPort = end.perPort as Record<string, number>;
    const loadgenCpuMs = end.loadgenCpuMs as number;
    const cores = cpus().length;
    const commits = c1.nextXid - c0.nextXid;
    const syncs = c1.walSync - c0.walSync;
    return {
      ...c,
      label: label(c),
      status: messages > 0 ? 'ok' : 'failed',
      ...(messages > 0 ? {} : { reason: `no message acknowledged: ${JSON.stringify(end.errorSamples)}` }),
      wallMs,
      messages,
      errors: end.errors as number,
      errorSamples: end.errorSamples as Record<string, number>,
      perNode: nodes.map((n) => perPort[String(n.port)] ?? 0),
      msgsPerSec: (messages / wallMs) * 1000,
      latencyMs: end.latencyMs as { p50: number; p99: number },
      nodeCpuMsPerMsg: nodeCpu / messages,
      pgCpuMsPerMsg: pgCpu / messages,
      serverCpuMsPerMsg: (nodeCpu + pgCpu) / messages,
      nodeCpuPct: (nodeCpu / windowMs) * 100,
      pgCpuPct: (pgCpu / windowMs) * 100,
      loadgenCpuPct: (loadgenCpuMs / wallMs) * 100,
      loadgenCpuMsPerMsg: loadgenCpuMs / messages,
      machineBusyPct: ((m1.busyMs - m0.busyMs) / windowMs / cores) * 100,
      otherLoadPct: Math.max(0, ((m1.busyMs - m0.busyMs - nodeCpu - pgCpu - loadgenCpuMs) / windowMs) * 100),
      iowaitPct: ((m1.iowaitMs - m0.iowaitMs) / windowMs / cores) * 100,
      // Write transactions (exact): the nodes' group commits, plus queue writes (none here: local mailboxes).
      commitsPerSec: (commits / wallMs) * 1000,
      msgsPerCommit: messages / commits,
      walSyncsPerSec: (syncs / wallMs) * 1000,
      msgsPerWalSync: messages / syncs,
      walBytesPerMsg: (c1.walLsn - c0.walLsn) / messages,
      waits,
    };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { ...c, label: label(c), status: 'failed', reason: msg.slice(0, 2000) };
  } finally {
    lg?.stop();
    await Promise.all(nodes.map((n) => n.sp.stop(5000)));
    for (const n of nodes) rmSync(n.dir, { recursive: true, force: true });
  }
}

const f = (v: number | undefined, d = 1): string => (v === undefined || !Number.isFinite(v) ? '–' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(d));

/** The wait histogram as shares of the sampled backend states, largest first. */
function waitSummary(w: WaitHistogram | undefined): string {
  if (!w) return '–';
  const backends = Object.entries(w.buckets).filter(([k]) => !k.startsWith('walwriter'));
  if (!w.samples || !backends.length) return '–';
  // Average number of backends in each state at a sample (Σ over states = backends connected).
  const all = backends.reduce((s, [, n]) => s + n, 0) / w.samples;
  return (
    `${all.toFixed(1)} backends: ` +
    backends
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([k, n]) => `${k} ${(n / w.samples).toFixed(2)}`)
      .join(', ')
  );
}

function table(results: Result[]): string {
  const out = [
    `| configuration | msgs/s | p50 / p99 ms | node CPU ms/msg | PostgreSQL CPU ms/msg | server CPU ms/msg | nodes / PG CPU % (of one core) | loadgen CPU % | machine busy % (all cores) | other load % (of one core) | iowait % | write transactions/s | msgs/transaction | WAL fsyncs/s${QUICK ? ' (≈)' : ''} | msgs/WAL fsync | WAL bytes/msg | messages per node | errors |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const r of results) {
    if (r.status !== 'ok') {
      out.push(`| ${r.label} | failed: ${(r.reason ?? '').replace(/\s+/g, ' ').replace(/\|/g, '/').slice(0, 200)} |||||||||||||||| `);
      continue;
    }
    out.push(
      `| ${r.label} | ${f(r.msgsPerSec)} | ${f(r.latencyMs?.p50, 1)} / ${f(r.latencyMs?.p99, 1)} | ${f(r.nodeCpuMsPerMsg, 3)} | ${f(r.pgCpuMsPerMsg, 3)} | ${f(r.serverCpuMsPerMsg, 3)} | ${f(r.nodeCpuPct, 0)} / ${f(r.pgCpuPct, 0)} | ${f(r.loadgenCpuPct, 0)} | ${f(r.machineBusyPct, 0)} | ${f(r.otherLoadPct, 0)} | ${f(r.iowaitPct, 0)} | ${f(r.commitsPerSec, 0)} | ${f(r.msgsPerCommit, 1)} | ${f(r.walSyncsPerSec, 0)} | ${f(r.msgsPerWalSync, 1)} | ${f(r.walBytesPerMsg, 0)} | ${r.perNode?.join(' / ')} | ${r.errors} |`,
    );
  }
  out.push('');
  out.push('Where the PostgreSQL backends of the bench database were (pg_stat_activity every 100 ms; state/wait event: average number of backends in it; active/CPU = running, IO:WALSync = in the WAL fsync, idle in transaction/ClientRead = a transaction open, waiting for the node):');
  out.push('');
  for (const r of results) if (r.status === 'ok') out.push(`- ${r.label}: ${waitSummary(r.waits)}`);
  return out.join('\n');
}

async function main(): Promise<void> {
  installExitHandlers();
  const why = pgUnavailable();
  if (why) throw new Error(why);
  const t0 = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'postseal-bench-cluster-'));
  const unregisterWork = onCleanup(() => rmSync(work, { recursive: true, force: true }));
  let pgc: BenchPg | null = null;
  try {
    const cert = makeBenchCert(work, 'ec');
    const probe = fsyncProbe(work, QUICK ? 500 : 2000);
    process.stdout.write(`fdatasync of an 8 KiB write on ${tmpdir()}: ${probe.perSec.toFixed(0)}/s (${probe.meanMs.toFixed(2)} ms each, measured before the runs, with whatever else runs on the machine)\n`);
    pgc = await startBenchPostgres(null);
    process.stdout.write(`PostgreSQL ${pgc.version}: private cluster, fsync on; ${CONNS} STARTTLS connections, ${SIZE}-byte messages, ${DURATION_S} s per configuration\n`);
    const configs: Config[] = [];
    for (const n of NODES) configs.push({ nodes: n, durable: true, poolSize: DEFAULT_POOL });
    const maxN = Math.max(...NODES);
    // --quick: the not-durable comparison at the largest N only.
    if (ASYNC) for (const n of QUICK ? [maxN] : NODES) configs.push({ nodes: n, durable: false, poolSize: DEFAULT_POOL });
    for (const p of POOLS) if (p !== DEFAULT_POOL) configs.push({ nodes: maxN, durable: true, poolSize: p });
    const results: Result[] = [];
    for (const c of configs) {
      process.stdout.write(`[cluster] ${label(c)} … `);
      const t1 = Date.now();
      const r = await runConfig(pgc, c, work, cert);
      results.push(r);
      process.stdout.write(
        r.status === 'ok'
          ? `${f(r.msgsPerSec, 0)} msgs/s, node ${f(r.nodeCpuMsPerMsg, 3)} + PG ${f(r.pgCpuMsPerMsg, 3)} ms/msg, machine ${f(r.machineBusyPct, 0)} % busy (other load ${f(r.otherLoadPct, 0)} % of a core), ${f(r.msgsPerWalSync, 1)} msgs/WAL fsync, ${r.errors} errors (${((Date.now() - t1) / 1000).toFixed(1)} s)\n`
          : `FAILED: ${r.reason}\n`,
      );
    }
    const shown = process.argv.slice(2).filter((a, i, all) => a !== '--dist' && all[i - 1] !== '--dist');
    const cmd = `npm run bench -- --scenario cluster${shown.length ? ' ' + shown.join(' ') : ''}`;
    const md = [
      `Command: \`${cmd}\` · ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), nothing pinned · PostgreSQL ${pgc.version}, fsync on · fdatasync 8 KiB: ${probe.meanMs.toFixed(2)} ms`,
      '',
      table(results),
    ].join('\n');
    if (JSON_OUT) process.stdout.write(JSON.stringify({ results, fsyncProbe: probe }, null, 2) + '\n');
    else process.stdout.write('\n' + md + '\n');
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const outFile = OUT || join(ROOT, 'bench/results', `cluster-${stamp}.json`);
    mkdirSync(dirname(outFile), { recursive: true });
    const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || '?';
    writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), command: cmd, gitHead: head, dist: DIST, pg: pgc.version, cores: cpus().length, fsyncProbe: probe, results, markdown: md, totalSeconds: (Date.now() - t0) / 1000 }, null, 2) + '\n');
    process.stdout.write(`\nJSON: ${relative(process.cwd(), outFile)} · total ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  } finally {
    await pgc?.close().catch(() => undefined);
    runCleanupsSync();
    unregisterWork();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`cluster bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
    runCleanupsSync();
    process.exit(1);
  },
);
