/**
 * checkHost against aiosmtpd (Debian's python3-aiosmtpd, a real server nobody here wrote), the
 * receiver of test/helpers/receivers.ts: it answers a second STARTTLS inside TLS with 220
 * (RFC 3207 §4.2 says refuse), which the checker must report.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { requirePeer, startAiosmtpdReceiver } from '../helpers/receivers.js';

describe('checkHost against aiosmtpd', () => {
  test('aiosmtpd: a second STARTTLS inside TLS is answered 220', async (t) => {
    if (!requirePeer(t, 'aiosmtpd')) return;
    const ca = await makeTestCa();
    const receiver = await startAiosmtpdReceiver({ hostname: 'mx.aiosmtpd.test', pair: await issueCert(ca, { names: ['localhost'] }) });
    try {
      const r = await checkHost('localhost', { address: '127.0.0.1', port: receiver.port, ca: [ca.certPem], timeoutMs: 10_000, tlsScan: false });
      assert.equal(r.status, 'checked');
      assert.equal(r.probes.starttlsAgain.outcome, 'accepted', r.probes.starttlsAgain.evidence);
      assert.match(r.probes.starttlsAgain.evidence, /^STARTTLS inside TLS answered 220/);
      assert.ok(r.findings.some((f) => f.id === 'starttls.again-accepted' && f.severity === 'medium'));
    } finally {
      await receiver.close();
    }
  });
});
