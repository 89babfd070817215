/**
 * `policy explain` as a library call and as a command: the test DNS server, a real postseal
 * receiver whose certificate does not name the MX host, an injected MTA-STS lookup for the
 * library call. --connect makes the TLS session (no MAIL) and says whether delivery would go.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { systemResolver, uniformTimeouts } from '../../src/client/index.js';
import { explainDomain } from '../../src/policy/explain.js';
import type { PolicyContext } from '../../src/policy/decide.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let receiver: TestServer;
let dns: DnsServer;

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.org']; } });
  dns = await startDnsServer([
    { name: 'example.org', type: 'MX', preference: 10, exchange: 'mx1.example.org' },
    { name: 'mx1.example.org', type: 'A', address: '127.0.0.1' },
  ]);
});

after(async () => {
  await receiver.close();
  await dns.close();
});

function ctx(over: Partial<PolicyContext> = {}): PolicyContext {
  return { dns: null, resolver: systemResolver([`127.0.0.1:${dns.port}`]), table: {}, defaultLevel: 'may', port: receiver.port('mx'), mtaSts: null, tlsa: null, ...over };
}

test('explain: MTA-STS enforce, the MX matches, --connect says verify fails and delivery would be deferred', async () => {
  const text = 'version: STSv1\nmode: enforce\nmx: mx1.example.org\nmax_age: 86400\n';
  const e = await explainDomain('example.org', ctx({ mtaSts: async () => ({ policy: { domain: 'example.org', id: 'a', mode: 'enforce', mx: ['mx1.example.org'], maxAge: 86400, fetchedAt: 0, expiresAt: Date.now() + 1e6, text }, from: 'fetched', failure: null }) }), { connect: true, tls: { ca: receiver.caPem }, timeouts: uniformTimeouts(10_000) });
  assert.equal(e.source, 'mta-sts');
  assert.equal(e.mtaSts.mode, 'enforce');
  const h = e.hosts[0];
  assert.equal(h?.level, 'verify');
  assert.equal(h?.matchesPolicy, true);
  assert.match(h?.rule ?? '', /RFC 8461 §4\.1, §4\.2/);
  assert.equal(h?.connect?.[0]?.wouldDeliver, false);
  assert.match(h?.connect?.[0]?.error ?? '', /TLS_VERIFY_FAILED/);
  assert.match(e.summary, /would be deferred/);
});

test('explain --connect at the default level: the session reaches TLS and delivery would go ahead', async () => {
  const e = await explainDomain('example.org', ctx(), { connect: true, tls: { ca: receiver.caPem }, timeouts: uniformTimeouts(10_000) });
  assert.equal(e.source, 'default');
  assert.equal(e.hosts[0]?.connect?.[0]?.wouldDeliver, true);
  assert.equal(e.hosts[0]?.connect?.[0]?.reached, 'encrypt');
});

test('postseal policy explain --json (MTA-STS and DANE off, a table entry): exit 0, the table rule', async () => {
  // Not spawnSync: the test DNS server answers from this process's event loop.
  const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'policy', 'explain', 'example.org', '--json', '--dns', `127.0.0.1:${dns.port}`, '--smtp-port', String(receiver.port('mx')), '--tls', 'encrypt', '--no-mta-sts', '--no-dane'], { encoding: 'utf8' });
  const e = JSON.parse(r.stdout) as { source: string; table: string; hosts: Array<{ host: string; level: string; rule: string }> };
  assert.equal(e.source, 'table');
  assert.equal(e.hosts[0]?.host, 'mx1.example.org');
  assert.equal(e.hosts[0]?.level, 'encrypt');
  assert.match(e.hosts[0]?.rule ?? '', /TLS table entry for example\.org: encrypt/);
});

test('postseal policy explain: a bad --tls is a usage error (exit 2)', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'policy', 'explain', 'example.org', '--tls', 'strict'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--tls "strict"/);
});
