/**
 * checkDomain against a test DNS server (test/helpers/dns-server.ts), postseal's own server as
 * every MX (127.0.0.1, its mx port), and a local HTTPS server for the MTA-STS policy.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkDomain } from '../../src/check/domain.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { issueCert, makeTestCa, writeKeyPair, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const D = 'example.test';
let ca: TestCa;
let dir = '';
let smtp: TestServer;
let leaf: PemKeyPair;
let policyBody = '';
let policyServer: https.Server;
let policyPort = 0;
const dnsServers: DnsServer[] = [];

before(async () => {
  ca = await makeTestCa();
  dir = await mkdtemp(join(tmpdir(), 'postseal-domain-'));
  leaf = await issueCert(ca, { names: [`mx1.${D}`, `mx2.${D}`] });
  const files = await writeKeyPair(dir, leaf);
  smtp = await startTestServer({
    configure(cfg) {
      cfg.tls.cert = files.certFile;
      cfg.tls.key = files.keyFile;
    },
  });
  const web = await issueCert(ca, { names: [`mta-sts.${D}`] });
  policyServer = https.createServer({ cert: web.certPem, key: web.keyPem }, (req, res) => {
    if (req.url !== '/.well-known/mta-sts.txt' || req.headers.host !== `mta-sts.${D}`) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(policyBody);
  });
  await new Promise<void>((resolve) => policyServer.listen(0, '127.0.0.1', resolve));
  const a = policyServer.address();
  policyPort = a !== null && typeof a === 'object' ? a.port : 0;
});

after(async () => {
  await smtp.close();
  await new Promise<void>((resolve) => policyServer.close(() => resolve()));
  for (const d of dnsServers) await d.close();
  await rm(dir, { recursive: true, force: true });
});

function spkiSha256(pem: string): Buffer {
  return createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest();
}

function baseRecords(port: number, tlsa: Buffer | null): DnsRecord[] {
  const recs: DnsRecord[] = [
    { name: D, type: 'MX', preference: 10, exchange: `mx1.${D}` },
    { name: D, type: 'MX', preference: 20, exchange: `mx2.${D}` },
    { name: D, type: 'TXT', data: 'v=spf1 mx -all' },
    { name: `mx1.${D}`, type: 'A', address: '127.0.0.1' },
    { name: `mx2.${D}`, type: 'A', address: '127.0.0.1' },
    { name: `_mta-sts.${D}`, type: 'TXT', data: 'v=STSv1; id=20261128' },
    { name: `_smtp._tls.${D}`, type: 'TXT', data: `v=TLSRPTv1; rua=mailto:tlsrpt@${D}` },
    { name: `_dmarc.${D}`, type: 'TXT', data: 'v=DMARC1; p=reject; rua=mailto:dmarc@example.test' },
  ];
  if (tlsa) for (const mx of ['mx1', 'mx2']) recs.push({ name: `_${port}._tcp.${mx}.${D}`, type: 'TLSA', usage: 3, selector: 1, matchingType: 1, certificate: tlsa });
  return recs;
}

async function run(records: DnsRecord[], ad: boolean, servfail: string[] = []) {
  const dns = await startDnsServer(records, { ad, servfail });
  dnsServers.push(dns);
  const progress: string[] = [];
  const r = await checkDomain(D, {
    resolver: new DnsResolver({ host: '127.0.0.1', port: dns.port }, 3000),
    ca: [ca.certPem],
    timeoutMs: 10_000,
    port: smtp.port('mx'),
    mtaStsEndpoint: { host: '127.0.0.1', port: policyPort },
    onProgress: (l) => progress.push(l),
  });
  return { r, progress, ids: r.findings.map((f) => f.id) };
}

describe('checkDomain', () => {
  test('MTA-STS enforce covering both MX, TLSA matching with DNSSEC (AD): downgrade "dane"', async () => {
    policyBody = `version: STSv1\r\nmode: enforce\r\nmx: *.${D}\r\nmax_age: 604800\r\n`;
    const { r, ids, progress } = await run(baseRecords(smtp.port('mx'), spkiSha256(leaf.certPem)), true);
    assert.equal(r.status, 'checked');
    assert.deepEqual(r.mx.hosts.map((h) => h.name), [`mx1.${D}`, `mx2.${D}`]);
    assert.equal(r.hosts.length, 2);
    assert.equal(r.mtaSts.policy?.mode, 'enforce');
    assert.deepEqual(r.mtaSts.mxMatches.map((m) => m.pattern), [`*.${D}`, `*.${D}`]);
    assert.equal(r.tlsRpt.rua[0], `mailto:tlsrpt@${D}`);
    assert.equal(r.spf.all, '-');
    assert.equal(r.dmarc.policy, 'reject');
    assert.ok(r.dane.every((d) => d.validated && d.records.every((x) => x.result === 'match')));
    assert.equal(r.downgrade, 'dane');
    assert.equal(r.grade, 'A+');
    assert.deepEqual([...new Set(ids)], []);
    assert.equal(progress.filter((l) => l.startsWith('[')).length, 2);
  });

  test('same, but the resolver gives no AD bit: DANE not validated, downgrade "mta-sts-enforce"', async () => {
    const { r, ids } = await run(baseRecords(smtp.port('mx'), spkiSha256(leaf.certPem)), false);
    assert.ok(r.dane.every((d) => !d.validated));
    assert.ok(ids.includes('dane.not-validated'));
    assert.equal(r.downgrade, 'mta-sts-enforce');
  });

  test('policy (enforce) covers only mx1, TLSA does not match: findings, downgrade "mta-sts-enforce" (mx2 is skipped, not downgraded)', async () => {
    policyBody = `version: STSv1\nmode: enforce\nmx: mx1.${D}\nmax_age: 3600\n`;
    const { r, ids } = await run(baseRecords(smtp.port('mx'), Buffer.alloc(32, 7)), true);
    assert.deepEqual(r.mtaSts.mxMatches.map((m) => m.pattern), [`mx1.${D}`, null]);
    assert.ok(ids.includes('mta-sts.mx-not-covered'));
    assert.ok(ids.includes('mta-sts.max-age-short'));
    assert.ok(ids.includes('dane.mismatch'));
    assert.equal(r.findings[0]?.severity, 'critical');
    // Was 'mta-sts-testing' before issue 9 item 10: the policy is enforce, and mx2 fails it.
    assert.equal(r.downgrade, 'mta-sts-enforce');
    assert.ok(!ids.includes('downgrade.unprotected'));
  });

  test('MTA-STS enforce, but an MX certificate fails it: downgrade "mta-sts-enforce" and the failure, not "unprotected"', async () => {
    policyBody = `version: STSv1\nmode: enforce\nmx: *.${D}\nmax_age: 604800\n`;
    // mx3 is covered by the policy, but the certificate names only mx1 and mx2.
    const recs = baseRecords(smtp.port('mx'), null).map((x) => (x.type === 'MX' && x.exchange === `mx2.${D}` ? { ...x, exchange: `mx3.${D}` } : x));
    recs.push({ name: `mx3.${D}`, type: 'A', address: '127.0.0.1' });
    const { r, ids } = await run(recs, false);
    assert.equal(r.mtaSts.policy?.mode, 'enforce');
    assert.equal(r.downgrade, 'mta-sts-enforce');
    assert.ok(!ids.includes('downgrade.unprotected'), ids.join(' '));
    const f = r.findings.find((x) => x.id === 'mta-sts.cert-invalid');
    assert.ok(f);
    assert.equal(f.where, `mx3.${D}`);
    assert.match(f.detail, /enforce/);
  });

  test('a TLSA query answered SERVFAIL (DNSSEC bogus): a finding, a complete report, not a crash', async () => {
    policyBody = `version: STSv1\nmode: enforce\nmx: *.${D}\nmax_age: 604800\n`;
    const { r, ids } = await run(baseRecords(smtp.port('mx'), spkiSha256(leaf.certPem)), true, [`_${smtp.port('mx')}._tcp.mx2.${D} TLSA`, `_smtp._tls.${D} TXT`]);
    assert.equal(r.status, 'checked');
    assert.equal(r.hosts.length, 2);
    const f = r.findings.find((x) => x.id === 'dane.lookup-failed');
    assert.ok(f, ids.join(' '));
    assert.equal(f.where, `mx2.${D}`);
    assert.match(f.detail, /SERVFAIL/);
    assert.notEqual(r.downgrade, 'dane');
    // The TLS-RPT lookup failed: that is said, not reported as "no TLS-RPT record".
    assert.ok(ids.includes('dns.lookup-failed'));
    assert.ok(!ids.includes('tlsrpt.missing'));
  });

  test('the MX lookup itself answered SERVFAIL: status error (exit 2) with the reason', async () => {
    const { r } = await run(baseRecords(smtp.port('mx'), null), false, [`${D} MX`]);
    assert.equal(r.status, 'error');
    assert.equal(r.error?.code, 'CHECK_DNS');
    assert.match(r.error?.message ?? '', /SERVFAIL/);
  });

  test('no policies at all: downgrade "none" and the missing records are findings', async () => {
    const recs = baseRecords(smtp.port('mx'), null).filter((x) => x.type === 'MX' || x.type === 'A');
    const { r, ids } = await run(recs, false);
    assert.equal(r.downgrade, 'none');
    for (const id of ['downgrade.unprotected', 'tlsrpt.missing', 'spf.missing', 'dmarc.missing']) assert.ok(ids.includes(id), id);
  });

  test('a wildcard matches exactly one label; a redirecting or invalid policy is refused', async () => {
    policyBody = `version: STSv1\nmode: enforce\nmx: *.test\nmax_age: 604800\n`;
    const { r, ids } = await run(baseRecords(smtp.port('mx'), null), false);
    assert.deepEqual(r.mtaSts.mxMatches.map((m) => m.pattern), [null, null]);
    assert.ok(ids.includes('mta-sts.mx-not-covered'));
    policyBody = `version: STSv1\nmode: enforcing\nmx: mx1.${D}\nmax_age: 604800\n`;
    const bad = await run(baseRecords(smtp.port('mx'), null), false);
    assert.match(bad.r.mtaSts.error ?? '', /mode must be/);
    assert.ok(bad.ids.includes('mta-sts.policy-invalid'));
  });

  test('null MX: no host checks, an info finding', async () => {
    const { r, ids } = await run([{ name: D, type: 'MX', preference: 0, exchange: '.' }], false);
    assert.equal(r.mx.nullMx, true);
    assert.equal(r.hosts.length, 0);
    assert.ok(ids.includes('mx.null'));
  });

  test('no MX: the domain itself is checked (RFC 5321 §5.1)', async () => {
    const { r, ids } = await run([{ name: D, type: 'A', address: '127.0.0.1' }], false);
    assert.equal(r.mx.implicit, true);
    assert.deepEqual(r.hosts.map((h) => h.target.host), [D]);
    assert.ok(ids.includes('mx.none'));
    assert.ok(ids.includes('cert.name-mismatch'));
  });

  test('a domain that does not exist cannot be checked', async () => {
    const { r } = await run([], false);
    assert.equal(r.status, 'error');
    assert.match(r.error?.message ?? '', /NXDOMAIN/);
  });
});
