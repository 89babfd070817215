/**
 * The `postseal check` command line: JSON output with schemaVersion, exit statuses 0/1/2, text
 * output with the grade and the marked TLS upgrade, domain mode with --dns and progress on stderr.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runPeer, ROOT } from '../helpers/peers.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let legacy: TestServer;
let dns: DnsServer;
let dir = '';
let caFile = '';

before(async () => {
  server = await startTestServer();
  // A server that still accepts TLS 1.0 and 1.1: medium findings, grade B.
  legacy = await startTestServer({ configure: (cfg) => { cfg.tls.minVersion = 'TLSv1'; } });
  dir = await mkdtemp(join(tmpdir(), 'postseal-cli-check-'));
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, server.caPem);
  dns = await startDnsServer([
    { name: 'postseal.test', type: 'MX', preference: 10, exchange: 'localhost' },
    { name: 'localhost', type: 'A', address: '127.0.0.1' },
  ]);
});
after(async () => {
  await server.close();
  await legacy.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return runPeer(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'check', ...args], { timeoutMs: 120_000 });
}

describe('postseal check (CLI)', () => {
  test('--json: a report with schemaVersion 1; exit 0 at the default --fail-on high', async () => {
    const r = await cli(`127.0.0.1:${server.port('mx')}`, '--ca', caFile, '--json');
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout.toString('utf8')) as { schemaVersion: number; kind: string; grade: string; findings: Array<{ id: string }> };
    assert.equal(doc.schemaVersion, 1);
    assert.equal(doc.kind, 'host');
    assert.equal(doc.grade, 'A+');
    assert.deepEqual(doc.findings, []);
  });

  test('--fail-on medium: medium findings make exit 1 (0 at the default high); text shows grade, findings and the upgrade', async () => {
    const lenient = await cli(`127.0.0.1:${legacy.port('mx')}`, '--ca', caFile);
    assert.equal(lenient.code, 0, lenient.stderr);
    const r = await cli(`127.0.0.1:${legacy.port('mx')}`, '--ca', caFile, '--fail-on', 'medium');
    assert.equal(r.code, 1, r.stderr);
    const text = r.stdout.toString('utf8');
    assert.match(text, /^Grade B /m);
    assert.match(text, /MEDIUM +TLS 1\.0 accepted/);
    assert.match(text, /plain S: 220 /);
    assert.match(text, /TLS upgrade: everything below is encrypted/);
  });

  test('nothing listening: exit 2 with the reason', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(a !== null && typeof a === 'object' ? a.port : 0));
      });
    });
    const r = await cli(`127.0.0.1:${port}`, '--timeout', '5');
    assert.equal(r.code, 2);
    assert.match(r.stdout.toString('utf8'), /could not check: CHECK_CONNECT/);
  });

  test('bad flags: exit 2', async () => {
    const r = await cli('127.0.0.1:25', '--fail-on', 'severe');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--fail-on/);
  });

  test('--domain with --dns and --port: progress on stderr, domain report on stdout', async () => {
    const r = await cli('--domain', 'postseal.test', '--dns', `127.0.0.1:${dns.port}`, '--port', String(server.port('mx')), '--ca', caFile);
    const text = r.stdout.toString('utf8');
    assert.match(text, /^Encryption grade A\+ +Downgrade resistance: none$/m);
    assert.match(r.stderr, /\[1\/1\] localhost \[127\.0\.0\.1\]: grade A\+/);
    // No MTA-STS or DANE: downgrade.unprotected is medium, below the default --fail-on high.
    assert.equal(r.code, 0, r.stderr);
  });

  test('--domain --json when the TLSA query gets SERVFAIL: JSON with the finding, not a crash', async () => {
    const bogus = await startDnsServer([
      { name: 'postseal.test', type: 'MX', preference: 10, exchange: 'localhost' },
      { name: 'localhost', type: 'A', address: '127.0.0.1' },
    ], { servfail: [`_${server.port('mx')}._tcp.localhost TLSA`] });
    try {
      const r = await cli('--domain', 'postseal.test', '--dns', `127.0.0.1:${bogus.port}`, '--port', String(server.port('mx')), '--ca', caFile, '--json');
      const doc = JSON.parse(r.stdout.toString('utf8')) as { status: string; findings: Array<{ id: string; severity: string }> };
      assert.equal(doc.status, 'checked');
      assert.ok(doc.findings.some((f) => f.id === 'dane.lookup-failed' && f.severity === 'high'));
      assert.equal(r.code, 1, r.stderr);
    } finally {
      await bogus.close();
    }
  });

  test('HOST:PORT of an implicit-TLS listener (not 465): found and checked as implicit TLS', async () => {
    const r = await cli(`127.0.0.1:${server.port('submissions')}`, '--ca', caFile, '--json');
    const doc = JSON.parse(r.stdout.toString('utf8')) as { status: string; target: { mode: string }; transcript: Array<{ text: string }> };
    assert.equal(doc.status, 'checked', r.stderr);
    assert.equal(doc.target.mode, 'implicit');
    assert.ok(doc.transcript.some((e) => /checked as implicit TLS/.test(e.text)));
  });
});
