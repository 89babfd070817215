/**
 * The web checker's SSRF guard (src/http/api/ssrf.ts, api/checks.ts):
 * - the address table: private, loopback, link-local, unique-local, CGNAT, multicast, unspecified,
 *   reserved and documentation ranges refused, and IPv6 forms embedding them; global unicast allowed;
 * - a real `serve --http 127.0.0.1:0` WITHOUT --http-check-private, resolving through a test DNS
 *   server (--dns): loopback/private literals, names whose A or AAAA is private (every address
 *   counts), and domains whose MX hosts are private are answered 422 CHECK_TARGET_REFUSED, and
 *   nothing connects to a canary listener on 127.0.0.1;
 * - checkDomain's refuseAddress hook (the guard at connect time, against DNS rebinding between
 *   our lookup and the checker's): a refused MX address is never connected to.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { killAll, mxOnly, runCli, startServeChild, type ServeChild } from '../cli/child.js';
import { privateAddressReason } from '../../src/http/api/ssrf.js';
import { checkDomain } from '../../src/check/domain.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { checksApi } from '../../src/http/api/checks.js';
import { checkHost } from '../../src/check/host.js';
import { defaultConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { HttpContext } from '../../src/http/context.js';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  killAll();
});

test('privateAddressReason: non-global addresses refused, global unicast allowed', () => {
  const refused = [
    '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '100.127.255.255', '0.0.0.0', '0.1.2.3', '224.0.0.1', '239.255.255.250', '255.255.255.255', '240.0.0.1', '192.0.2.1', '198.18.0.1',
    '::', '::1', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '::ffff:7f00:1',
    '::127.0.0.1', '64:ff9b::a00:1', '2002:7f00:1::1', '2001:db8::1', 'fec0::1', 'localhost', 'not-an-ip',
  ];
  for (const a of refused) assert.notEqual(privateAddressReason(a), null, `${a} must be refused`);
  const allowed = ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];
  for (const a of allowed) assert.equal(privateAddressReason(a), null, `${a} must be allowed`);
  assert.match(privateAddressReason('169.254.169.254') ?? '', /link-local/);
  assert.match(privateAddressReason('100.64.0.1') ?? '', /CGNAT/);
  assert.match(privateAddressReason('fd00::1') ?? '', /unique-local/);
});

let dns: DnsServer;
let canary: Server;
let canaryConnections = 0;
let serve: ServeChild;
let base = '';
let token = '';

before(async () => {
  canary = createServer((s) => {
    canaryConnections++;
    s.destroy();
  });
  await new Promise<void>((r) => canary.listen(0, '127.0.0.1', r));
  cleanups.push(() => void canary.close());
  dns = await startDnsServer([
    { name: 'loop.test', type: 'A', address: '127.0.0.1' },
    { name: 'internal.test', type: 'A', address: '10.0.0.5' },
    // One public A and a loopback AAAA: every address counts, not only the first.
    { name: 'mixed.test', type: 'A', address: '93.184.216.34' },
    { name: 'mixed.test', type: 'AAAA', address: '::1' },
    { name: 'metadata.test', type: 'A', address: '169.254.169.254' },
    { name: 'victim.test', type: 'MX', preference: 10, exchange: 'mx.victim.test' },
    { name: 'mx.victim.test', type: 'A', address: '127.0.0.1' },
    { name: 'nx-ish.test', type: 'TXT', data: 'no addresses here' },
  ]);
  cleanups.push(() => dns.close());
  const data = await mkdtemp(join(tmpdir(), 'postseal-ssrf-'));
  cleanups.push(() => rm(data, { recursive: true, force: true }));
  const tok = await runCli(['token', 'create', '--name', 'ssrf-test', '--data', data]);
  assert.equal(tok.code, 0, tok.stderr);
  token = /ps_[A-Za-z0-9_-]+/.exec(tok.stdout)?.[0] ?? '';
  assert.ok(token);
  serve = await startServeChild([...mxOnly(data, ['--http', '127.0.0.1:0']), '--dns', `127.0.0.1:${dns.port}`, '--no-relay', '--no-auth-verify'], { listeners: 2 });
  cleanups.push(async () => {
    serve.signal('SIGTERM');
    await serve.waitExit(15_000).catch(() => undefined);
  });
  base = `http://127.0.0.1:${serve.port('http')}`;
});

async function post(body: unknown): Promise<{ status: number; json: { error?: { code: string; message: string }; id?: string } }> {
  const res = await fetch(`${base}/api/v1/checks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, json: (await res.json()) as { error?: { code: string; message: string } } };
}

test('without --http-check-private: private targets are refused with 422 and nothing is contacted', async () => {
  const cp = (canary.address() as { port: number }).port;
  const cases: Array<[unknown, RegExp]> = [
    [{ target: `127.0.0.1:${cp}` }, /127\.0\.0\.1 \(loopback/],
    [{ target: `[::1]:${cp}` }, /::1 \(loopback/],
    [{ target: `[::ffff:127.0.0.1]:${cp}` }, /IPv4-embedded loopback/],
    [{ target: `loop.test:${cp}` }, /loop\.test resolves to .*127\.0\.0\.1/],
    [{ target: 'internal.test' }, /10\.0\.0\.5 \(private/],
    [{ target: `mixed.test:${cp}` }, /::1 \(loopback/],
    [{ target: 'metadata.test:80' }, /169\.254\.169\.254 \(link-local/],
    [{ target: '100.64.1.1' }, /CGNAT/],
    [{ domain: 'victim.test', port: cp }, /MX hosts .*127\.0\.0\.1/],
  ];
  for (const [body, message] of cases) {
    const r = await post(body);
    assert.equal(r.status, 422, `${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error?.code, 'CHECK_TARGET_REFUSED', JSON.stringify(body));
    assert.match(r.json.error?.message ?? '', message);
    assert.match(r.json.error?.message ?? '', /--http-check-private/, 'the message says how an operator allows it');
  }
  // A name without addresses: 422 CHECK_DNS, not a check.
  const none = await post({ target: 'nx-ish.test' });
  assert.equal(none.status, 422);
  assert.equal(none.json.error?.code, 'CHECK_DNS');
  assert.equal(canaryConnections, 0, 'no connection reached the loopback canary');
});

test('checkDomain refuseAddress: a refused MX address is never connected to (guard at connect time)', async () => {
  const before = canaryConnections;
  const cp = (canary.address() as { port: number }).port;
  const report = await checkDomain('victim.test', {
    resolver: new DnsResolver({ host: '127.0.0.1', port: dns.port }, 3000),
    port: cp,
    timeoutMs: 3000,
    refuseAddress: (a) => privateAddressReason(a),
  });
  assert.equal(canaryConnections, before, 'the canary was not contacted');
  assert.equal(report.hosts.length, 0);
  assert.equal(report.status, 'error');
  const f = report.findings.find((x) => x.id === 'host.unreachable');
  assert.match(f?.detail ?? '', /not checked: loopback/);
});

test('without relay.dns, names are resolved by the system lookup (/etc/hosts too): localhost is refused', async () => {
  const cfg = defaultConfig();
  assert.equal(cfg.http.checkPrivateTargets, false);
  assert.deepEqual(cfg.relay.dns, []);
  // Only what checksApi reads: the config, a logger and the real checker.
  const ctx = { cfg, logger: createLogger('silent'), checker: { checkHost, checkDomain } } as unknown as HttpContext;
  const app = checksApi(ctx);
  for (const target of ['localhost', 'localhost:2525']) {
    const res = await app.request('/checks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target }) });
    assert.equal(res.status, 422, target);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'CHECK_TARGET_REFUSED');
    assert.match(body.error.message, /loopback/);
  }
});
