/**
 * checkHost against Postfix (Debian's 3.7, a real server nobody here wrote): the private instance
 * of test/helpers/receivers.ts (own config directory in a temp dir, free loopback port,
 * smtpd_tls_security_level=may). The findings Postfix's defaults deserve are recorded here.
 */
import assert from 'node:assert/strict';
import { userInfo } from 'node:os';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { findPeer } from '../helpers/peers.js';
import { startPostfixReceiver } from '../helpers/receivers.js';

describe('checkHost against Postfix', () => {
  test('Debian Postfix 3.7 defaults with smtpd_tls_security_level=may', async (t) => {
    const postfix = await findPeer(t, '/usr/sbin/postfix', 'postfix');
    if (postfix === null) return;
    if (userInfo().uid !== 0) {
      if (process.env.CI === 'true') assert.fail('the Postfix test needs root (postfix start)');
      t.skip('postfix start needs root');
      return;
    }
    const ca = await makeTestCa();
    // The same private Postfix the relay interop tests deliver to (test/helpers/receivers.ts).
    const receiver = await startPostfixReceiver({ hostname: 'mx.postfix.test', pair: await issueCert(ca, { names: ['localhost', '127.0.0.1'] }), domains: ['postfix.test'] });
    const port = receiver.port;
    try {
      const r = await checkHost('localhost', { address: '127.0.0.1', port, ca: [ca.certPem], timeoutMs: 15_000 });
      assert.equal(r.status, 'checked');
      assert.match(r.smtp.greeting?.text ?? '', /Postfix/);
      assert.equal(r.smtp.starttlsOfferedAgain, false);
      assert.equal(r.probes.injectionWholeLine.outcome, 'discarded');
      assert.equal(r.probes.injectionPartialLine.outcome, 'discarded');
      assert.equal(r.probes.stateReset.outcome, 'reset');
      assert.equal(r.certificate?.trusted, true);
      assert.equal(r.certificate?.nameMatches, true);
      assert.deepEqual(r.tls?.versions, { TLSv1: 'accepted', 'TLSv1.1': 'accepted', 'TLSv1.2': 'accepted', 'TLSv1.3': 'accepted' });
      // Recorded: what Debian's Postfix defaults deserve.
      // Issue 9 item 8 added the DH group size (1024 bits for ADH-AES128: OpenSSL's automatic DH
      // for an 80-bit-security anonymous suite) and the cipher order (tls_preempt_cipherlist = no).
      assert.deepEqual(r.findings.map((f) => f.id), ['tls.cipher.anon', 'tls.dh-small', 'tls.version.tls1', 'tls.version.tls1_1', 'tls.cipher.cbc-sha1', 'tls.cipher-order-client']);
      assert.deepEqual(r.tls?.dhe, { outcome: 'accepted', bits: 1024, cipher: 'ADH-AES128-GCM-SHA256' });
      assert.equal(r.tls?.cipherOrder.outcome, 'client');
      assert.equal(r.probes.starttlsAgain.outcome, 'refused');
      assert.equal(r.probes.starttlsArgument.outcome, 'refused');
      assert.equal(r.grade, 'B');
    } finally {
      await receiver.close();
    }
  });
});
