/**
 * Certificate checks by level: `verify` refuses a wrong name, an expired certificate, a
 * self-signed one and an unknown CA (TLS_VERIFY_FAILED, nothing sent inside TLS); `encrypt`
 * accepts them and reports why they would not verify. The name checked is the one we meant to
 * reach, never the IP we connected to; SNI carries it (none for IP literals, RFC 6066 §3).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deliver, SmtpClient, uniformTimeouts } from '../../src/client/index.js';
import { expiredCert, issueCert, makeTestCa, selfSigned, wrongNameCert, type PemKeyPair } from '../helpers/certs.js';
import { acceptMessage, acceptStartTls, drainUntilQuit, greetAndEhlo, type ScriptedServer, type ScriptPeer, scriptedServers } from './scripted-server.js';
import { assertNothingSent, deliverOptions, MX_NAME, testPki, tlsServerOptions } from './fixtures.js';

let caPem = '';
const bad: Record<string, PemKeyPair> = {};
let good: PemKeyPair;
const serve = scriptedServers();

before(async () => {
  const pki = await testPki();
  caPem = pki.ca.certPem;
  good = pki.good;
  bad['wrong name'] = await wrongNameCert(pki.ca);
  bad['expired'] = await expiredCert(pki.ca, [MX_NAME]);
  bad['self-signed'] = await selfSigned([MX_NAME]);
  bad['unknown CA'] = await issueCert(await makeTestCa({ commonName: 'some other CA' }), { names: [MX_NAME] });
});


function tlsThenMail(pair: () => PemKeyPair) {
  return async (p: ScriptPeer): Promise<void> => {
    await greetAndEhlo(p, ['STARTTLS']);
    await acceptStartTls(p, tlsServerOptions(pair()), ['PIPELINING']);
    await acceptMessage(p);
  };
}

describe('verify refuses, encrypt accepts', () => {
  for (const name of ['wrong name', 'expired', 'self-signed', 'unknown CA']) {
    it(`verify: ${name} → TLS_VERIFY_FAILED, nothing sent inside TLS`, async () => {
      const srv = await serve(async (p) => {
        await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN']);
        await p.expect('STARTTLS');
        await p.write('220 2.0.0 go ahead\r\n');
        await p.startTls(tlsServerOptions(bad[name] ?? good));
        await drainUntilQuit(p);
      });
      const r = await deliver(deliverOptions(srv.port, 'verify', caPem, { auth: { user: 'u@fake.test', password: 'pw' } }));
      assert.equal(r.error?.code, 'TLS_VERIFY_FAILED', JSON.stringify(r.error));
      assert.equal(r.tls?.verified, false);
      assert.ok(r.tls?.verifyError);
      await srv.settled();
      assert.equal(srv.received({ phase: 'tls' }), '', 'the client wrote SMTP inside an unverified session');
      assert.equal(assertNothingSent(srv.received()), null);
    });

    it(`encrypt: ${name} is accepted and reported as not verified`, async () => {
      const srv = await serve(tlsThenMail(() => bad[name] ?? good));
      const r = await deliver(deliverOptions(srv.port, 'encrypt', caPem));
      assert.equal(r.error, null, JSON.stringify(r.error));
      assert.equal(r.ok, true);
      assert.equal(r.reached, 'encrypt');
      assert.equal(r.tls?.verified, false);
      assert.ok(r.findings.some((f) => f.kind === 'certificate-not-verified'));
    });
  }

  it('verify: a good chain for the intended name is accepted, SNI is that name', async () => {
    const srv = await serve(tlsThenMail(() => good));
    const r = await deliver(deliverOptions(srv.port, 'verify', caPem));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.reached, 'verify');
    assert.equal(r.tls?.checkedName, MX_NAME);
    assert.equal(srv.peers[0]?.servername, MX_NAME);
    assert.match(r.tls?.protocol ?? '', /^TLSv1\.[23]$/);
    assert.equal(r.tls?.peerCertificates[0]?.subjectAltNames.some((n) => n.value === MX_NAME), true);
  });

  it('verify: the name checked is the intended host, not the IP connected to', async () => {
    const ipOnly = await issueCert((await testPki()).ca, { names: ['127.0.0.1'] });
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS']);
      await p.expect('STARTTLS');
      await p.write('220 go\r\n');
      await p.startTls(tlsServerOptions(ipOnly));
      await drainUntilQuit(p);
    });
    // Connected to 127.0.0.1, meant to reach mx.fake.test: a cert naming only the IP is wrong.
    const r = await deliver(deliverOptions(srv.port, 'verify', caPem));
    assert.equal(r.error?.code, 'TLS_VERIFY_FAILED');
  });

  it('verify to an IP literal: no SNI is sent (Node forbids it), the IP SAN is checked', async () => {
    const ipCert = await issueCert((await testPki()).ca, { names: ['127.0.0.1'] });
    const srv = await serve(tlsThenMail(() => ipCert));
    const r = await deliver(deliverOptions(srv.port, 'verify', caPem, { serverName: '127.0.0.1' }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.reached, 'verify');
    assert.equal(srv.peers[0]?.servername, false);
    assert.equal(r.tls?.sni, null);
  });

  it('verify over implicit TLS refuses an untrusted certificate before reading the greeting', async () => {
    const tls = await import('node:tls');
    const pair = bad['self-signed'];
    assert.ok(pair);
    const received: string[] = [];
    const server = tls.createServer({ key: pair.keyPem, cert: pair.certPem }, (s) => {
      s.on('data', (d: Buffer) => received.push(d.toString()));
      s.on('error', () => undefined);
      s.write('220 implicit ESMTP\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    try {
      await assert.rejects(
        SmtpClient.connect({ host: '127.0.0.1', port: addr.port, serverName: MX_NAME, implicitTls: true, tls: { ca: caPem }, timeouts: uniformTimeouts(5000) }),
        (e: unknown) => (e as { code?: string }).code === 'TLS_VERIFY_FAILED',
      );
      assert.deepEqual(received, []);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
