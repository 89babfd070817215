/**
 * The checker's newer probes and verdicts against deliberately broken servers
 * (test/check/broken-server.ts) and postseal's own server: a 250 to anything is not "executed",
 * probes blocked by policy say `inconclusive`, a second STARTTLS / STARTTLS with an argument
 * accepted, the early talker, every certificate problem at once, implicit TLS found on any port.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { checkHost, type CheckHostOptions } from '../../src/check/host.js';
import type { HostReport } from '../../src/check/types.js';
import { expiredCert, issueCert, makeTestCa, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startTestServer } from '../helpers/server.js';
import { startBrokenServer, type Flaws } from './broken-server.js';

let ca: TestCa;
let pair: PemKeyPair;
before(async () => {
  ca = await makeTestCa();
  pair = await issueCert(ca, { names: ['localhost'] });
});

async function check(flaws: Flaws, opts: CheckHostOptions = {}, serverPair = pair): Promise<HostReport> {
  const s = await startBrokenServer(serverPair, flaws);
  try {
    return await checkHost('localhost', { address: '127.0.0.1', port: s.port, ca: [ca.certPem], timeoutMs: 5000, tlsScan: false, ...opts });
  } finally {
    await s.close();
  }
}

const ids = (r: HostReport): string[] => r.findings.map((f) => f.id);

describe('checker probes (issue 9 items 7-10)', () => {
  test('a server that answers 250 to any line: the partial-line injection is not "executed"', async () => {
    const r = await check({ answerAnything: true });
    assert.notEqual(r.probes.injectionPartialLine.outcome, 'executed', r.probes.injectionPartialLine.evidence);
    assert.equal(r.probes.injectionPartialLine.outcome, 'inconclusive');
    assert.match(r.probes.injectionPartialLine.evidence, /unknown/);
    assert.ok(!ids(r).includes('starttls.injection-partial'));
    assert.ok(ids(r).includes('probe.inconclusive'));
    // The same server really executing pipelined plaintext is still caught.
    const both = await check({ answerAnything: true, executePipelined: true });
    assert.equal(both.probes.injectionWholeLine.outcome, 'executed');
  });

  test('MAIL refused with 530 before TLS: the state probe says inconclusive (not silence)', async () => {
    const r = await check({ mailNeedsTls: true });
    assert.equal(r.probes.stateReset.outcome, 'inconclusive');
    assert.match(r.probes.stateReset.evidence, /530/);
    assert.ok(r.findings.some((f) => f.id === 'probe.inconclusive' && /state reset/.test(f.detail)));
  });

  test('a second STARTTLS inside TLS answered 220, STARTTLS with an argument accepted: findings', async () => {
    const good = await check({});
    assert.equal(good.probes.starttlsAgain.outcome, 'refused');
    assert.equal(good.probes.starttlsArgument.outcome, 'refused');
    const r = await check({ starttlsAgain: true, starttlsArgument: true });
    assert.equal(r.probes.starttlsAgain.outcome, 'accepted');
    assert.match(r.probes.starttlsAgain.evidence, /220 go ahead again/);
    assert.equal(r.probes.starttlsArgument.outcome, 'accepted');
    assert.ok(ids(r).includes('starttls.again-accepted'));
    assert.ok(ids(r).includes('starttls.argument-accepted'));
  });

  test('early talker: a server that answers commands sent before its greeting (a fact, not a finding)', async () => {
    const r = await check({});
    assert.equal(r.probes.earlyTalker.outcome, 'answered');
    assert.match(r.probes.earlyTalker.evidence, /before the greeting answered 250/);
    assert.deepEqual(ids(r), []);
  });

  test('an expired certificate from an unknown CA for another name: expired, untrusted and name mismatch together', async () => {
    const stranger = await makeTestCa({ commonName: 'unknown CA' });
    const bad = await expiredCert(stranger, ['other.invalid']);
    const r = await check({}, {}, bad);
    const c = r.certificate;
    assert.ok(c);
    assert.deepEqual([...c.problems].sort(), ['expired', 'name-mismatch', 'untrusted']);
    for (const id of ['cert.expired', 'cert.untrusted', 'cert.name-mismatch']) assert.ok(ids(r).includes(id), `${id} in ${ids(r).join(' ')}`);
    // From a known CA, expired only: not reported as untrusted.
    const known = await check({}, {}, await expiredCert(ca, ['localhost']));
    assert.deepEqual(known.certificate?.problems, ['expired']);
    assert.ok(!ids(known).includes('cert.untrusted'));
  });

  test('implicit TLS on a port other than 465 is found without waiting for the full timeout', async () => {
    const started = Date.now();
    const r = await check({ implicitTls: true }, { timeoutMs: 20_000 });
    assert.equal(r.status, 'checked', JSON.stringify(r.error));
    assert.equal(r.target.mode, 'implicit');
    assert.match(r.smtp.greeting?.text ?? '', /implicit TLS/);
    assert.ok(r.transcript.some((e) => e.dir === 'event' && /no greeting/.test(e.text)));
    // Bounded by the short greeting wait, not by the 20 s timeout (a bound, not a timing measurement).
    assert.ok(Date.now() - started < 19_000);
  });

  test('postseal serve: refuses a second STARTTLS and STARTTLS with an argument; imposes its cipher order', async () => {
    const s = await startTestServer();
    try {
      const r = await checkHost('localhost', { address: '127.0.0.1', port: s.port('mx'), ca: [s.caPem], timeoutMs: 10_000 });
      assert.equal(r.probes.starttlsAgain.outcome, 'refused', r.probes.starttlsAgain.evidence);
      assert.equal(r.probes.starttlsArgument.outcome, 'refused', r.probes.starttlsArgument.evidence);
      assert.equal(r.tls?.cipherOrder.outcome, 'server', r.tls?.cipherOrder.evidence);
      assert.deepEqual(r.certificate?.problems, []);
    } finally {
      await s.close();
    }
  });
});
