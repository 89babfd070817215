/**
 * checkHost against postseal's own server in several configurations, each with the findings it
 * must produce. Real server, real certificates from a test CA, real handshakes on 127.0.0.1:0.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ServeConfig } from '../../src/config.js';
import { checkHost } from '../../src/check/host.js';
import type { HostReport } from '../../src/check/types.js';
import { expiredCert, issueCert, makeTestCa, selfSigned, wrongNameCert, writeKeyPair, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startTestServer } from '../helpers/server.js';

let dir = '';
let ca: TestCa;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-check-'));
  ca = await makeTestCa();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function checkWith(configure: (cfg: ServeConfig) => void, pair: PemKeyPair | null, listener: 'mx' | 'submission' | 'submissions' = 'mx'): Promise<HostReport> {
  const files = pair ? await writeKeyPair(join(dir, `c${n++}`), pair) : null;
  const server = await startTestServer({
    configure(cfg) {
      if (files) {
        cfg.tls.cert = files.certFile;
        cfg.tls.key = files.keyFile;
      }
      configure(cfg);
    },
  });
  try {
    return await checkHost('localhost', { address: '127.0.0.1', port: server.port(listener), implicitTls: listener === 'submissions', ca: [ca.certPem, server.caPem], timeoutMs: 10_000, submission: listener !== 'mx' });
  } finally {
    await server.close();
  }
}

function ids(r: HostReport): string[] {
  return r.findings.map((f) => f.id);
}

describe('checkHost against postseal serve', () => {
  test('good configuration: STARTTLS, TLS 1.2+1.3 only, trusted and matching, probes pass', async () => {
    const r = await checkWith(() => {}, await issueCert(ca, { names: ['localhost', '127.0.0.1'] }));
    assert.equal(r.status, 'checked');
    assert.equal(r.smtp.greeting?.code, 220);
    assert.equal(r.smtp.starttlsAdvertised, true);
    assert.equal(r.smtp.starttlsReply?.code, 220);
    assert.equal(r.smtp.bytesAfterStarttls, null);
    assert.equal(r.smtp.starttlsOfferedAgain, false);
    assert.equal(r.tls?.protocol, 'TLSv1.3');
    assert.deepEqual(r.tls?.versions, { TLSv1: 'refused', 'TLSv1.1': 'refused', 'TLSv1.2': 'accepted', 'TLSv1.3': 'accepted' });
    assert.equal(r.tls?.cipherClasses.null.outcome, 'refused');
    assert.equal(r.tls?.cipherClasses['rsa-kx'].outcome, 'refused');
    assert.equal(r.tls?.clientRenegotiation, 'refused');
    assert.equal(r.certificate?.trusted, true);
    assert.equal(r.certificate?.nameMatches, true);
    assert.equal(r.certificate?.noSni?.same, true);
    assert.equal(r.probes.injectionWholeLine.outcome, 'discarded');
    assert.equal(r.probes.injectionPartialLine.outcome, 'discarded');
    assert.equal(r.probes.stateReset.outcome, 'reset');
    // AEAD-only TLS 1.2 suites (RFC 9325 §4.2): no cipher finding at all.
    assert.equal(r.tls?.cipherClasses['cbc-sha1'].outcome, 'refused');
    assert.deepEqual(ids(r), []);
    assert.match(r.grade ?? '', /^A/);
    // Everything before the upgrade is marked plaintext; the upgrade happens exactly once.
    const firstTls = r.transcript.findIndex((e) => e.tls);
    assert.ok(firstTls > 0);
    assert.ok(r.transcript.slice(0, firstTls).every((e) => !e.tls));
    assert.ok(r.transcript.slice(firstTls).every((e) => e.tls));
  });

  test('no STARTTLS (mx tls none): critical, grade F, no TLS facts', async () => {
    const r = await checkWith((cfg) => {
      if (cfg.listeners.mx) cfg.listeners.mx.tls = 'none';
    }, null);
    assert.equal(r.smtp.starttlsAdvertised, false);
    assert.notEqual(r.smtp.starttlsReply?.code, 220);
    assert.equal(r.tls, null);
    assert.deepEqual(ids(r), ['starttls.missing']);
    assert.equal(r.grade, 'F');
  });

  test('expired certificate', async () => {
    const r = await checkWith(() => {}, await expiredCert(ca, ['localhost']));
    assert.equal(r.certificate?.trusted, false);
    assert.equal(r.certificate?.verifyError, 'CERT_HAS_EXPIRED');
    assert.ok(ids(r).includes('cert.expired'));
    assert.ok((r.certificate?.daysLeft ?? 0) < 0);
    assert.equal(r.grade, 'C');
  });

  test('wrong-name certificate', async () => {
    const r = await checkWith(() => {}, await wrongNameCert(ca));
    assert.equal(r.certificate?.trusted, true);
    assert.equal(r.certificate?.nameMatches, false);
    assert.deepEqual(ids(r).filter((i) => i.startsWith('cert.')), ['cert.name-mismatch']);
    assert.equal(r.grade, 'C');
  });

  test('self-signed certificate', async () => {
    const r = await checkWith(() => {}, await selfSigned(['localhost']));
    assert.equal(r.certificate?.trusted, false);
    assert.equal(r.certificate?.verifyError, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    assert.ok(ids(r).includes('cert.self-signed'));
    assert.equal(r.certificate?.chain[0]?.subject, r.certificate?.chain[0]?.issuer);
  });

  test('TLS 1.0 enabled (minVersion TLSv1): TLS 1.0 and 1.1 accepted, grade B', async () => {
    const r = await checkWith((cfg) => {
      cfg.tls.minVersion = 'TLSv1';
    }, await issueCert(ca, { names: ['localhost'] }));
    assert.equal(r.tls?.versions.TLSv1, 'accepted');
    assert.equal(r.tls?.versions['TLSv1.1'], 'accepted');
    assert.ok(ids(r).includes('tls.version.tls1'));
    assert.ok(ids(r).includes('tls.version.tls1_1'));
    assert.equal(r.grade, 'B');
  });

  test('submission (encrypt + AUTH): MAIL before TLS gets 530, AUTH only inside TLS', async () => {
    const r = await checkWith(() => {}, await issueCert(ca, { names: ['localhost'] }), 'submission');
    assert.equal(r.target.submission, true);
    assert.equal(r.probes.mailBeforeTls?.code, 530);
    assert.deepEqual(r.smtp.authBeforeTls, []);
    assert.ok((r.smtp.authAfterTls ?? []).length > 0);
    assert.ok(!ids(r).includes('submission.mail-before-tls'));
    assert.ok(!ids(r).includes('auth.before-tls'));
  });

  test('submissions (implicit TLS on its own port)', async () => {
    const r = await checkWith(() => {}, await issueCert(ca, { names: ['localhost'] }), 'submissions');
    assert.equal(r.status, 'checked');
    assert.equal(r.tls?.protocol, 'TLSv1.3');
    assert.equal(r.smtp.ehlo, null);
    assert.ok(r.transcript.every((e) => e.tls));
  });
});
