/**
 * checkHost against nodemailer's smtp-server (a real server nobody here wrote), with the findings
 * it really deserves recorded. Older smtp-server releases kept the MAIL FROM given before STARTTLS;
 * the pinned 3.21.6 resets its session after the handshake (its upgrade() cites RFC 3207 §4.2),
 * and the checker's state probe agrees (503 both before and after the new EHLO). What it does
 * deserve: AUTH advertised in plaintext (it refuses to run it before TLS, but a client sending
 * AUTH PLAIN with an initial response has already put the password on the wire), CBC-SHA1 suites
 * (Node's default list), and client-initiated TLS 1.2 renegotiation accepted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { checkHost } from '../../src/check/host.js';
import { renderHostReport } from '../../src/check/render-text.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';

describe('checkHost against nodemailer smtp-server', () => {
  test('findings it deserves: AUTH before TLS, CBC-SHA1, client renegotiation; state is reset', async () => {
    const ca = await makeTestCa();
    const pair = await issueCert(ca, { names: ['localhost'] });
    const server = new SMTPServer({
      key: pair.keyPem,
      cert: pair.certPem,
      authOptional: true,
      logger: false,
      onAuth(_auth, _session, cb) {
        cb(new Error('no auth in this test'));
      },
    });
    // Failed handshakes (the checker's refused version/cipher probes) are 'error' events here.
    const serverErrors: string[] = [];
    server.on('error', (e) => serverErrors.push(e.message));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.server.address();
    const port = addr !== null && typeof addr === 'object' ? addr.port : 0;
    try {
      const r = await checkHost('localhost', { address: '127.0.0.1', port, ca: [ca.certPem], timeoutMs: 10_000 });
      if (process.env.POSTSEAL_SHOW_REPORT === '1') process.stdout.write(renderHostReport(r));
      const ids = r.findings.map((f) => f.id);
      assert.equal(r.status, 'checked');
      assert.equal(r.smtp.starttlsAdvertised, true);
      assert.equal(r.probes.stateReset.outcome, 'reset');
      assert.deepEqual(r.smtp.authBeforeTls, ['LOGIN', 'PLAIN']);
      assert.equal(r.tls?.clientRenegotiation, 'accepted');
      assert.equal(r.grade, 'C');
      assert.equal(r.probes.injectionWholeLine.outcome, 'discarded');
      assert.equal(r.probes.injectionPartialLine.outcome, 'discarded');
      assert.deepEqual(ids, RECORDED);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

const RECORDED = ['auth.before-tls', 'tls.cipher.cbc-sha1', 'tls.renegotiation-client'];
