/**
 * The HTTP listener of `serve` (issue 14): /healthz and /readyz without login, `--http off` binds
 * nothing, a port in use stops serve at start (exit 1, the address named, the data directory
 * released), and a non-loopback address is served over HTTPS with probes for loopback clients only.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { killAll, mxOnly, runCli, startServeChild, tempDirs } from '../cli/child.js';
import { OWNER_FILE } from '../../src/store/index.js';
import { startConsole } from './helpers.js';
import { defaultConfig } from '../../src/config.js';
import { startServe } from '../../src/serve.js';
import { createHttpContext } from '../../src/http/context.js';
import { startHttp } from '../../src/http/server.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

/** TCP ports a process listens on: its socket fds matched against /proc/net/tcp{,6} rows in state LISTEN (0A). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // an fd closed while we looked
    }
  }
  const ports: number[] = [];
  for (const file of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && f[9] !== undefined && inodes.has(f[9])) ports.push(parseInt(f[1]?.split(':')[1] ?? '0', 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

test('/healthz and /readyz answer 200 without login (loopback client)', async () => {
  const s = await startConsole();
  try {
    const h = await fetch(`${s.base}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(((await h.json()) as { status: string }).status, 'ok');
    const r = await fetch(`${s.base}/readyz`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ready' });
    // The console port is one of serve's two listening sockets (mx and http), nothing more.
    const pid = s.serve.child.pid ?? 0;
    assert.deepEqual(listeningPorts(pid), [s.serve.port('mx'), s.serve.port('http')].sort((a, b) => a - b));
  } finally {
    await s.close();
  }
});

test('--http off: no listening http line and no HTTP socket (only mx listens)', async () => {
  const data = dirs.make('postseal-http-off-');
  const serve = await startServeChild(mxOnly(data));
  try {
    assert.deepEqual(serve.listening.map((l) => l.name), ['mx']);
    assert.doesNotMatch(serve.stdout(), /listening http/);
    assert.deepEqual(listeningPorts(serve.child.pid ?? 0), [serve.port('mx')]);
  } finally {
    serve.signal('SIGTERM');
    await serve.waitExit();
  }
});

test('HTTP port in use: serve stops at start with exit 1 naming the address, and releases the data directory', async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  const data = dirs.make('postseal-http-busy-');
  try {
    const r = await runCli(['serve', ...mxOnly(data, ['--http', `127.0.0.1:${port}`])]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`HTTP_LISTEN: http 127\\.0\\.0\\.1:${port}: address in use`));
    assert.match(r.stderr, /--http off/);
    assert.doesNotMatch(r.stdout, /listening/);
    assert.equal(existsSync(join(data, OWNER_FILE)), false, 'the owner lock is released');
    // The same data directory starts fine once the port is chosen freely.
    const ok = await startServeChild(mxOnly(data, ['--http', '127.0.0.1:0']), { listeners: 2 });
    ok.signal('SIGTERM');
    await ok.waitExit();
  } finally {
    blocker.close();
  }
});

/** A non-internal IPv4 address of this machine, or null. */
function ownAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

function httpsGet(host: string, port: number, path: string): Promise<{ status: number; body: string; protocol: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host, port, path, rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      let body = '';
      const protocol = (res.socket as TLSSocket).getProtocol() ?? '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, protocol }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

test('a non-loopback address is served over HTTPS (the self-signed certificate); probes refuse non-loopback clients with 403', async (t) => {
  const own = ownAddress();
  if (own === null) return t.skip('no non-loopback IPv4 address on this machine');
  const data = dirs.make('postseal-http-tls-');
  const serve = await startServeChild(mxOnly(data, ['--http', `${own}:0`]), { listeners: 2 });
  try {
    const line = serve.listening.find((l) => l.name === 'http');
    assert.equal(line?.tls, 'implicit');
    const port = serve.port('http');
    // Plain HTTP to it is not answered as HTTP.
    await assert.rejects(fetch(`http://${own}:${port}/healthz`));
    const r = await httpsGet(own, port, '/healthz');
    assert.match(r.protocol, /^TLSv1\.[23]$/);
    // The client is this machine's own non-loopback address: not a loopback client.
    assert.equal(r.status, 403);
    assert.equal((await httpsGet(own, port, '/readyz')).status, 403);
    // The API is reachable (and closed without credentials) over HTTPS.
    assert.equal((await httpsGet(own, port, '/api/v1/session')).status, 401);
  } finally {
    serve.signal('SIGTERM');
    await serve.waitExit();
  }
});

test('/readyz answers 503 with the reason once serve is stopping, and when the store no longer answers a read', async () => {
  const cfg = defaultConfig();
  cfg.dataDir = dirs.make('postseal-http-ready-');
  cfg.listeners.mx = { address: '127.0.0.1:0', tls: 'may', auth: 'none', maxConnections: 10 };
  cfg.listeners.submission = null;
  cfg.listeners.submissions = null;
  cfg.log.level = 'silent';
  const running = await startServe(cfg);
  const ctx = createHttpContext(cfg, running);
  const web = await startHttp(ctx, '127.0.0.1:0');
  const ready = (): Promise<Response> => fetch(`http://127.0.0.1:${web.port}/readyz`);
  try {
    assert.equal((await ready()).status, 200);
    ctx.stopping = true;
    const stopping = await ready();
    assert.equal(stopping.status, 503);
    assert.deepEqual(await stopping.json(), { status: 'not ready', reason: 'stopping' });
    ctx.stopping = false;
    await running.store.close();
    const broken = await ready();
    assert.equal(broken.status, 503);
    assert.match(((await broken.json()) as { reason: string }).reason, /^store: /);
    // Liveness is not readiness: the process still runs.
    assert.equal((await fetch(`http://127.0.0.1:${web.port}/healthz`)).status, 200);
  } finally {
    await web.close();
    await running.close(0);
  }
});
