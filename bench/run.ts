/**
 * `npm run bench`: postseal (durable and discard) against Postfix, smtp-server and aiosmtpd,
 * side by side in one run. See bench/README.md.
 *
 * Each (scenario, peer) gets a fresh peer on a fresh 127.0.0.1 port, pinned to the server core;
 * the load generator runs as a child pinned to the other core. Server CPU and memory are read
 * from /proc for the peer's whole process tree. Everything started is stopped, every temp dir
 * removed, on success, failure and Ctrl-C alike.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLoadgen } from './lib/loadgen-proc.js';
import { opensslSpeed, type SpeedResult } from './lib/opensslspeed.js';
import { PEER_NAMES, startPeer, unavailable, type PeerEnv, type PeerName, type RunningPeer } from './lib/peers.js';
import { makeBenchCert, type CertType } from './lib/pki.js';
import { cpuCount, hasCommand, installExitHandlers, machineCpu, onCleanup, runCleanupsSync, sampleTree } from './lib/proc.js';
import { ratioTable, ratios, scenarioTable, type RunResult } from './lib/report.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['handshake', 'throughput', 'bulk', 'idle'] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Options {
  scenarios: Scenario[];
  peers: PeerName[];
  durationS: number;
  count: number;
  quick: boolean;
  pipelining: boolean;
  conns: number;
  idle: number;
  certType: CertType;
  profileDir: string | null;
  out: string | null;
  speedSeconds: number;
  warmupS: number;
  rounds: number;
  /** A compiled postseal to measure as is (its dist/), instead of building the working tree. */
  dist: string | null;
}

function usage(): never {
  process.stdout.write(`usage: npm run bench -- [options]
  --scenario LIST   ${SCENARIOS.join(',')} (default: all); or lmtp alone (bench/lmtp.ts, its own options),
                    or cluster alone (bench/cluster.ts: 1-3 nodes on one PostgreSQL, its own options)
  --peers LIST      ${PEER_NAMES.join(',')} (default: all)
  --duration S      seconds per (scenario, peer) run (default 15; --quick: 1)
  --count N         at most N messages per run (default 500000; --quick: 20000)
  --conns C         concurrent connections (default 50)
  --idle N          idle connections held in the idle scenario (default 1000; --quick: 200)
  --pipelining      MAIL+RCPT+DATA in one write
  --cert-type T     ec (default, ECDSA P-256) or rsa (RSA-2048)
  --rounds R        run every (scenario, peer) R times, peers interleaved; report the median (default 1)
  --quick           short smoke run (< 2 min)
  --profile DIR     run postseal peers under node --cpu-prof, profiles into DIR
  --out FILE        JSON result path (default bench/results/<timestamp>.json)
  --dist DIR        measure this compiled postseal (a dist/ directory) instead of building the tree
`);
  process.exit(0);
}

function parseOptions(argv: string[]): Options {
  const o: Options = { scenarios: [...SCENARIOS], peers: [...PEER_NAMES], durationS: 15, count: 500_000, quick: false, pipelining: false, conns: 50, idle: 1000, certType: 'ec', profileDir: null, out: null, speedSeconds: 2, warmupS: 1, rounds: 1, dist: null };
  let duration: number | null = null;
  let count: number | null = null;
  let idleGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i] as string;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const list = <T extends string>(allowed: readonly T[]): T[] => {
      const items = v().split(',').map((s) => s.trim()).filter(Boolean);
      for (const it of items) if (!(allowed as readonly string[]).includes(it)) throw new Error(`${k}: unknown ${it} (allowed: ${allowed.join(', ')})`);
      return items as T[];
    };
    switch (k) {
      case '--scenario':
      case '--scenarios': o.scenarios = list(SCENARIOS); break;
      case '--peers':
      case '--peer': o.peers = list(PEER_NAMES); break;
      case '--duration': duration = Number(v()); break;
      case '--count': count = Number(v()); break;
      case '--conns': o.conns = Number(v()); break;
      case '--idle': o.idle = Number(v()); idleGiven = true; break;
      case '--pipelining': o.pipelining = true; break;
      case '--rounds': o.rounds = Number(v()); break;
      case '--quick': o.quick = true; break;
      case '--cert-type': { const t = v(); if (t !== 'ec' && t !== 'rsa') throw new Error('--cert-type: ec|rsa'); o.certType = t; break; }
      case '--profile': o.profileDir = v(); break;
      case '--out': o.out = v(); break;
      case '--dist': o.dist = v(); break;
      case '-h':
      case '--help': usage(); break;
      default: throw new Error(`unknown option ${k} (try --help)`);
    }
  }
  if (o.quick) {
    o.durationS = 1;
    o.count = 20_000;
    o.speedSeconds = 1;
    o.warmupS = 0.2;
    if (!idleGiven) o.idle = 200;
  }
  if (duration !== null) o.durationS = duration;
  if (count !== null) o.count = count;
  if (!(o.durationS > 0 && o.durationS <= 600)) throw new Error('--duration must be in (0, 600]');
  if (!(o.count > 0)) throw new Error('--count must be > 0');
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 9)) throw new Error('--rounds must be in 1..9');
  if (!(o.idle > 0 && o.idle <= 5000)) throw new Error('--idle must be in 1..5000');
  return o;
}

// ---------------------------------------------------------------------------------------------

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestMtime(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

let staleNote: string | null = null;

/**
 * Returns the dist/ directory to measure, or throws. The working tree's dist/ is rebuilt when it
 * is missing or older than src/. Others may be mid-edit in src/ (tsc then fails and still emits a
 * half-consistent dist/): in that case the committed HEAD is built into a private temp dir and
 * measured instead, and the output says so.
 */
function ensureBuilt(work: string): string {
  const dist = join(ROOT, 'dist');
  const main = join(dist, 'cli/main.js');
  const loads = (d: string): boolean => spawnSync(process.execPath, [join(d, 'cli/main.js'), 'serve', '--help'], { stdio: 'ignore', timeout: 30_000 }).status === 0;
  const stale = !existsSync(main) || statSync(main).mtimeMs < newestMtime(join(ROOT, 'src'));
  let why = 'dist/cli/main.js does not load';
  if (!stale && loads(dist)) return dist;
  if (stale) {
    process.stdout.write('dist/ is missing or older than src/: npm run build …\n');
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    if (r.status === 0 && loads(dist)) return dist;
    why = (r.stdout + r.stderr).split('\n').filter((l) => /error/i.test(l)).slice(0, 2).join(' / ') || why;
  }
  process.stdout.write(`WARNING: the working tree does not build (${why}); building the committed HEAD instead …\n`);
  const head = join(work, 'head');
  mkdirSync(head, { recursive: true });
  const tar = spawnSync('sh', ['-c', `git -C "${ROOT}" archive HEAD src tsconfig.json package.json | tar -x -C "${head}"`], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`cannot export HEAD: ${tar.stderr}`);
  symlinkSync(join(ROOT, 'node_modules'), join(head, 'node_modules'));
  const b = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(head, 'tsconfig.json')], { cwd: head, encoding: 'utf8', timeout: 300_000 });
  if (b.status !== 0) throw new Error(`neither the working tree nor HEAD builds: ${(b.stdout + b.stderr).slice(0, 500)}`);
  staleNote = `working tree did not build (${why}); measured git HEAD ${gitHead()} built in a temp dir`;
  return join(head, 'dist');
}

interface Spec {
  msgsPerConn: number;
  size: number;
  unit: RunResult['unit'];
}
const SPECS: Record<Exclude<Scenario, 'idle'>, Spec> = {
  handshake: { msgsPerConn: 1, size: 2048, unit: 'session' },
  throughput: { msgsPerConn: 0, size: 2048, unit: 'message' },
  bulk: { msgsPerConn: 0, size: 1024 * 1024, unit: 'MiB' },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function runLoad(sc: Exclude<Scenario, 'idle'>, peer: RunningPeer, o: Options, genCore: number | null): Promise<RunResult> {
  const spec = SPECS[sc];
  const args = ['--port', String(peer.port), '--conns', String(o.conns), '--msgs-per-conn', String(spec.msgsPerConn), '--size', String(spec.size), '--count', String(o.count), '--duration', String(o.durationS), '--warmup', String(o.warmupS)];
  if (o.pipelining) args.push('--pipelining');
  const lg = startLoadgen(args, genCore);
  try {
    await lg.next('ready', 60_000 + o.warmupS * 1000);
    const c0 = peer.db ? await peer.db.pg.counters(peer.db.name) : null;
    const before = sampleTree(peer.pid);
    const db0 = peer.db ? sampleTree(peer.db.pid) : null;
    const m0 = machineCpu();
    lg.send('go');
    const end = await lg.next('end', o.durationS * 1000 + 90_000);
    const after = sampleTree(peer.pid);
    const db1 = peer.db ? sampleTree(peer.db.pid) : null;
    const m1 = machineCpu();
    await lg.exited;
    const c1 = peer.db ? await peer.db.pg.counters(peer.db.name) : null;
    const wallMs = end.wallMs as number;
    const messages = end.messages as number;
    const bytes = end.bytes as number;
    const nodeCpuMs = after.cpuMs - before.cpuMs;
    const dbCpuMs = db0 && db1 ? db1.cpuMs - db0.cpuMs : 0;
    // Server CPU = the node's tree + the database server's tree (PostgreSQL's processes are not children of the node).
    const cpuMs = nodeCpuMs + dbCpuMs;
    const windowMs = after.at - before.at;
    const units = spec.unit === 'session' ? (end.sessions as number) : spec.unit === 'MiB' ? bytes / 1048576 : messages;
    const db =
      c0 && c1 && db0 && db1
        ? {
            dbCpuMs,
            dbCpuMsPerUnit: units > 0 ? dbCpuMs / units : NaN,
            nodeCpuMsPerUnit: units > 0 ? nodeCpuMs / units : NaN,
            // Exact counters (see bench/lib/pg.ts): write transactions and WAL bytes.
            dbCommits: c1.nextXid - c0.nextXid,
            dbWalBytesPerMsg: messages > 0 ? (c1.walLsn - c0.walLsn) / messages : NaN,
          }
        : {};
    return {
      ...db,
      scenario: sc,
      peer: peer.name,
      status: 'ok',
      notes: peer.notes,
      wallMs,
      messages,
      sessions: end.sessions as number,
      handshakes: end.handshakes as number,
      errors: end.errors as number,
      errorSamples: end.errorSamples as Record<string, number>,
      msgsPerSec: (messages / wallMs) * 1000,
      mibPerSec: (bytes / 1048576 / wallMs) * 1000,
      handshakesPerSec: ((end.handshakes as number) / wallMs) * 1000,
      latencyMs: end.latencyMs as { p50: number; p99: number },
      sessionMs: end.sessionMs as { p50: number; p99: number },
      serverCpuMs: cpuMs,
      serverCpuPct: (cpuMs / windowMs) * 100,
      serverCpuMsPerUnit: units > 0 ? cpuMs / units : NaN,
      unit: spec.unit,
      serverProcesses: after.processes,
      loadgenCpuPct: end.loadgenCpuPct as number,
      generatorBound: (end.loadgenCpuPct as number) > 90,
      // Everything else that ran on the machine meanwhile (other people's tests, the host):
      // in % of one core; the bench's own two processes are subtracted.
      otherLoadPct: Math.max(0, ((m1.busyMs - m0.busyMs - cpuMs - (end.loadgenCpuMs as number)) / windowMs) * 100),
      stealPct: ((m1.stealMs - m0.stealMs) / windowMs) * 100,
    };
  } finally {
    lg.stop();
  }
}

async function runIdle(peer: RunningPeer, o: Options, genCore: number | null): Promise<RunResult> {
  const lg = startLoadgen(['--mode', 'idle', '--port', String(peer.port), '--conns', String(o.conns), '--idle', String(o.idle), '--warmup', String(o.warmupS)], genCore);
  try {
    await lg.next('ready', 60_000 + o.warmupS * 1000);
    await sleep(o.quick ? 200 : 500);
    const before = sampleTree(peer.pid, true);
    lg.send('go');
    const held = await lg.next('holding', 180_000);
    const opened = sampleTree(peer.pid, false);
    await sleep(o.quick ? 500 : 1500); // let the peer settle (GC, lazily freed buffers)
    const after = sampleTree(peer.pid, true);
    lg.send('release');
    await lg.next('end', 30_000).catch(() => null);
    const open = held.open as number;
    return {
      scenario: 'idle',
      peer: peer.name,
      status: open > 0 ? 'ok' : 'failed',
      ...(open > 0 ? {} : { reason: `no connection opened: ${JSON.stringify(held.errorSamples)}` }),
      notes: peer.notes,
      errors: held.errors as number,
      errorSamples: held.errorSamples as Record<string, number>,
      handshakes: held.handshakes as number,
      serverProcesses: after.processes,
      unit: 'connection',
      idle: {
        open,
        rssKbPerConn: open ? (after.rssKb - before.rssKb) / open : NaN,
        pssKbPerConn: open ? (after.pssKb - before.pssKb) / open : NaN,
        rssBeforeKb: before.rssKb,
        rssAfterKb: after.rssKb,
        pssBeforeKb: before.pssKb,
        pssAfterKb: after.pssKb,
        openMs: held.wallMs as number,
        serverCpuMsPerHandshake: open ? (opened.cpuMs - before.cpuMs) / open : NaN,
      },
    };
  } finally {
    lg.stop();
  }
}

/** The run with the median cost (server CPU per unit; idle: PSS per connection). */
function median(runs: RunResult[]): RunResult | null {
  const ok = runs.filter((r) => r.status === 'ok');
  if (!ok.length) return runs[runs.length - 1] ?? null;
  const cost = (r: RunResult): number => (r.idle ? r.idle.pssKbPerConn : (r.serverCpuMsPerUnit ?? Infinity));
  const sorted = [...ok].sort((a, b) => cost(a) - cost(b));
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? null;
}

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  } catch {
    return '?';
  }
}

function machineInfo(): Record<string, unknown> {
  const c = cpus();
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-r']).toString().trim();
  } catch {
    /* */
  }
  return { cpuModel: c[0]?.model ?? '?', cores: cpuCount(), node: process.version, kernel };
}

/**
 * `--scenario lmtp` (issue 12: mx receipt → LMTP delivery at Dovecot) is its own script with its
 * own options (bench/lmtp.ts: --messages, --conns, --size, --json): run it alone, as a child.
 */
function runLmtpScenario(argv: string[]): number | null {
  const i = argv.findIndex((a) => a === '--scenario' || a === '--scenarios');
  if (i < 0 || argv[i + 1] !== 'lmtp') return null;
  const rest = [...argv.slice(0, i), ...argv.slice(i + 2)];
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lmtp.ts'), ...rest], { cwd: ROOT, stdio: 'inherit' });
  return r.status ?? 1;
}

/**
 * `--scenario cluster` (issue 13: 1, 2, 3 serve nodes on one PostgreSQL) is its own script too
 * (bench/cluster.ts: --nodes, --duration, --conns, --pools, --no-async, --quick, --json): the
 * harness builds dist/ as for the other postseal peers and runs it alone, as a child.
 */
function runClusterScenario(argv: string[]): number | null {
  const i = argv.findIndex((a) => a === '--scenario' || a === '--scenarios');
  if (i < 0 || argv[i + 1] !== 'cluster') return null;
  const rest = [...argv.slice(0, i), ...argv.slice(i + 2)];
  installExitHandlers();
  const work = mkdtempSync(join(tmpdir(), 'postseal-bench-'));
  const unregister = onCleanup(() => rmSync(work, { recursive: true, force: true }));
  try {
    const given = rest.indexOf('--dist');
    const dist = given >= 0 ? (rest.splice(given, 2)[1] as string) : ensureBuilt(work);
    if (staleNote) process.stdout.write(`note: ${staleNote}\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/cluster.ts'), ...rest, '--dist', dist], { cwd: ROOT, stdio: 'inherit' });
    return r.status ?? 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
    unregister();
  }
}

async function main(): Promise<void> {
  const lmtp = runLmtpScenario(process.argv.slice(2));
  if (lmtp !== null) process.exit(lmtp);
  const cluster = runClusterScenario(process.argv.slice(2));
  if (cluster !== null) process.exit(cluster);
  installExitHandlers();
  const o = parseOptions(process.argv.slice(2));
  const t0 = Date.now();
  const cores = cpuCount();
  const pin = cores >= 2 && hasCommand('taskset');
  const genCore = pin ? 0 : null;
  const serverCore = pin ? 1 : null;
  if (pin) execFileSync('taskset', ['-a', '-pc', '0', String(process.pid)], { stdio: 'ignore' }); // the harness stays off the server core
  if (!hasCommand('openssl')) throw new Error('openssl is required (apt-get install -y openssl)');
  process.chdir(ROOT);

  const work = mkdtempSync(join(tmpdir(), 'postseal-bench-'));
  const unregisterWork = onCleanup(() => rmSync(work, { recursive: true, force: true }));
  try {
    const { certFile, keyFile } = makeBenchCert(work, o.certType);
    const nodeFlags: string[] = [];
    if (o.profileDir) {
      mkdirSync(o.profileDir, { recursive: true });
      nodeFlags.push('--cpu-prof', '--cpu-prof-dir', o.profileDir);
    }
    const env: PeerEnv = { root: ROOT, dist: join(ROOT, 'dist'), certFile, keyFile, serverCore, nodeFlags };

    process.stdout.write(`postseal bench: scenarios ${o.scenarios.join(',')} · peers ${o.peers.join(',')} · C=${o.conns} · ${o.durationS}s/run, ≤${o.count} msgs/run${o.pipelining ? ' · PIPELINING' : ''} · cert ${o.certType === 'ec' ? 'ECDSA P-256' : 'RSA-2048'} · TLS 1.3 X25519\n`);
    process.stdout.write(pin ? 'pinning: server core 1, load generator core 0 (taskset)\n' : `pinning: off (${cores} core(s) or no taskset): numbers are not per-core\n`);

    // Which peers can run here.
    const skipped = new Map<PeerName, string>();
    for (const p of o.peers) {
      const why = unavailable(p);
      if (why) skipped.set(p, why);
    }
    if (o.peers.some((p) => p.startsWith('postseal'))) {
      try {
        env.dist = o.dist ?? ensureBuilt(work);
        if (o.dist) staleNote = `measured the given build ${o.dist} (--dist)`;
      } catch (e) {
        for (const p of o.peers) if (p.startsWith('postseal')) skipped.set(p, e instanceof Error ? e.message : String(e));
      }
    }
    for (const [p, why] of skipped) process.stdout.write(`skipped ${p}: ${why}\n`);

    process.stdout.write(`openssl speed (${o.speedSeconds}s per primitive, server core) …\n`);
    const speed: SpeedResult = opensslSpeed(o.speedSeconds, o.certType, serverCore);
    process.stdout.write(speed.raw + '\n');
    process.stdout.write(`→ asymmetric-crypto ceiling ≈ ${speed.handshakeCeilingPerSec ? Math.round(speed.handshakeCeilingPerSec).toLocaleString('en-US') : '?'} full TLS 1.3 handshakes/s per core (server: X25519 keygen+derive, one ${o.certType === 'ec' ? 'ECDSA P-256' : 'RSA-2048'} signature)\n\n`);

    const results: RunResult[] = [];
    const allRuns: RunResult[] = [];
    const notes = new Map<string, string[]>();
    for (const sc of o.scenarios) {
      const perPeer = new Map<PeerName, RunResult[]>();
      for (let round = 0; round < o.rounds; round++) {
        // Interleaved and rotated, so a slow minute of a noisy host does not land on one peer.
        const order = o.peers.map((_, i) => o.peers[(i + round) % o.peers.length] as PeerName);
        for (const p of order) {
          const why = skipped.get(p);
          if (why) {
            if (round === 0) perPeer.set(p, [{ scenario: sc, peer: p, status: 'skipped', reason: why }]);
            continue;
          }
          process.stdout.write(`[${sc}${o.rounds > 1 ? ` ${round + 1}/${o.rounds}` : ''}] ${p} … `);
          let peer: RunningPeer | null = null;
          let r: RunResult;
          const t1 = Date.now();
          try {
            peer = await startPeer(p, env);
            notes.set(p, peer.notes);
            r = sc === 'idle' ? await runIdle(peer, o, genCore) : await runLoad(sc, peer, o, genCore);
            process.stdout.write(
              sc === 'idle'
                ? `${r.idle?.open} open, ${r.idle?.rssKbPerConn.toFixed(1)} KB RSS/conn, ${r.idle?.pssKbPerConn.toFixed(1)} KB PSS/conn, ${r.errors} errors (${((Date.now() - t1) / 1000).toFixed(1)} s)\n`
                : `${r.msgsPerSec?.toFixed(0)} msgs/s, server ${r.serverCpuMsPerUnit?.toFixed(3)} ms/${r.unit}${r.dbCpuMsPerUnit !== undefined ? ` (node ${r.nodeCpuMsPerUnit?.toFixed(3)} + PostgreSQL ${r.dbCpuMsPerUnit.toFixed(3)}; ${r.dbCommits} write transactions)` : ''}, generator ${r.loadgenCpuPct?.toFixed(0)} % CPU, other load ${r.otherLoadPct?.toFixed(0)} %, ${r.errors} errors (${((Date.now() - t1) / 1000).toFixed(1)} s)\n`,
            );
          } catch (e) {
            const msg = e instanceof Error ? e.message : String(e);
            r = { scenario: sc, peer: p, status: 'failed', reason: msg.split('\n')[0]?.slice(0, 300) ?? msg };
            process.stdout.write(`FAILED: ${msg.slice(0, 1500)}\n`);
          } finally {
            await peer?.stop().catch(() => undefined);
          }
          allRuns.push({ ...r, round } as RunResult);
          perPeer.set(p, [...(perPeer.get(p) ?? []), r]);
        }
      }
      for (const p of o.peers) results.push(median(perPeer.get(p) ?? []) ?? { scenario: sc, peer: p, status: 'failed', reason: 'no run' });
    }

    // Report.
    const lines: string[] = [];
    const cmd = `npm run bench --${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
    lines.push(`Command: \`${cmd}\` · C=${o.conns} · ${o.durationS} s per run (≤ ${o.count} msgs) · ${o.pipelining ? 'PIPELINING' : 'lock-step (no pipelining)'} · TLS 1.3, X25519, ${o.certType === 'ec' ? 'ECDSA P-256' : 'RSA-2048'} certificate · ${pin ? 'server on core 1, generator on core 0' : 'not pinned'}`);
    lines.push('');
    for (const sc of o.scenarios) {
      lines.push(`### ${sc}`);
      lines.push('');
      lines.push(scenarioTable(sc, results.filter((r) => r.scenario === sc)));
      lines.push('');
    }
    lines.push('### postseal / peer (same run)');
    lines.push('');
    const rs = ratios(results);
    lines.push(ratioTable(rs));
    lines.push('');
    lines.push(`openssl speed (${speed.version}, ${o.speedSeconds} s, server core): X25519 ${speed.x25519PerSec ?? '?'} op/s · ECDSA P-256 sign ${speed.ecdsaP256SignPerSec ?? '?'} /s, verify ${speed.ecdsaP256VerifyPerSec ?? '?'} /s${speed.rsa2048SignPerSec ? ` · RSA-2048 sign ${speed.rsa2048SignPerSec} /s` : ''} → crypto-only ceiling ≈ ${speed.handshakeCeilingPerSec ? Math.round(speed.handshakeCeilingPerSec).toLocaleString('en-US') : '?'} handshakes/s per core.`);
    lines.push('');
    lines.push('Peer notes:');
    for (const [p, n] of notes) lines.push(`- ${p}: ${n.join('; ')}`);
    for (const [p, why] of skipped) lines.push(`- ${p}: SKIPPED — ${why}`);
    if (staleNote) lines.push(`- postseal: ${staleNote}`);
    lines.push('- ⚠ = load generator above 90 % of its core: that row is generator-bound; compare server CPU per unit, not msgs/s.');
    lines.push(`- other load % = CPU used meanwhile by everything else on this ${cores}-core machine (in % of one core, bench processes subtracted); when it is high, msgs/s and latency are perturbed, server CPU per unit much less.`);
    const md = lines.join('\n');
    process.stdout.write('\n' + md + '\n');

    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const outFile = o.out ?? join(ROOT, 'bench/results', `${stamp}.json`);
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(
      outFile,
      JSON.stringify({ date: new Date().toISOString(), command: cmd, gitHead: gitHead(), distNote: staleNote, options: o, machine: machineInfo(), pinned: pin, openssl: speed, results, allRuns, ratios: rs, notes: Object.fromEntries(notes), skipped: Object.fromEntries(skipped), markdown: md, totalSeconds: (Date.now() - t0) / 1000 }, null, 2) + '\n',
    );
    process.stdout.write(`\nJSON: ${relative(process.cwd(), outFile)} · total ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  } finally {
    runCleanupsSync();
    unregisterWork();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    runCleanupsSync();
    process.exit(1);
  },
);
