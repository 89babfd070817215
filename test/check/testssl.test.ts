/**
 * Agreement with testssl.sh on the same target: protocol versions offered and the certificate
 * verdicts (chain of trust, expiry, name). The target is postseal's server with TLS 1.0 enabled
 * and an expired certificate, so both a positive and a negative verdict are compared.
 * testssl runs only the protocol (-p) and server-defaults (-S) sections (about 30 s).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { expiredCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { findPeer, runPeer } from '../helpers/peers.js';
import { startTestServer } from '../helpers/server.js';

interface TestsslEntry {
  id: string;
  severity: string;
  finding: string;
}

describe('agreement with testssl.sh', () => {
  test('protocol versions and certificate verdicts agree', { timeout: 300_000 }, async (t) => {
    const testssl = await findPeer(t, 'testssl', 'testssl.sh');
    if (testssl === null) return;
    const dir = await mkdtemp(join(tmpdir(), 'postseal-testssl-'));
    const ca = await makeTestCa();
    const files = await writeKeyPair(dir, await expiredCert(ca, ['localhost', '127.0.0.1']));
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, ca.certPem);
    const server = await startTestServer({
      configure(cfg) {
        cfg.tls.minVersion = 'TLSv1';
        cfg.tls.cert = files.certFile;
        cfg.tls.key = files.keyFile;
      },
    });
    try {
      const port = server.port('mx');
      const ours = await checkHost('127.0.0.1', { port, ca: [ca.certPem], timeoutMs: 15_000, attacks: false });
      const jsonFile = join(dir, 'testssl.json');
      const run = await runPeer(testssl, [
        '--starttls', 'smtp', '--nodns', 'none', '--add-ca', caFile, '-p', '-S',
        '--jsonfile', jsonFile, '--warnings', 'off', '--quiet', '--color', '0', `127.0.0.1:${port}`,
      ], { timeoutMs: 240_000 });
      assert.equal(run.timedOut, false, 'testssl timed out');
      const theirs = JSON.parse(await readFile(jsonFile, 'utf8')) as TestsslEntry[];
      const get = (id: string): string => theirs.find((e) => e.id === id)?.finding ?? `(no ${id})`;
      const offered = (id: string): 'accepted' | 'refused' => (/^offered/.test(get(id)) ? 'accepted' : 'refused');
      assert.deepEqual(ours.tls?.versions, {
        TLSv1: offered('TLS1'), 'TLSv1.1': offered('TLS1_1'), 'TLSv1.2': offered('TLS1_2'), 'TLSv1.3': offered('TLS1_3'),
      });
      assert.deepEqual(ours.tls?.versions, { TLSv1: 'accepted', 'TLSv1.1': 'accepted', 'TLSv1.2': 'accepted', 'TLSv1.3': 'accepted' });
      // Chain of trust: testssl says "passed." only for a good chain; the expired one fails both.
      assert.equal(ours.certificate?.trusted, get('cert_chain_of_trust').startsWith('passed'));
      assert.equal(ours.certificate?.trusted, false);
      assert.equal(ours.certificate?.verifyError, 'CERT_HAS_EXPIRED');
      assert.match(get('cert_expirationStatus'), /expired/);
      assert.ok((ours.certificate?.daysLeft ?? 0) < 0);
      // Name: testssl's cert_trust starts with "Ok via SAN" when the name matches.
      assert.equal(ours.certificate?.nameMatches, /^Ok via SAN/.test(get('cert_trust')));
      assert.equal(ours.certificate?.nameMatches, true);
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
