/**
 * `postseal reload` (issue 13 item 4): the CLI publishes the certificates signal on a PostgreSQL
 * store (store/pg/signals.ts; its own tests: test/cluster/signals.test.ts), and serve nodes on
 * that store reload their own certificate files when it is published — also after PostgreSQL
 * went away and came back. Against a private cluster (test/helpers/postgres.ts); serve and reload
 * run as real CLI children.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { openPgSignals, type PgSignals, type SignalEvent } from '../../src/store/pg/signals.js';
import { sql, usePostgres } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { killAll, pemFingerprint, peerFingerprint, runCli, startServeChild, startTlsSession, tempDirs, type ServeChild } from '../cli/child.js';
import { issueCert, makeTestCa, writeKeyPair, type PemKeyPair, type TestCa } from '../helpers/certs.js';

const opened: PgSignals[] = [];
const dirs = tempDirs();
const { skip, cluster } = usePostgres({
  fsync: false,
  closeFirst: async () => {
    killAll();
    for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  },
});
after(() => dirs.cleanup());

async function open(url: string, from?: string): Promise<PgSignals> {
  const s = await openPgSignals(url, { connectTimeoutMs: 2000, from });
  opened.push(s);
  return s;
}

test('postseal reload --store URL publishes; POSTSEAL_STORE does the same; a SQLite store is told to use SIGHUP (exit 2)', { skip }, async () => {
  const url = await cluster.createDatabase('cli');
  const node = await open(url);
  const seen: SignalEvent[] = [];
  node.subscribe('certificates', (e) => seen.push(e));
  const r = await runCli(['reload', '--store', url, '--detail', 'renewed']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /certificates signal 1 published/);
  await until('the node heard the CLI', () => seen.length === 1);
  assert.equal(seen[0]?.detail, 'renewed');

  process.env.POSTSEAL_STORE = url;
  try {
    const viaEnv = await runCli(['reload']);
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /certificates signal 2 published/);
  } finally {
    delete process.env.POSTSEAL_STORE;
  }
  await until('the node heard the second one', () => seen.length === 2);

  const data = dirs.make();
  const sqlite = await runCli(['reload', '--data', data]);
  assert.equal(sqlite.code, 2);
  assert.match(sqlite.stderr, /single-node store: send its serve SIGHUP/);
  assert.match(sqlite.stderr, /serve\.pid/);
  // A password in the URL is refused before anything is sent.
  const withPassword = await runCli(['reload', '--store', url.replace('postgres@', 'postgres:secret@')]);
  assert.notEqual(withPassword.code, 0);
  assert.doesNotMatch(withPassword.stderr, /secret/);
  assert.equal(seen.length, 2);
});

// --- serve nodes ------------------------------------------------------------------------------

interface Node {
  name: string;
  base: string;
  serve: ServeChild;
}

/**
 * The node's certificate is base/live/{cert,key}.pem where `live` is a symlink to a version
 * directory. Swapping the symlink (rename of a new link over it) changes what the path names
 * without any event in the directory the file watcher follows (it watches `live`, i.e. the old
 * version directory): only a reload signal can make the node see the new pair.
 */
async function setVersion(base: string, version: string, pair: PemKeyPair): Promise<void> {
  await writeKeyPair(join(base, version), pair);
  symlinkSync(version, join(base, 'live.tmp'));
  renameSync(join(base, 'live.tmp'), join(base, 'live'));
}

async function startNode(name: string, url: string, pair: PemKeyPair): Promise<Node> {
  const base = dirs.make(`postseal-reload-${name}-`);
  await setVersion(base, 'v1', pair);
  const serve = await startServeChild([
    '--store', url,
    '--data', join(base, 'data'),
    '--cert', join(base, 'live', 'cert.pem'),
    '--key', join(base, 'live', 'key.pem'),
    '--mx', '127.0.0.1:0',
    '--submission', 'off',
    '--submissions', 'off',
    '--no-auth-verify',
    '--log-level', 'info',
  ], { timeoutMs: 60_000 });
  return { name, base, serve };
}

async function servedFingerprint(node: Node): Promise<string> {
  const { c, socket } = await startTlsSession(node.serve.port('mx'));
  try {
    return peerFingerprint(socket);
  } finally {
    c.close();
  }
}

/** Index in the node's logs of the first line matching pred after index `from` (-1: none yet). */
function logIndex(node: Node, pred: (l: Record<string, unknown>) => boolean, from = -1): number {
  return node.serve.logs().findIndex((l, i) => i > from && pred(l));
}

const isStoreSignal = (generation: number) => (l: Record<string, unknown>): boolean => l.event === 'signal' && l.signal === 'store' && l.generation === generation;
const isReload = (fp: string) => (l: Record<string, unknown>): boolean => l.event === 'tls-reload' && l.fingerprint256 === fp && l.changed === true;

test('postseal reload: every serve on the store reloads its own certificate files; after PostgreSQL restarts, a node still hears the next one', { skip }, async () => {
  const url = await cluster.createDatabase('serve');
  const ca: TestCa = await makeTestCa();
  const pairs = new Map<string, PemKeyPair[]>();
  for (const name of ['a', 'b']) pairs.set(name, await Promise.all([1, 2, 3].map(() => issueCert(ca, { names: ['localhost'] }))));
  const pair = (name: string, v: number): PemKeyPair => {
    const p = pairs.get(name)?.[v - 1];
    assert.ok(p !== undefined);
    return p;
  };
  const nodes = await Promise.all(['a', 'b'].map((name) => startNode(name, url, pair(name, 1))));
  for (const n of nodes) assert.equal(await servedFingerprint(n), pemFingerprint(pair(n.name, 1).certPem), `node ${n.name} serves v1`);

  // Renewed on every node's disk, invisibly to the watchers; then one command tells them all.
  for (const n of nodes) await setVersion(n.base, 'v2', pair(n.name, 2));
  const r = await runCli(['reload', '--store', url, '--detail', 'renewed v2']);
  assert.equal(r.code, 0, r.stderr);
  for (const n of nodes) {
    const fp2 = pemFingerprint(pair(n.name, 2).certPem);
    await n.serve.waitForLog(isReload(fp2), 20_000);
    // The signal caused it: the store signal is logged before the reload that changed the pair
    // (a watcher-made reload would come first, with no signal before it).
    const sig = logIndex(n, isStoreSignal(1));
    assert.ok(sig >= 0, `node ${n.name}: no store signal logged`);
    assert.ok(logIndex(n, isReload(fp2)) > sig, `node ${n.name}: the reload came before the signal`);
    assert.equal(n.serve.logs()[sig]?.detail, 'renewed v2');
    assert.equal(await servedFingerprint(n), fp2, `node ${n.name} serves v2`);
  }

  // PostgreSQL goes away under the running nodes and comes back; the next renewal still reaches
  // them (a NOTIFY if they are listening again, else the generation read when they reconnect).
  await cluster.stop('fast');
  for (const n of nodes) await n.serve.waitForLog((l) => l.event === 'signals' && l.state === 'lost', 20_000);
  for (const n of nodes) await setVersion(n.base, 'v3', pair(n.name, 3));
  await cluster.start();
  const again = await runCli(['reload', '--store', url]);
  assert.equal(again.code, 0, again.stderr);
  for (const n of nodes) {
    const fp3 = pemFingerprint(pair(n.name, 3).certPem);
    await n.serve.waitForLog(isReload(fp3), 30_000);
    assert.ok(logIndex(n, isStoreSignal(2)) >= 0, `node ${n.name}: no store signal 2 logged`);
    assert.equal(await servedFingerprint(n), fp3, `node ${n.name} serves v3`);
    assert.ok(logIndex(n, (l) => l.event === 'signals' && l.state === 'back') >= 0, `node ${n.name}: signal channel not back`);
  }
  for (const n of nodes) {
    n.serve.signal('SIGTERM');
    assert.equal((await n.serve.waitExit()).code, 0);
  }
});
