/**
 * Session and certificate summaries from real handshakes: TlsFacts on both sides, and the peer
 * chain description (key type/bits, signature algorithm, SANs, validity) the client and checker use.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { serverContextOptions } from '../../src/tls/options.js';
import {
  describePeerCertificate,
  signatureAlgorithm,
  summarizeCertificate,
  summarizeTls,
  type CertificateSummary,
} from '../../src/tls/summary.js';
import type { TlsFacts } from '../../src/types.js';
import { issueCert, makeTestCa, type TestCa } from '../helpers/certs.js';
import { startWrapServer, type WrapServer } from './harness.js';

interface Observed {
  client: TlsFacts;
  server: TlsFacts;
  chain: CertificateSummary[];
}

/** Handshake, reading both sides' facts inside the handshake callbacks. */
function observe(server: WrapServer, serverFacts: Promise<TlsFacts>, options: tls.ConnectionOptions): Promise<Observed> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false, ...options }, () => {
      const client = summarizeTls(socket);
      const chain = describePeerCertificate(socket);
      serverFacts.then((s) => {
        socket.destroy();
        resolve({ client, server: s, chain });
      }, reject);
    });
    socket.once('error', reject);
  });
}

describe('summaries', () => {
  let ca: TestCa;
  let server: WrapServer;
  let nextServerFacts: ((f: TlsFacts) => void) | null = null;
  before(async () => {
    ca = await makeTestCa({ keyType: 'rsa' });
    const pair = await issueCert(ca, { names: ['mx.test', '127.0.0.1'], includeChain: true });
    const ctx = tls.createSecureContext({ ...serverContextOptions(), cert: pair.certPem, key: pair.keyPem });
    server = await startWrapServer(
      () => ctx,
      (s) => {
        nextServerFacts?.(summarizeTls(s));
        s.pipe(s);
      },
    );
  });
  after(async () => {
    await server.close();
  });
  const serverFacts = () => new Promise<TlsFacts>((resolve) => (nextServerFacts = resolve));

  test('TLS 1.3 with SNI and ALPN: facts on both sides', async () => {
    const o = await observe(server, serverFacts(), { servername: 'mx.test', ALPNProtocols: ['smtp'] });
    assert.equal(o.client.protocol, 'TLSv1.3');
    assert.equal(o.server.protocol, 'TLSv1.3');
    assert.equal(o.client.cipher, o.server.cipher);
    assert.match(o.client.cipher, /^TLS_(AES|CHACHA20)/);
    assert.equal(o.client.group, 'X25519');
    assert.equal(o.server.group, null); // Node does not report it server-side
    assert.equal(o.server.sni, 'mx.test');
    assert.equal(o.client.sni, 'mx.test');
    assert.equal(o.server.alpn, 'smtp');
    assert.equal(o.client.alpn, 'smtp');
  });

  test('TLS 1.2 without SNI or ALPN', async () => {
    const o = await observe(server, serverFacts(), { maxVersion: 'TLSv1.2' });
    assert.equal(o.server.protocol, 'TLSv1.2');
    assert.equal(o.server.sni, null);
    assert.equal(o.server.alpn, null);
  });

  test('describePeerCertificate: leaf and CA, with key, signature and SANs', async () => {
    const o = await observe(server, serverFacts(), { servername: 'mx.test' });
    assert.equal(o.chain.length, 2);
    const [leaf, root] = o.chain;
    assert.ok(leaf !== undefined && root !== undefined);
    assert.equal(leaf.subject, 'CN=mx.test');
    assert.equal(leaf.issuer, 'CN=postseal test CA');
    assert.deepEqual(leaf.subjectAltNames, [
      { type: 'dns', value: 'mx.test' },
      { type: 'ip', value: '127.0.0.1' },
    ]);
    assert.deepEqual(leaf.key, { type: 'ec', bits: 256, curve: 'prime256v1' });
    // Signed by the RSA CA with SHA-256.
    assert.equal(leaf.signatureAlgorithm.name, 'sha256WithRSAEncryption');
    assert.equal(leaf.isCa, false);
    assert.equal(leaf.selfSigned, false);
    assert.match(leaf.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(Date.parse(leaf.notBefore) < Date.now() && Date.now() < Date.parse(leaf.notAfter));
    assert.equal(root.isCa, true);
    assert.equal(root.selfSigned, true);
    assert.equal(root.key.type, 'rsa');
    assert.equal(root.key.bits, 2048);
  });

  test('describePeerCertificate is repeatable and unaffected by an earlier getPeerCertificate()', async () => {
    const counts = await new Promise<number[]>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false }, () => {
        const plain = socket.getPeerCertificate();
        const result = [Object.keys(plain).length > 0 ? 1 : 0, describePeerCertificate(socket).length];
        result.push(describePeerCertificate(socket).length);
        socket.destroy();
        resolve(result);
      });
      socket.once('error', reject);
    });
    assert.deepEqual(counts, [1, 2, 2]);
  });

  test('signatureAlgorithm degrades to unknown on garbage', () => {
    assert.deepEqual(signatureAlgorithm(new Uint8Array([0x30, 0x03, 0x01])), { oid: '', name: 'unknown' });
    assert.equal(summarizeCertificate(ca.certPem).signatureAlgorithm.oid, '1.2.840.113549.1.1.11');
  });
});
