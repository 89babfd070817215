/**
 * The TLS policy as the real server applies it, at STARTTLS (mx) and on implicit TLS
 * (submissions): TLS 1.2 floor (RFC 8996), TLS 1.3 preferred (RFC 9325 §3.1.1), ALPN other than
 * "smtp" refused with no_application_protocol (RFC 7301 §3.2), no renegotiation (RFC 9325 §3.5),
 * and what is stored with a message: the Received header's ESMTPS/ESMTPSA (RFC 3848) with the TLS
 * version and cipher, and the REQUIRETLS flag (RFC 8689).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';

const TLS11 = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' } as const;
const USER = { address: 'carol@postseal.test', password: 'correct horse' };

async function ehlo(c: WireClient): Promise<string[]> {
  const r = await c.cmd('EHLO client.example');
  assert.match(r.at(-1) ?? '', /^250 /);
  return r;
}

/** Plaintext mx session up to the 220 of STARTTLS. */
async function readyForTls(server: TestServer): Promise<WireClient> {
  const c = await WireClient.connect(server.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  await ehlo(c);
  assert.deepEqual(await c.cmd('STARTTLS'), ['220 2.0.0 Ready to start TLS']);
  return c;
}

async function starttls(server: TestServer, opts: tls.ConnectionOptions = {}): Promise<{ c: WireClient; socket: tls.TLSSocket }> {
  const c = await readyForTls(server);
  const socket = await c.startTls(server.caPem, opts);
  return { c, socket };
}

async function implicit(server: TestServer, opts: tls.ConnectionOptions = {}): Promise<{ c: WireClient; socket: tls.TLSSocket }> {
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ port: server.port('submissions'), host: '127.0.0.1', ca: server.caPem, servername: 'localhost', ...opts }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  const c = new WireClient(socket);
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  return { c, socket };
}

/** A refused handshake: the client sees `code`, and the server closes without a plaintext reply. */
async function assertRefusedAtStartTls(server: TestServer, opts: tls.ConnectionOptions, code: RegExp): Promise<void> {
  const c = await readyForTls(server);
  await assert.rejects(c.startTls(server.caPem, opts), (err: NodeJS.ErrnoException) => {
    assert.match(err.code ?? err.message, code);
    return true;
  });
  c.close();
}

async function sendOne(c: WireClient, mailParams = ''): Promise<string> {
  assert.match((await c.cmd(`MAIL FROM:<bob@example.org>${mailParams}`))[0] ?? '', /^250 /);
  assert.match((await c.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
  assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
  const r = await c.cmd('Subject: tls\r\n\r\nbody\r\n.');
  const m = /^250 2\.0\.0 OK: queued as (\S+)$/.exec(r[0] ?? '');
  assert.ok(m?.[1], JSON.stringify(r));
  return m[1];
}

function receivedHeader(server: TestServer, id: string): string {
  const m = server.running.store.getMessage(id);
  assert.ok(m, `message ${id} is stored`);
  const text = m.data.toString('utf8');
  const end = text.search(/\r\n(?![\t ])/);
  return text.slice(0, end).replace(/\r\n[\t ]+/g, ' ');
}

describe('TLS policy of the running server', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ users: [{ ...USER, senders: ['*@example.org'] }] }) // sendOne() uses bob@example.org as MAIL FROM;
  });
  after(() => server.close());

  test('a TLS 1.1-only client is refused at STARTTLS', async () => {
    await assertRefusedAtStartTls(server, TLS11, /^ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION$/);
  });

  test('a TLS 1.1-only client is refused on 465', async () => {
    await assert.rejects(WireClient.connectTls(server.port('submissions'), server.caPem, TLS11), (err: NodeJS.ErrnoException) => {
      assert.match(err.code ?? err.message, /^ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION$/);
      return true;
    });
  });

  test('TLS 1.3 is negotiated when offered (STARTTLS and 465)', async () => {
    const a = await starttls(server);
    assert.equal(a.socket.getProtocol(), 'TLSv1.3');
    await ehlo(a.c);
    a.c.close();
    const b = await implicit(server);
    assert.equal(b.socket.getProtocol(), 'TLSv1.3');
    b.c.close();
  });

  test('a TLS 1.2-only client works (STARTTLS and 465), with a forward-secret AEAD suite', async () => {
    const a = await starttls(server, { maxVersion: 'TLSv1.2' });
    assert.equal(a.socket.getProtocol(), 'TLSv1.2');
    assert.match(a.socket.getCipher().name, /^ECDHE-.*(GCM|CHACHA20)/);
    await ehlo(a.c);
    assert.deepEqual(await a.c.cmd('NOOP'), ['250 2.0.0 OK']);
    a.c.close();
    const b = await implicit(server, { maxVersion: 'TLSv1.2' });
    assert.equal(b.socket.getProtocol(), 'TLSv1.2');
    b.c.close();
  });

  test('ALPN http/1.1 is refused with no_application_protocol at STARTTLS', async () => {
    await assertRefusedAtStartTls(server, { ALPNProtocols: ['http/1.1'] }, /^ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL$/);
  });

  test('ALPN http/1.1 is refused with no_application_protocol on 465', async () => {
    await assert.rejects(WireClient.connectTls(server.port('submissions'), server.caPem, { ALPNProtocols: ['http/1.1'] }), { code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' });
  });

  test('ALPN smtp is accepted (STARTTLS and 465)', async () => {
    const a = await starttls(server, { ALPNProtocols: ['smtp'] });
    assert.equal(a.socket.alpnProtocol, 'smtp');
    await ehlo(a.c);
    a.c.close();
    const b = await implicit(server, { ALPNProtocols: ['http/1.1', 'smtp'] });
    assert.equal(b.socket.alpnProtocol, 'smtp');
    b.c.close();
  });

  test('renegotiation on TLS 1.2 is refused', async () => {
    const a = await starttls(server, { maxVersion: 'TLSv1.2' });
    // OpenSSL processes the server's refusal when records flow, so a NOOP follows the request.
    const outcome = new Promise<string>((resolve) => {
      a.socket.once('error', (e) => resolve(`error: ${e.message}`));
      const started = a.socket.renegotiate({ rejectUnauthorized: false }, (e) => resolve(e ? `error: ${e.message}` : 'renegotiated'));
      if (!started) resolve('error: renegotiate() refused to start');
    });
    a.c.write('NOOP\r\n');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('no outcome within 5 s'), 5000);
    });
    const result = await Promise.race([outcome, timeout]);
    clearTimeout(timer);
    assert.match(result, /^error: .*no renegotiation/i);
    await a.c.expectClose();
  });

  test('Received names ESMTPS with the TLS version and cipher after STARTTLS (RFC 3848)', async () => {
    const a = await starttls(server);
    await ehlo(a.c);
    const id = await sendOne(a.c);
    const h = receivedHeader(server, id);
    const proto = a.socket.getProtocol() ?? '';
    const cipher = a.socket.getCipher();
    assert.match(h, / with ESMTPS id /);
    assert.ok(h.includes(`using ${proto} with cipher ${cipher.standardName ?? cipher.name}`), h);
    const summary = server.running.store.listMessages().find((m) => m.id === id);
    assert.equal(summary?.tls?.protocol, proto);
    a.c.close();
  });

  test('Received names ESMTPSA after AUTH on 465; plain ESMTP without TLS', async () => {
    const b = await implicit(server, { maxVersion: 'TLSv1.2' });
    await ehlo(b.c);
    const auth = await b.c.cmd(`AUTH PLAIN ${Buffer.from(`\0${USER.address}\0${USER.password}`).toString('base64')}`);
    assert.match(auth[0] ?? '', /^235 /);
    const id = await sendOne(b.c);
    const h = receivedHeader(server, id);
    assert.match(h, / with ESMTPSA id /);
    assert.ok(h.includes(`using TLSv1.2 with cipher ${b.socket.getCipher().standardName ?? ''}`), h);
    b.c.close();

    const p = await WireClient.connect(server.port('mx'));
    assert.match((await p.readReply())[0] ?? '', /^220 /);
    await ehlo(p);
    const h2 = receivedHeader(server, await sendOne(p));
    assert.match(h2, / with ESMTP id /);
    assert.doesNotMatch(h2, /using TLS/);
    p.close();
  });

  test('REQUIRETLS: advertised and accepted only inside TLS; the flag is stored', async () => {
    const p = await WireClient.connect(server.port('mx'));
    assert.match((await p.readReply())[0] ?? '', /^220 /);
    assert.ok(!(await ehlo(p)).some((l) => /REQUIRETLS/.test(l)));
    assert.match((await p.cmd('MAIL FROM:<bob@example.org> REQUIRETLS'))[0] ?? '', /^555 /);
    p.close();

    const a = await starttls(server);
    assert.ok((await ehlo(a.c)).includes('250-REQUIRETLS'));
    const withFlag = await sendOne(a.c, ' REQUIRETLS');
    const without = await sendOne(a.c);
    const byId = new Map(server.running.store.listMessages().map((m) => [m.id, m]));
    assert.equal(byId.get(withFlag)?.requireTls, true);
    assert.equal(byId.get(without)?.requireTls, false);
    a.c.close();
  });
});
