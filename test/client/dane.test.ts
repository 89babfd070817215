/**
 * Level `dane` (RFC 7672) with real handshakes: DANE-EE(3) authenticates by key or certificate
 * alone (no name, no date, no chain: §3.1.1); DANE-TA(2) needs the anchor in the served chain,
 * the leaf signed under it, in date, naming the MX host or the TLSA base domain (§3.1.2, §3.2);
 * no match ends the attempt with TLS_DANE_FAILED before any SMTP byte inside TLS; records that
 * are all unusable (§3.1.3) or malformed make no connection at all at this level.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { deliver } from '../../src/client/index.js';
import { verifyDane, type TlsaRecord } from '../../src/tls/dane.js';
import { expiredCert, issueCert, makeTestCa, selfSigned, wrongNameCert, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { acceptMessage, acceptStartTls, drainUntilQuit, greetAndEhlo, type ScriptPeer, scriptedServers } from './scripted-server.js';
import { assertNothingSent, deliverOptions, MX_NAME, tlsServerOptions } from './fixtures.js';

const serve = scriptedServers();
let ca: TestCa;

function der(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

/** A TLSA record for a certificate (the first one of the PEM). */
function tlsa(usage: number, selector: number, matchingType: number, pem: string): TlsaRecord {
  const cert = der(pem);
  const content = selector === 0 ? cert.raw : Buffer.from(cert.publicKey.export({ type: 'spki', format: 'der' }));
  const data = matchingType === 0 ? content : createHash(matchingType === 1 ? 'sha256' : 'sha512').update(content).digest();
  return { usage, selector, matchingType, data };
}

function tlsThenMail(pair: PemKeyPair) {
  return async (p: ScriptPeer): Promise<void> => {
    await greetAndEhlo(p, ['STARTTLS']);
    await acceptStartTls(p, tlsServerOptions(pair), ['PIPELINING']);
    await acceptMessage(p);
  };
}

/** The server completes TLS, then waits for whatever the client does (it must only QUIT or close). */
function tlsThenWatch(pair: PemKeyPair) {
  return async (p: ScriptPeer): Promise<void> => {
    await greetAndEhlo(p, ['STARTTLS']);
    await p.expect('STARTTLS');
    await p.write('220 2.0.0 go ahead\r\n');
    await p.startTls(tlsServerOptions(pair));
    await drainUntilQuit(p);
  };
}

before(async () => {
  ca = await makeTestCa();
});

describe('DANE-EE(3): the key or certificate alone (RFC 7672 §3.1.1)', () => {
  const cases: Array<[string, () => Promise<PemKeyPair>]> = [
    ['self-signed', () => selfSigned([MX_NAME])],
    ['expired', () => expiredCert(ca, [MX_NAME])],
    ['wrong name', () => wrongNameCert(ca)],
  ];
  for (const [name, make] of cases) {
    it(`3 1 1 matching a ${name} certificate → delivered, reached dane`, async () => {
      const pair = await make();
      const srv = await serve(tlsThenMail(pair));
      // The client trusts the CA: PKIX must play no part (and would fail on all three).
      const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(3, 1, 1, pair.certPem)] } }));
      assert.equal(r.error, null, JSON.stringify(r.error));
      assert.equal(r.ok, true);
      assert.equal(r.reached, 'dane');
      assert.equal(r.tls?.dane, 'ee');
      assert.equal(r.tls?.daneError, null);
      assert.equal(srv.peers[0]?.servername, MX_NAME, 'SNI is the MX host name');
      assert.equal(r.findings.some((f) => f.kind === 'certificate-not-verified'), false);
    });
  }

  for (const [s, m] of [[0, 0], [0, 2], [1, 0], [1, 2]] as const) {
    it(`3 ${s} ${m} matching → delivered`, async () => {
      const pair = await selfSigned([MX_NAME]);
      const srv = await serve(tlsThenMail(pair));
      const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(3, s, m, pair.certPem)] } }));
      assert.equal(r.error, null, JSON.stringify(r.error));
      assert.equal(r.tls?.dane, 'ee');
    });
  }

  it('3 1 1 not matching → TLS_DANE_FAILED, nothing sent after the handshake', async () => {
    const served = await issueCert(ca, { names: [MX_NAME] });
    const other = await selfSigned([MX_NAME]);
    const srv = await serve(tlsThenWatch(served));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(3, 1, 1, other.certPem)] }, auth: { user: 'u@fake.test', password: 'pw' } }));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED', JSON.stringify(r.error));
    assert.equal(r.error?.permanent, false, 'a DANE failure defers');
    assert.equal(r.reached, 'encrypt', 'TLS was up, the peer not authenticated (as for TLS_VERIFY_FAILED)');
    assert.equal(r.tls?.dane, null);
    assert.match(r.tls?.daneError ?? '', /DANE-EE/);
    assert.equal(r.recipients[0]?.status, 'deferred');
    await srv.settled();
    assert.equal(srv.received({ phase: 'tls' }), '', 'the client wrote SMTP inside an unauthenticated session');
    assert.equal(assertNothingSent(srv.received()), null);
  });

  it('STARTTLS not offered at dane → TLS_REQUIRED_NOT_OFFERED, nothing sent', async () => {
    const pair = await selfSigned([MX_NAME]);
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['PIPELINING']);
      await drainUntilQuit(p);
    });
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(3, 1, 1, pair.certPem)] } }));
    assert.equal(r.error?.code, 'TLS_REQUIRED_NOT_OFFERED');
    await srv.settled();
    assert.equal(assertNothingSent(srv.received()), null);
  });
});

describe('DANE-TA(2): anchor in the served chain, chain and name checks (RFC 7672 §3.1.2, §3.2)', () => {
  it('2 0 1 with the CA served and the MX name → delivered, reached dane (ta)', async () => {
    const leaf = await issueCert(ca, { names: [MX_NAME], includeChain: true });
    const srv = await serve(tlsThenMail(leaf));
    // No `ca` trust at all: DANE-TA needs none.
    const r = await deliver(deliverOptions(srv.port, 'dane', '', { tls: {}, dane: { tlsa: [tlsa(2, 0, 1, ca.certPem)] } }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.reached, 'dane');
    assert.equal(r.tls?.dane, 'ta');
  });

  it('2 0 1 with a wrong name → TLS_DANE_FAILED, nothing sent', async () => {
    const leaf = await issueCert(ca, { names: ['other.fake.test'], includeChain: true });
    const srv = await serve(tlsThenWatch(leaf));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(2, 0, 1, ca.certPem)] } }));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED', JSON.stringify(r.error));
    assert.match(r.tls?.daneError ?? '', /names none of mx\.fake\.test/);
    await srv.settled();
    assert.equal(srv.received({ phase: 'tls' }), '');
  });

  it('2 1 1: the leaf names the TLSA base domain given as a reference identifier → delivered', async () => {
    const leaf = await issueCert(ca, { names: ['base.fake.test'], includeChain: true });
    const srv = await serve(tlsThenMail(leaf));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(2, 1, 1, ca.certPem)], names: [MX_NAME, 'base.fake.test'] } }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.tls?.dane, 'ta');
  });

  it('2 0 1 with the CA NOT served → TLS_DANE_FAILED even though the client holds that CA', async () => {
    const leaf = await issueCert(ca, { names: [MX_NAME] });
    const srv = await serve(tlsThenWatch(leaf));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(2, 0, 1, ca.certPem)] } }));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED', JSON.stringify(r.error));
    await srv.settled();
  });

  it('2 0 1 with an expired leaf under the anchor → TLS_DANE_FAILED', async () => {
    const leaf = await expiredCert(ca, [MX_NAME]);
    const srv = await serve(tlsThenWatch({ certPem: leaf.certPem + ca.certPem, keyPem: leaf.keyPem }));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [tlsa(2, 0, 1, ca.certPem)] } }));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED', JSON.stringify(r.error));
    assert.match(r.tls?.daneError ?? '', /expired/);
    await srv.settled();
  });
});

describe('unusable and malformed records (RFC 7672 §3.1.3)', () => {
  it('only PKIX-TA/PKIX-EE records → TLS_DANE_FAILED without connecting', async () => {
    const leaf = await issueCert(ca, { names: [MX_NAME], includeChain: true });
    const r = await deliver(deliverOptions(1, 'dane', ca.certPem, { dane: { tlsa: [tlsa(1, 1, 1, leaf.certPem), tlsa(0, 0, 1, ca.certPem)] } }));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED');
    assert.equal(r.connections, 0);
  });

  it('no records at level dane → TLS_DANE_FAILED without connecting', async () => {
    const r = await deliver(deliverOptions(1, 'dane', ca.certPem));
    assert.equal(r.error?.code, 'TLS_DANE_FAILED');
    assert.equal(r.connections, 0);
  });

  it('a SHA-256 record of 31 octets is unusable; beside a good record the good one decides', async () => {
    const pair = await selfSigned([MX_NAME]);
    const good = tlsa(3, 1, 1, pair.certPem);
    const short: TlsaRecord = { ...good, data: good.data.subarray(0, 31) };
    const alone = await deliver(deliverOptions(1, 'dane', ca.certPem, { dane: { tlsa: [short] } }));
    assert.equal(alone.error?.code, 'TLS_DANE_FAILED');
    assert.equal(alone.connections, 0);
    const srv = await serve(tlsThenMail(pair));
    const r = await deliver(deliverOptions(srv.port, 'dane', ca.certPem, { dane: { tlsa: [short, good] } }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.tls?.dane, 'ee');
  });
});

describe('verifyDane (pure)', () => {
  it('DANE-TA matching the leaf itself does not count (the anchor is above the leaf)', async () => {
    const pair = await selfSigned([MX_NAME]);
    const v = verifyDane([tlsa(2, 0, 1, pair.certPem)], [der(pair.certPem).raw], [MX_NAME]);
    assert.equal(v.matched, null);
  });

  it('DANE-TA: an anchor that did not sign the leaf is refused', async () => {
    const other = await makeTestCa({ commonName: 'postseal test CA' });
    const leaf = await issueCert(ca, { names: [MX_NAME] });
    const v = verifyDane([tlsa(2, 0, 1, other.certPem)], [der(leaf.certPem).raw, der(other.certPem).raw], [MX_NAME]);
    assert.equal(v.matched, null);
    assert.match(v.error ?? '', /not signed/);
  });

  it('DANE-TA: a wildcard names one label only', async () => {
    const leaf = await issueCert(ca, { names: ['*.fake.test'] });
    const chain = [der(leaf.certPem).raw, der(ca.certPem).raw];
    assert.equal(verifyDane([tlsa(2, 1, 1, ca.certPem)], chain, ['mx.fake.test']).matched, 'ta');
    assert.equal(verifyDane([tlsa(2, 1, 1, ca.certPem)], chain, ['a.mx.fake.test']).matched, null);
  });
});
