/**
 * Our own MTA-STS policy host (src/http/mta-sts.ts, issue 14 item 5):
 * - the Hono sub-app answers only Host mta-sts.DOMAIN of a configured domain, text/plain, no
 *   redirect; plain HTTP is refused when the listener is not on loopback (RFC 8461 §3.3);
 * - served over real HTTPS (a test CA certificate for mta-sts.example.org), our own fetcher
 *   (policy/mta-sts.ts) takes it and parses it, and `postseal policy explain` — with the
 *   `_mta-sts` TXT that `postseal dns-records --config` printed published in the test DNS
 *   server — applies it (source mta-sts, mode enforce, the id of the TXT record);
 * - the id changes when the policy does;
 * - through a real `serve --http 127.0.0.1:0` (app.ts mounts it ahead of the login): the policy
 *   for Host mta-sts.postseal.test without login, 404 for another Host; a sender test page
 *   id that does not exist is 404, not a login redirect.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { defaultConfig } from '../../src/config.js';
import { mtaStsApp, mtaStsHosting } from '../../src/http/mta-sts.js';
import { mtaStsPolicy } from '../../src/auth/dns-records.js';
import { fetchStsPolicy, parseStsPolicy } from '../../src/policy/mta-sts.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { runCli, MAIN, ROOT } from '../cli/child.js';
import { startConsole } from './helpers.js';

const D = 'example.org';
let dir = '';
let caFile = '';
let caPem = '';
let server: https.Server;
let port = 0;
let dns: DnsServer | null = null;

function config(over: { mode?: 'testing' | 'enforce'; address?: string } = {}): ReturnType<typeof defaultConfig> {
  const cfg = defaultConfig();
  cfg.hostname = `mx1.${D}`;
  cfg.domains = [D, 'example.net'];
  cfg.http.address = over.address ?? '127.0.0.1:0';
  cfg.http.mtaSts = { enabled: true, mode: over.mode ?? 'enforce', maxAge: 86400, mx: [] };
  return cfg;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-mta-sts-host-'));
  const ca = await makeTestCa();
  caPem = ca.certPem;
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  const cert = await issueCert(ca, { names: [`mta-sts.${D}`] });
  const hosting = mtaStsHosting(config({ address: '0.0.0.0:443' }));
  assert.ok(hosting !== null);
  // Bound as a public listener would be: httpsOnly, served over TLS.
  assert.equal(hosting.httpsOnly, true);
  server = createAdaptorServer({ fetch: mtaStsApp(hosting).fetch, createServer: https.createServer, serverOptions: { cert: cert.certPem, key: cert.keyPem } }) as https.Server;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await dns?.close();
  await rm(dir, { recursive: true, force: true });
});

test('mta-sts host: Host mta-sts.DOMAIN of each local domain gets the policy as text/plain, others 404', async () => {
  const h = mtaStsHosting(config());
  assert.ok(h !== null);
  assert.equal(h.httpsOnly, false, 'loopback listener: plain HTTP allowed');
  const app = mtaStsApp(h);
  for (const host of [`mta-sts.${D}`, 'MTA-STS.example.net:8025']) {
    const r = await app.request('/.well-known/mta-sts.txt', { headers: { host } });
    assert.equal(r.status, 200, host);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    const body = await r.text();
    assert.equal(body, `version: STSv1\nmode: enforce\nmx: mx1.${D}\nmax_age: 86400\n`);
    assert.equal(r.headers.get('x-mta-sts-id'), mtaStsPolicy({ mode: 'enforce', maxAge: 86400, mx: [`mx1.${D}`] }).id);
  }
  for (const host of ['mta-sts.other.test', D, `mx1.${D}`, 'mta-sts.localhost', '']) {
    const r = await app.request('/.well-known/mta-sts.txt', { headers: host === '' ? {} : { host } });
    assert.equal(r.status, 404, `Host ${host}`);
  }
});

test('mta-sts host: off unless http.mtaSts.enabled', () => {
  const cfg = config();
  cfg.http.mtaSts.enabled = false;
  assert.equal(mtaStsHosting(cfg), null);
});

test('mta-sts host: a non-loopback listener refuses the policy over plain HTTP (RFC 8461 §3.3)', async () => {
  const h = mtaStsHosting(config({ address: '192.0.2.1:8025' }));
  assert.ok(h !== null);
  const r = await mtaStsApp(h).request('/.well-known/mta-sts.txt', { headers: { host: `mta-sts.${D}` } });
  assert.equal(r.status, 403);
  assert.doesNotMatch(await r.text(), /STSv1/);
  // The listener's address is read as startHttp reads it: plain HTTP only where the console is plain.
  for (const [address, httpsOnly] of [['127.0.0.1:0', false], ['[::1]:8025', false], ['localhost:8025', false], ['[2001:db8::1]:8025', true], ['0.0.0.0:8025', true]] as const) {
    assert.equal(mtaStsHosting(config({ address }))?.httpsOnly, httpsOnly, address);
  }
});

test('mta-sts host: the id is a hash of the policy text, it changes with mode, mx and max_age', () => {
  const base = mtaStsPolicy({ mode: 'testing', maxAge: 604800, mx: ['mx1.example.org'] });
  assert.match(base.id, /^[0-9a-f]{20}$/);
  assert.equal(mtaStsPolicy({ mode: 'testing', maxAge: 604800, mx: ['MX1.example.org.'] }).id, base.id);
  for (const other of [
    { mode: 'enforce' as const, maxAge: 604800, mx: ['mx1.example.org'] },
    { mode: 'testing' as const, maxAge: 604801, mx: ['mx1.example.org'] },
    { mode: 'testing' as const, maxAge: 604800, mx: ['mx1.example.org', 'mx2.example.org'] },
  ]) assert.notEqual(mtaStsPolicy(other).id, base.id);
});

test('mta-sts host over HTTPS: our own fetcher takes and parses it', async () => {
  const f = await fetchStsPolicy(D, { ca: [caPem], timeoutMs: 5000, endpoint: { host: '127.0.0.1', port } });
  assert.ok(f.ok, f.ok ? '' : f.error);
  const p = parseStsPolicy(f.value);
  assert.ok(p.ok);
  assert.deepEqual(p.value, { version: 'STSv1', mode: 'enforce', maxAge: 86400, mx: [`mx1.${D}`] });
});

test('dns-records --config prints the _mta-sts id of the served policy; policy explain applies the policy', async () => {
  const cfgFile = join(dir, 'serve.json');
  await writeFile(cfgFile, JSON.stringify({ hostname: `mx1.${D}`, domains: [D], dataDir: join(dir, 'data'), http: { mtaSts: { enabled: true, mode: 'enforce', maxAge: 86400 } } }));
  const r = await runCli(['dns-records', D, '--config', cfgFile]);
  assert.equal(r.code, 0, r.stderr);
  const m = /^_mta-sts\.example\.org\. IN TXT "(v=STSv1; id=([0-9a-f]{20}))"$/m.exec(r.stdout);
  assert.ok(m !== null, r.stdout);
  const served = mtaStsHosting(config());
  assert.equal(m[2], served?.id, 'the TXT id is the id of the policy serve serves');
  assert.match(r.stdout, new RegExp(`^${D}\\. IN MX 10 mx1\\.${D}\\.$`, 'm'));

  dns = await startDnsServer([
    { name: D, type: 'MX', preference: 10, exchange: `mx1.${D}` },
    { name: `mx1.${D}`, type: 'A', address: '127.0.0.1' },
    { name: `_mta-sts.${D}`, type: 'TXT', data: m[1] ?? '' },
  ]);
  // execFile, not spawnSync: the test DNS and HTTPS servers answer from this process's event loop.
  const x = await promisify(execFile)(process.execPath, ['--import', 'tsx', MAIN, 'policy', 'explain', D, '--json', '--dns', `127.0.0.1:${dns.port}`, '--ca', caFile, '--mta-sts-endpoint', `127.0.0.1:${port}`, '--no-dane'], { encoding: 'utf8', cwd: ROOT }).catch((e: { stdout: string; code: number }) => e);
  const e = JSON.parse(x.stdout) as { source: string; mtaSts: { from: string | null; id: string | null; mode: string | null; mx: string[]; failure: string | null }; hosts: Array<{ host: string; level: string; matchesPolicy: boolean }> };
  assert.equal(e.mtaSts.failure, null);
  assert.equal(e.mtaSts.from, 'fetched');
  assert.equal(e.mtaSts.id, m[2]);
  assert.equal(e.mtaSts.mode, 'enforce');
  assert.deepEqual(e.mtaSts.mx, [`mx1.${D}`]);
  assert.equal(e.source, 'mta-sts');
  assert.equal(e.hosts[0]?.host, `mx1.${D}`);
  assert.equal(e.hosts[0]?.level, 'verify');
  assert.equal(e.hosts[0]?.matchesPolicy, true);
});

/** GET with a chosen Host header (fetch does not let one set Host). */
function get(port: number, path: string, host: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('serve --http: the MTA-STS policy without login for Host mta-sts.DOMAIN; sender test ids are public, unknown ones 404', async () => {
  const cfgFile = join(dir, 'console.json');
  await writeFile(cfgFile, JSON.stringify({ http: { mtaSts: { enabled: true, mode: 'testing', maxAge: 604800 }, senderTest: { enabled: true } } }));
  const c = await startConsole({ extra: ['--config', cfgFile] });
  try {
    const port = Number(new URL(c.base).port);
    const r = await get(port, '/.well-known/mta-sts.txt', 'mta-sts.postseal.test');
    assert.equal(r.status, 200, r.body);
    assert.match(r.type, /^text\/plain/);
    assert.equal(r.body, mtaStsPolicy({ mode: 'testing', maxAge: 604800, mx: ['mail.postseal.test'] }).text);
    const printed = await runCli(['dns-records', 'postseal.test', '--config', cfgFile, '--hostname', 'mail.postseal.test']);
    assert.match(printed.stdout, new RegExp(`id=${mtaStsPolicy({ mode: 'testing', maxAge: 604800, mx: ['mail.postseal.test'] }).id}"`));
    assert.equal((await get(port, '/.well-known/mta-sts.txt', 'mta-sts.other.test')).status, 404);
    assert.equal((await get(port, '/sender-test/AAAAAAAAAAAAAAAAAAAAAA', '127.0.0.1')).status, 404);
  } finally {
    await c.close();
  }
});
