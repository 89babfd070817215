/**
 * "Publish these DNS records" end to end (issue 11): `postseal dns-records example.org --data DIR`
 * for a domain with an Ed25519 and an RSA key; every zone line it prints is published in the test
 * DNS server (and its MTA-STS policy file served over HTTPS with a test CA); then
 * `postseal check --domain example.org --data DIR` against that DNS reports every record present
 * and both DKIM selectors matching our keys. Then one published key is changed (mismatch, with
 * the record to publish as the fix), one removed (missing), one made malformed.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { dnsRecord, generateKey } from '../../src/auth/dkim-keys.js';
import { parseDkimKeyRecord } from '../../src/check/dkim.js';
import type { DomainReport } from '../../src/check/domain.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { runCli } from '../cli/child.js';

const D = 'example.org';
let dir = '';
let caFile = '';
let dns: DnsServer;
let web: https.Server;
let webPort = 0;
let published: DnsRecord[] = [];
let policy = '';
let printed = '';

/** Zone lines (`NAME. IN TYPE …`) → test DNS records; `"a" "b"` TXT strings kept as strings. */
function parseZone(text: string): DnsRecord[] {
  const out: DnsRecord[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(';') || line.trim() === '') continue;
    const m = /^(\S+)\s+IN\s+(MX|TXT)\s+(.*)$/.exec(line);
    assert.ok(m, `not a zone line: ${line}`);
    const [, name = '', type, rdata = ''] = m;
    if (type === 'MX') {
      const [pref = '', exchange = ''] = rdata.split(/\s+/);
      out.push({ name, type: 'MX', preference: Number(pref), exchange: exchange.replace(/\.$/, '') });
    } else {
      out.push({ name, type: 'TXT', data: [...rdata.matchAll(/"([^"]*)"/g)].map((x) => x[1] ?? '') });
    }
  }
  return out;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-dns-records-'));
  generateKey(dir, D, { algorithm: 'ed25519', selector: 'ed1' });
  generateKey(dir, D, { algorithm: 'rsa', selector: 'rsa1' });
  const r = await runCli(['dns-records', D, '--data', dir]);
  assert.equal(r.code, 0, r.stderr);
  printed = r.stdout;
  published = parseZone(printed);
  // The MTA-STS policy file is printed as comment lines under its URL.
  const lines = printed.split('\n');
  const at = lines.findIndex((l) => l === `; https://mta-sts.${D}/.well-known/mta-sts.txt:`);
  assert.ok(at >= 0, printed);
  policy = lines.slice(at + 1).filter((l) => l.startsWith(';   ')).map((l) => l.slice(4)).join('\n') + '\n';
  const ca = await makeTestCa();
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  const cert = await issueCert(ca, { names: [`mta-sts.${D}`] });
  web = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    if (req.url !== '/.well-known/mta-sts.txt' || req.headers.host !== `mta-sts.${D}`) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(policy);
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  const a = web.address();
  webPort = a !== null && typeof a === 'object' ? a.port : 0;
  dns = await startDnsServer(published);
});

after(async () => {
  await dns?.close();
  await new Promise<void>((resolve) => (web ? web.close(() => resolve()) : resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function check(): Promise<DomainReport> {
  const r = await runCli(['check', '--domain', D, '--data', dir, '--dns', `127.0.0.1:${dns.port}`, '--ca', caFile, '--mta-sts-endpoint', `127.0.0.1:${webPort}`, '--timeout', '5', '--json']);
  assert.notEqual(r.code, 2, r.stderr + r.stdout);
  return JSON.parse(r.stdout) as DomainReport;
}

const ids = (rep: DomainReport): string[] => rep.findings.map((f) => f.id);

test('dns-records prints MX, SPF, both DKIM keys, DMARC, MTA-STS and TLS-RPT as zone lines', () => {
  const names = published.map((p) => `${p.name} ${p.type}`);
  assert.deepEqual(names, [`${D}. MX`, `${D}. TXT`, `ed1._domainkey.${D}. TXT`, `rsa1._domainkey.${D}. TXT`, `_dmarc.${D}. TXT`, `_mta-sts.${D}. TXT`, `_smtp._tls.${D}. TXT`]);
  assert.match(policy, /^version: STSv1\nmode: testing\nmx: mail\.example\.org\nmax_age: 604800\n$/);
});

test('check --domain finds every published record present and both DKIM selectors matching', async () => {
  const rep = await check();
  assert.equal(rep.status, 'checked');
  assert.equal(rep.dkim.source, dir);
  assert.deepEqual(rep.dkim.selectors.map((s) => [s.selector, s.algorithm, s.active, s.status, s.fix]), [['ed1', 'ed25519', true, 'match', null], ['rsa1', 'rsa', true, 'match', null]]);
  assert.equal(rep.spf.record, 'v=spf1 mx -all');
  assert.equal(rep.spf.error, null);
  assert.match(rep.dmarc.record ?? '', /^v=DMARC1; p=none; rua=mailto:dmarc@example\.org$/);
  assert.equal(rep.dmarc.error, null);
  assert.match(rep.tlsRpt.record ?? '', /^v=TLSRPTv1; rua=mailto:tlsrpt@example\.org$/);
  assert.equal(rep.tlsRpt.error, null);
  assert.equal(rep.mtaSts.error, null);
  assert.equal(rep.mtaSts.policy?.mode, 'testing');
  assert.deepEqual(rep.mtaSts.mxMatches, [{ mx: `mail.${D}`, pattern: `mail.${D}` }]);
  for (const bad of ['spf.missing', 'spf.invalid', 'dmarc.missing', 'dmarc.invalid', 'tlsrpt.missing', 'tlsrpt.invalid', 'mta-sts.txt-invalid', 'mta-sts.policy-unavailable', 'mta-sts.policy-invalid', 'mta-sts.mx-not-covered', 'dns.lookup-failed']) {
    assert.ok(!ids(rep).includes(bad), `${bad}: ${JSON.stringify(rep.findings.filter((f) => f.id === bad))}`);
  }
  assert.deepEqual(ids(rep).filter((i) => i.startsWith('dkim.')), []);
});

test('a changed, a removed and a malformed DKIM record are each reported, with the record to publish', async () => {
  const other = dnsRecord(generateKeyPairSync('ed25519').privateKey);
  const ed1 = `ed1._domainkey.${D}.`;
  const rsa1 = `rsa1._domainkey.${D}.`;
  const ours = published.find((p) => p.name === ed1);
  assert.ok(ours && ours.type === 'TXT');
  // ed1 published with another key.
  dns.setRecords([...published.filter((p) => p.name !== ed1), { name: ed1, type: 'TXT', data: other }]);
  let rep = await check();
  let ed = rep.dkim.selectors.find((s) => s.selector === 'ed1');
  assert.equal(ed?.status, 'different-key');
  assert.equal(rep.dkim.selectors.find((s) => s.selector === 'rsa1')?.status, 'match');
  const expectedLine = printed.split('\n').find((l) => l.startsWith(`${ed1} IN TXT`));
  assert.ok(expectedLine);
  assert.equal(ed?.fix, expectedLine, 'the fix is exactly the line dns-records printed');
  const f = rep.findings.find((x) => x.id === 'dkim.mismatch');
  assert.equal(f?.severity, 'high');
  assert.ok(f?.detail.endsWith(`publish: ${expectedLine}`), f?.detail);
  // The text report says it too.
  const text = await runCli(['check', '--domain', D, '--data', dir, '--dns', `127.0.0.1:${dns.port}`, '--ca', caFile, '--mta-sts-endpoint', `127.0.0.1:${webPort}`, '--timeout', '5']);
  assert.match(text.stdout, /DKIM {6}ed1\._domainkey\.example\.org \(ed25519, active\): DIFFERENT KEY published/);
  assert.match(text.stdout, /DKIM {6}rsa1\._domainkey\.example\.org \(rsa, active\): published, matches our key/);

  // rsa1 missing, ed1 malformed (no p=).
  dns.setRecords([...published.filter((p) => p.name !== ed1 && p.name !== rsa1), { name: ed1, type: 'TXT', data: 'v=DKIM1; k=ed25519' }]);
  rep = await check();
  ed = rep.dkim.selectors.find((s) => s.selector === 'ed1');
  assert.equal(ed?.status, 'malformed');
  assert.match(ed?.detail ?? '', /no p= tag/);
  assert.equal(rep.dkim.selectors.find((s) => s.selector === 'rsa1')?.status, 'missing');
  assert.ok(ids(rep).includes('dkim.malformed'));
  assert.ok(ids(rep).includes('dkim.missing'));
  // Back to what dns-records said: all match again.
  dns.setRecords(published);
  rep = await check();
  assert.deepEqual(rep.dkim.selectors.map((s) => s.status), ['match', 'match']);
});

test('the key record parser: our own records parse; bad ones say why', () => {
  const mine = dnsRecord(generateKeyPairSync('ed25519').privateKey).join('');
  const p = parseDkimKeyRecord(mine);
  assert.ok(p.ok && p.algorithm === 'ed25519' && p.key.length === 32);
  assert.equal(parseDkimKeyRecord('k=rsa; p=').ok && (parseDkimKeyRecord('k=rsa; p=') as { revoked: boolean }).revoked, true);
  for (const [txt, why] of [
    ['v=DKIM1; k=ed25519', /no p=/],
    ['k=ed25519; v=DKIM1; p=AAAA', /v=DKIM1: must be the first/],
    ['v=DKIM1; p=AAAA; p=BBBB', /repeated/],
    ['v=DKIM1; p=not*base64', /not base64/],
    ['v=DKIM2; p=AAAA', /v=DKIM2/],
  ] as const) {
    const r = parseDkimKeyRecord(txt);
    assert.equal(r.ok, false, txt);
    if (!r.ok) assert.match(r.error, why);
  }
});
