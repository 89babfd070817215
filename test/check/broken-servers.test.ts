/**
 * checkHost against deliberately broken servers (test/check/broken-server.ts): each flaw must
 * produce its finding, and a server without the flaw must not.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import type { HostReport } from '../../src/check/types.js';
import { issueCert, makeTestCa, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startBrokenServer, type Flaws } from './broken-server.js';

let ca: TestCa;
let pair: PemKeyPair;
before(async () => {
  ca = await makeTestCa();
  pair = await issueCert(ca, { names: ['localhost'] });
});

async function check(flaws: Flaws): Promise<HostReport> {
  const s = await startBrokenServer(pair, flaws);
  try {
    return await checkHost('localhost', { address: '127.0.0.1', port: s.port, ca: [ca.certPem], timeoutMs: 5000, tlsScan: false });
  } finally {
    await s.close();
  }
}

const ids = (r: HostReport): string[] => r.findings.map((f) => f.id);

describe('checkHost against broken servers', () => {
  test('baseline (no flaw switched on): no STARTTLS finding', async () => {
    const r = await check({});
    assert.equal(r.probes.injectionWholeLine.outcome, 'discarded');
    assert.equal(r.probes.injectionPartialLine.outcome, 'discarded');
    assert.equal(r.probes.stateReset.outcome, 'reset');
    assert.deepEqual(ids(r), []);
  });

  test('executes commands pipelined after STARTTLS: injection (whole and partial line), grade F', async () => {
    const r = await check({ executePipelined: true });
    assert.equal(r.probes.injectionWholeLine.outcome, 'executed');
    assert.match(r.probes.injectionWholeLine.evidence, /250 noop ok/);
    assert.equal(r.probes.injectionPartialLine.outcome, 'executed');
    assert.ok(ids(r).includes('starttls.injection'));
    assert.ok(ids(r).includes('starttls.injection-partial'));
    assert.equal(r.findings[0]?.severity, 'critical');
    assert.equal(r.grade, 'F');
  });

  test('keeps MAIL FROM across STARTTLS: state-kept finding', async () => {
    const r = await check({ keepMail: true });
    assert.equal(r.probes.stateReset.outcome, 'kept');
    assert.deepEqual(ids(r), ['starttls.state-kept']);
    assert.equal(r.grade, 'C');
  });

  test('answers STARTTLS with a 220 plus extra lines in the same segment: bytes-after-220 finding', async () => {
    const r = await check({ extraAfter220: '250-injected\r\n250 AUTH PLAIN\r\n' });
    assert.equal(r.smtp.bytesAfterStarttls, '250-injected\\r\\n250 AUTH PLAIN\\r\\n');
    assert.ok(ids(r).includes('starttls.bytes-after-220'));
    // The extra lines were not read as if they came through TLS: the EHLO inside TLS is the real one.
    assert.deepEqual(Object.keys(r.smtp.ehloAfterTls ?? {}), ['PIPELINING', 'AUTH']);
    // The conversation shows them as received in plaintext, before the upgrade.
    assert.ok(r.transcript.some((e) => !e.tls && e.dir === 'event' && /bytes arrived after the 220/.test(e.text)));
  });

  test('strips STARTTLS from EHLO (but the command works): not-advertised finding', async () => {
    const r = await check({ stripStarttls: true });
    assert.equal(r.smtp.starttlsAdvertised, false);
    assert.notEqual(r.tls, null);
    assert.deepEqual(ids(r), ['starttls.not-advertised']);
  });

  test('offers AUTH before TLS: auth-before-tls finding, and no AUTH is attempted', async () => {
    const r = await check({ authBeforeTls: true });
    assert.deepEqual(r.smtp.authBeforeTls, ['PLAIN', 'LOGIN']);
    assert.ok(ids(r).includes('auth.before-tls'));
    assert.ok(r.transcript.every((e) => e.dir !== 'client' || !/^AUTH/i.test(e.text)));
  });
});
