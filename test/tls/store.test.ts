/**
 * CertificateStore: reload swaps the certificate for new handshakes only, a bad file keeps the
 * old one, the directory watcher reloads on rename-replacement and in-place writes, the empty
 * store means "no STARTTLS", and tls.createServer stays in step through bindServer.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import net from 'node:net';
import tls from 'node:tls';
import { implicitTlsServerOptions } from '../../src/tls/options.js';
import { CertificateStore, type ReloadResult } from '../../src/tls/store.js';
import { issueCert, makeTestCa, writeKeyPair, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { closeSocket, connectTls, echo, startWrapServer } from './harness.js';

let dir: string;
let ca: TestCa;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-store-'));
  ca = await makeTestCa();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** Via getPeerCertificate(): getPeerX509Certificate() empties later peer-cert calls on Node 20. */
function peerFingerprint(socket: tls.TLSSocket): string | undefined {
  const cert = socket.getPeerCertificate();
  return typeof cert.fingerprint256 === 'string' ? cert.fingerprint256 : undefined;
}

/** Resolves with the first reload result that satisfies `pred`. */
function reloadWhere(store: CertificateStore, pred: (r: ReloadResult) => boolean): Promise<ReloadResult> {
  return new Promise((resolve) => {
    const off = store.onReload((r) => {
      if (pred(r)) {
        off();
        resolve(r);
      }
    });
  });
}

async function replaceByRename(file: string, text: string): Promise<void> {
  const tmp = `${file}.new`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

describe('CertificateStore', () => {
  test('reload: new handshakes get the new certificate, a live session keeps working', async () => {
    const a = await issueCert(ca, { names: ['a.test'] });
    const b = await issueCert(ca, { names: ['b.test'] });
    const files = await writeKeyPair(join(dir, 'reload'), a);
    const store = await CertificateStore.fromFiles(files.certFile, files.keyFile);
    const server = await startWrapServer(store.getter);
    try {
      const live = await connectTls(server.port);
      assert.equal(peerFingerprint(live), fingerprintOf(a.certPem));
      assert.equal(store.certificate()?.fingerprint256, fingerprintOf(a.certPem));

      await writeKeyPair(join(dir, 'reload'), b);
      const result = await store.reload();
      assert.equal(result.ok, true);
      assert.ok(result.ok && result.changed);
      assert.equal(store.certificate()?.fingerprint256, fingerprintOf(b.certPem));

      const fresh = await connectTls(server.port);
      assert.equal(peerFingerprint(fresh), fingerprintOf(b.certPem));
      // The session that started before the reload is untouched and still usable.
      assert.equal(await echo(live, 'still here'), 'still here');
      assert.equal(peerFingerprint(live), fingerprintOf(a.certPem));
      await closeSocket(fresh);
      await closeSocket(live);
    } finally {
      store.close();
      await server.close();
    }
  });

  test('a bad new file keeps the old certificate and reports TLS_CERT_INVALID', async () => {
    const a = await issueCert(ca, { names: ['keep.test'] });
    const other = await issueCert(ca, { names: ['other.test'] });
    const files = await writeKeyPair(join(dir, 'bad'), a);
    const store = await CertificateStore.fromFiles(files.certFile, files.keyFile);
    const server = await startWrapServer(store.getter);
    try {
      const reported = reloadWhere(store, () => true);
      await writeFile(files.certFile, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
      const result = await store.reload();
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.error.code, 'TLS_CERT_INVALID');
      assert.equal(await reported, result);

      // A certificate whose key is not in the key file is refused as well.
      await writeFile(files.certFile, other.certPem);
      const mismatch = await store.reload();
      assert.equal(mismatch.ok, false);
      assert.ok(!mismatch.ok && mismatch.error.message.includes(files.keyFile));

      const socket = await connectTls(server.port);
      assert.equal(peerFingerprint(socket), fingerprintOf(a.certPem));
      await closeSocket(socket);
    } finally {
      store.close();
      await server.close();
    }
  });

  test('the watcher reloads after rename-replacement and after an in-place write', async () => {
    const a = await issueCert(ca, { names: ['w1.test'] });
    const b = await issueCert(ca, { names: ['w2.test'] });
    const c = await issueCert(ca, { names: ['w3.test'] });
    const files = await writeKeyPair(join(dir, 'watch'), a);
    const store = await CertificateStore.fromFiles(files.certFile, files.keyFile, { debounceMs: 50 });
    store.watch();
    const server = await startWrapServer(store.getter);
    const reachedFingerprint = (pair: PemKeyPair) =>
      reloadWhere(store, (r) => r.ok && r.certificate.fingerprint256 === fingerprintOf(pair.certPem));
    try {
      // Editor/certbot style: new files renamed over the old ones (new inodes).
      const toB = reachedFingerprint(b);
      await replaceByRename(files.keyFile, b.keyPem);
      await replaceByRename(files.certFile, b.certPem);
      await toB;
      const s1 = await connectTls(server.port);
      assert.equal(peerFingerprint(s1), fingerprintOf(b.certPem));
      await closeSocket(s1);

      // In-place rewrite of the same inodes, after the watcher survived the renames.
      const toC = reachedFingerprint(c);
      await writeFile(files.keyFile, c.keyPem);
      await writeFile(files.certFile, c.certPem);
      await toC;
      const s2 = await connectTls(server.port);
      assert.equal(peerFingerprint(s2), fingerprintOf(c.certPem));
      await closeSocket(s2);
    } finally {
      store.close();
      await server.close();
    }
  });

  test('the empty store has no context: the server declines TLS (454) and stays plaintext', async () => {
    const store = CertificateStore.empty();
    assert.equal(store.current(), null);
    assert.equal(store.certificate(), null);
    const result = await store.reload();
    assert.equal(!result.ok && result.error.code, 'TLS_NO_CERTIFICATE');
    const server = await startWrapServer(store.getter);
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const raw = net.connect(server.port, '127.0.0.1');
        raw.once('data', (d: Buffer) => {
          resolve(d.toString('latin1'));
          raw.destroy();
        });
        raw.once('error', reject);
      });
      assert.match(line, /^454 /);
    } finally {
      store.close();
      await server.close();
    }
  });

  test('tls.createServer: bindServer keeps the no-SNI default in step; SNI clients too; ALPN enforced', async () => {
    const a = await issueCert(ca, { names: ['i1.test'] });
    const b = await issueCert(ca, { names: ['i2.test'] });
    const files = await writeKeyPair(join(dir, 'implicit'), a);
    const store = await CertificateStore.fromFiles(files.certFile, files.keyFile);
    const server = tls.createServer(implicitTlsServerOptions(store.getter), (s) => s.pipe(s));
    server.on('tlsClientError', () => undefined);
    const unbind = store.bindServer(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const port = address.port;
    try {
      const before = await connectTls(port); // by IP: no SNI sent
      assert.equal(peerFingerprint(before), fingerprintOf(a.certPem));
      await closeSocket(before);

      await writeKeyPair(join(dir, 'implicit'), b);
      assert.equal((await store.reload()).ok, true);
      for (const servername of [undefined, 'i2.test']) {
        const s = await connectTls(port, servername === undefined ? {} : { servername });
        assert.equal(peerFingerprint(s), fingerprintOf(b.certPem), `servername=${String(servername)}`);
        assert.equal(s.getProtocol(), 'TLSv1.3');
        await closeSocket(s);
      }
      await assert.rejects(connectTls(port, { ALPNProtocols: ['http/1.1'] }), {
        code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
      });
      await assert.rejects(connectTls(port, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }), {
        code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
      });
    } finally {
      unbind();
      store.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
