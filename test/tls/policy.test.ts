/**
 * The server TLS policy, checked with real handshakes against a server that upgrades accepted
 * plaintext sockets the way STARTTLS does: protocol floor (RFC 8996), TLS 1.3 preference,
 * ALPN refusal (RFC 7301 §3.2), renegotiation refused (RFC 9325 §3.5).
 */
import assert from 'node:assert/strict';
import { constants } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { AEAD_CIPHERS, serverContextOptions, upgradeSocketOptions } from '../../src/tls/options.js';
import { makeTestCa, issueCert } from '../helpers/certs.js';
import { closeSocket, connectTls, echo, startWrapServer, type WrapServer } from './harness.js';

const LEGACY_CLIENT = { ciphers: 'DEFAULT:@SECLEVEL=0' } as const;

describe('server TLS policy (STARTTLS-style wrap of a plaintext socket)', () => {
  let server: WrapServer;
  let legacyServer: WrapServer;
  before(async () => {
    const ca = await makeTestCa();
    const pair = await issueCert(ca, { names: ['mx.test', '127.0.0.1'] });
    const ctx = tls.createSecureContext({ ...serverContextOptions(), cert: pair.certPem, key: pair.keyPem });
    const legacyCtx = tls.createSecureContext({
      ...serverContextOptions({ minVersion: 'TLSv1' }),
      cert: pair.certPem,
      key: pair.keyPem,
    });
    server = await startWrapServer(() => ctx);
    legacyServer = await startWrapServer(() => legacyCtx);
  });
  after(async () => {
    await server.close();
    await legacyServer.close();
  });

  test('a TLS 1.1 client is refused with protocol_version (RFC 8996)', async () => {
    const serverError = server.nextError();
    await assert.rejects(
      connectTls(server.port, { ...LEGACY_CLIENT, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1' }),
      { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' },
    );
    assert.equal((await serverError).code, 'ERR_SSL_UNSUPPORTED_PROTOCOL');
  });

  test('a TLS 1.0 client is refused too', async () => {
    await assert.rejects(connectTls(server.port, { ...LEGACY_CLIENT, minVersion: 'TLSv1', maxVersion: 'TLSv1' }), {
      code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
    });
  });

  test('a TLS 1.2-only client is accepted, with an AEAD ECDHE suite', async () => {
    const socket = await connectTls(server.port, { maxVersion: 'TLSv1.2' });
    assert.equal(socket.getProtocol(), 'TLSv1.2');
    assert.match(socket.getCipher().name, /^ECDHE-.*-GCM-|^ECDHE-.*CHACHA20/);
    assert.equal(await echo(socket, 'ping'), 'ping');
    await closeSocket(socket);
  });

  test('a TLS 1.2 client offering only CBC suites is refused (RFC 9325 §4.2: AEAD only)', async () => {
    await assert.rejects(connectTls(server.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA' }), {
      code: 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
    });
  });

  test('TLS 1.3 is chosen when the client offers 1.2 and 1.3', async () => {
    const socket = await connectTls(server.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' });
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    await closeSocket(socket);
  });

  test('ALPN http/1.1 is refused with no_application_protocol (ALPACA, RFC 7301 §3.2)', async () => {
    const serverError = server.nextError();
    await assert.rejects(connectTls(server.port, { ALPNProtocols: ['http/1.1'] }), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    });
    assert.equal((await serverError).code, 'ERR_SSL_NO_APPLICATION_PROTOCOL');
  });

  test('ALPN h2 on TLS 1.2 is refused the same way', async () => {
    await assert.rejects(connectTls(server.port, { ALPNProtocols: ['h2'], maxVersion: 'TLSv1.2' }), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    });
  });

  test('ALPN smtp is accepted, also when offered after a foreign protocol', async () => {
    for (const offer of [['smtp'], ['http/1.1', 'smtp']]) {
      const socket = await connectTls(server.port, { ALPNProtocols: offer });
      assert.equal(socket.alpnProtocol, 'smtp');
      await closeSocket(socket);
    }
  });

  test('no ALPN offered is fine (most MTAs send none)', async () => {
    const socket = await connectTls(server.port);
    assert.equal(socket.alpnProtocol, false);
    await closeSocket(socket);
  });

  test('client-initiated renegotiation on TLS 1.2 fails (no_renegotiation)', async () => {
    const socket = await connectTls(server.port, { maxVersion: 'TLSv1.2' });
    socket.resume();
    // Node reports the refusal either to the renegotiate callback or as a socket error
    // (OpenSSL: "ssl3_read_bytes:no renegotiation"); without SSL_OP_NO_RENEGOTIATION the
    // callback gets null instead.
    const outcome = new Promise<Error | null>((resolve) => {
      socket.once('error', resolve);
      const started = socket.renegotiate({ rejectUnauthorized: false }, (e) => resolve(e));
      if (!started) resolve(new Error('renegotiate() refused to start'));
    });
    socket.write('x'); // drives the renegotiation handshake
    const err = await outcome;
    assert.ok(err instanceof Error, 'renegotiation must not succeed');
    assert.match(err.message, /no renegotiation/i);
    await closeSocket(socket);
  });

  test('policy flags: no renegotiation, no compression, server cipher order, TLS 1.2 floor', () => {
    const o = serverContextOptions();
    assert.equal(o.minVersion, 'TLSv1.2');
    assert.equal(o.maxVersion, undefined);
    assert.equal(o.honorCipherOrder, true);
    assert.equal(o.ciphers, AEAD_CIPHERS);
    const flags = o.secureOptions ?? 0;
    assert.ok(flags & constants.SSL_OP_NO_RENEGOTIATION);
    assert.ok(flags & constants.SSL_OP_NO_COMPRESSION);
  });

  test('test-only override: a server with minVersion TLSv1 accepts a TLS 1.0 client', async () => {
    const socket = await connectTls(legacyServer.port, { ...LEGACY_CLIENT, minVersion: 'TLSv1', maxVersion: 'TLSv1' });
    assert.equal(socket.getProtocol(), 'TLSv1');
    await closeSocket(socket);
  });

  test('no certificate → upgradeSocketOptions is null (the caller answers 454)', () => {
    assert.equal(upgradeSocketOptions(() => null), null);
  });
});
