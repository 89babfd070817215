/**
 * Interop: testssl.sh 3.0 scans the STARTTLS listeners (mx, then submission; sequential, one
 * test each, 35-70 s per target here). Checks run: --protocols --server-defaults --server-preference
 * --vulnerable --each-cipher (everything except the client simulation, header and rating
 * parts, which are for HTTPS). Offline: --nodns none; our test CA is trusted via --add-ca.
 *
 * The certificate is the test CA's, issued here by `openssl x509` with a CRL distribution point:
 * testssl rates a leaf with neither CRL nor OCSP URI as HIGH (`cert_revocation`), which is a
 * property of the test PKI, not of the server; real CA-issued certificates carry one.
 *
 * Asserts: no finding is HIGH or CRITICAL; TLS 1.0/1.1 "not offered", TLS 1.3 offered; no CBC
 * suite is accepted (RFC 9325 §4.2, and what src/tls/options.ts says its policy is). The
 * findings that are not INFO/OK are printed as a table (test diagnostics).
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestCa } from '../helpers/certs.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { assertExitedOk, findPeer, runPeer, tempDir } from '../helpers/peers.js';

interface Finding {
  id: string;
  severity: string;
  finding: string;
}

let setup: Promise<{ server: TestServer; caFile: string; dir: string }> | null = null;
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A leaf for localhost/127.0.0.1 with a CRL distribution point, signed by a fresh test CA. */
async function issueWithCrlPoint(openssl: string, dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const ca = await makeTestCa();
  const f = (n: string): string => join(dir, n);
  await writeFile(f('ca.pem'), ca.certPem);
  await writeFile(f('ca-key.pem'), ca.keyPem, { mode: 0o600 });
  await writeFile(f('leaf.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    'crlDistributionPoints=URI:http://crl.postseal.test/test-ca.crl',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid',
  ].join('\n') + '\n');
  assertExitedOk(await runPeer(openssl, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('leaf-key.pem'), '-subj', '/CN=localhost', '-out', f('leaf.csr')]), 'openssl req');
  assertExitedOk(await runPeer(openssl, ['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'), '-set_serial', `0x${Date.now().toString(16)}`, '-days', '90', '-sha256', '-extfile', f('leaf.ext'), '-out', f('leaf.pem')]), 'openssl x509');
  return { caFile: f('ca.pem'), certFile: f('leaf.pem'), keyFile: f('leaf-key.pem') };
}

function start(openssl: string): Promise<{ server: TestServer; caFile: string; dir: string }> {
  setup ??= (async () => {
    const tmp = await tempDir('testssl');
    cleanups.push(tmp.cleanup);
    const pki = await issueWithCrlPoint(openssl, tmp.dir);
    const server = await startTestServer({
      configure: (cfg) => {
        cfg.tls.cert = pki.certFile;
        cfg.tls.key = pki.keyFile;
      },
    });
    cleanups.push(() => server.close());
    return { server, caFile: pki.caFile, dir: tmp.dir };
  })();
  return setup;
}

async function scan(t: TestContext, listener: 'mx' | 'submission'): Promise<Finding[] | null> {
  const testssl = await findPeer(t, 'testssl', 'testssl.sh');
  const openssl = testssl && (await findPeer(t, 'openssl'));
  if (!testssl || !openssl) return null;
  const { server, caFile, dir } = await start(openssl);
  const out = join(dir, `${listener}.json`);
  const r = await runPeer(testssl, [
    '--starttls', 'smtp', '--nodns', 'none', '--add-ca', caFile, '--quiet', '--color', '0', '--warnings', 'off',
    '--jsonfile', out, '--protocols', '--server-defaults', '--server-preference', '--vulnerable', '--each-cipher',
    `127.0.0.1:${server.port(listener)}`,
  ], { cwd: dir, timeoutMs: 240_000 });
  // testssl 3.0 exits with the count of "ambiguous" results (0-49, e.g. 8 here: checks that
  // return non-zero for "not offered"); 242+ are its own errors (connect, resources, signal).
  const detail = `testssl ${listener}: code=${String(r.code)} timedOut=${String(r.timedOut)}\n${r.stderr}\n${r.stdout.toString('utf8').slice(-3000)}`;
  assert.equal(r.timedOut, false, detail);
  assert.ok(r.code !== null && r.code < 50, detail);
  const findings = JSON.parse(await readFile(out, 'utf8')) as Finding[];
  assert.ok(Array.isArray(findings) && findings.some((f) => f.id === 'scanTime'), 'testssl did not finish the scan (no scanTime)');
  t.diagnostic(`testssl ${listener}: ${findings.length} findings; not INFO/OK:`);
  for (const f of findings.filter((x) => !['INFO', 'OK'].includes(x.severity))) t.diagnostic(`  ${f.id.padEnd(16)} ${f.severity.padEnd(8)} ${f.finding}`);
  return findings;
}

/** Three subtests, so a failure in one does not hide the result of the others. */
async function check(t: TestContext, findings: Finding[]): Promise<void> {
  const byId = new Map(findings.map((f) => [f.id, f]));
  await t.test('no finding rated HIGH or CRITICAL', () => {
    const bad = findings.filter((f) => f.severity === 'HIGH' || f.severity === 'CRITICAL');
    assert.deepEqual(bad, []);
  });
  await t.test('TLS 1.0 and 1.1 not offered, TLS 1.3 offered, chain trusted', () => {
    assert.equal(byId.get('TLS1')?.finding, 'not offered');
    assert.equal(byId.get('TLS1_1')?.finding, 'not offered');
    assert.match(byId.get('TLS1_3')?.finding ?? 'missing', /^offered/);
    assert.equal(byId.get('cert_chain_of_trust')?.finding, 'passed.');
  });
  await t.test('no CBC cipher suite is accepted (RFC 9325 §4.2; LUCKY13)', () => {
    const cbc = findings.filter((f) => f.id.startsWith('cipher_x') && /_CBC_/.test(f.finding)).map((f) => f.finding.trim().split(/\s+/).pop());
    assert.deepEqual(cbc, [], 'the server accepts CBC cipher suites');
  });
}

test('testssl.sh: mx (STARTTLS, tls=may)', { timeout: 300_000 }, async (t) => {
  const findings = await scan(t, 'mx');
  if (findings) await check(t, findings);
});

test('testssl.sh: submission (STARTTLS, tls=encrypt)', { timeout: 300_000 }, async (t) => {
  const findings = await scan(t, 'submission');
  if (findings) await check(t, findings);
});
