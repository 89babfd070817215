/**
 * The client side of one connection (src/transport/client-connection.ts) on its own, against a
 * scripted peer on 127.0.0.1:0 with a real TLS handshake: the upgrade hands back the bytes that
 * came with the 220 and never reads them, a failed handshake is a value, raw writes arrive as
 * written, and reads are bounded in bytes and time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect, ConnectionError, type ClientConnection, type Limit, type TranscriptRecord } from '../../src/transport/client-connection.js';
import { selfSigned, type PemKeyPair } from '../helpers/certs.js';
import { startScriptedServer, type Script, type ScriptedServer } from '../client/scripted-server.js';

const LIMIT: Limit = { ms: 3000, name: 'test.readMs' };
const SHORT: Limit = { ms: 150, name: 'test.shortMs' };

let pair: PemKeyPair;
before(async () => {
  pair = await selfSigned(['localhost']);
});

const servers: ScriptedServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function serve(script: Script): Promise<ScriptedServer> {
  const s = await startScriptedServer(script);
  servers.push(s);
  return s;
}

function open(port: number, extra: { maxLineLength?: number; onTimeout?: 'abort' | 'keep'; transcript?: TranscriptRecord[] } = {}): Promise<ClientConnection> {
  const t = extra.transcript;
  return connect({
    host: '127.0.0.1',
    port,
    connectLimit: LIMIT,
    handshakeLimit: LIMIT,
    maxLineLength: extra.maxLineLength ?? 512,
    onTimeout: extra.onTimeout,
    transcript: t ? (r) => t.push(r) : undefined,
  });
}

const tlsClient = { rejectUnauthorized: false, servername: 'localhost' };

async function rejection(p: Promise<unknown>): Promise<ConnectionError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConnectionError, `expected a ConnectionError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('client connection: the STARTTLS upgrade', () => {
  test('bytes that came with the 220 come back as discarded and are never read as a line inside TLS', async () => {
    const srv = await serve(async (p) => {
      // RFC 3207 §4.2 response injection: the 220 and a forged reply in one segment.
      await p.write('220 ready\r\n250-injected\r\n250 AUTH PLAIN\r\n');
      await p.startTls({ cert: pair.certPem, key: pair.keyPem });
      await p.expect('EHLO');
      await p.write('250 inside TLS\r\n');
      await p.expect('QUIT');
    });
    const transcript: TranscriptRecord[] = [];
    const conn = await open(srv.port, { transcript });
    assert.equal(await conn.readLine(LIMIT, 'the 220'), '220 ready');
    const up = await conn.upgradeToTls(tlsClient, LIMIT);
    assert.equal(up.kind, 'secured');
    if (up.kind !== 'secured') return;
    assert.equal(up.discarded.toString('latin1'), '250-injected\r\n250 AUTH PLAIN\r\n');
    assert.ok(up.conn.isTls);
    assert.ok(up.socket.encrypted);
    await up.conn.write('EHLO client.test\r\n', LIMIT, 'EHLO', 'EHLO client.test');
    // The first line read inside TLS is the TLS server's, not the injected one.
    assert.equal(await up.conn.readLine(LIMIT, 'EHLO'), '250 inside TLS');
    // The plaintext object is dead.
    assert.equal((await rejection(conn.readLine(LIMIT, 'x'))).code, 'CONNECTION_DETACHED');
    assert.throws(() => conn.writeRaw('NOOP\r\n', 'NOOP'), (e: unknown) => e instanceof ConnectionError && e.code === 'CONNECTION_DETACHED');
    up.conn.writeRaw('QUIT\r\n', 'QUIT');
    assert.deepEqual(await srv.settled(), []);
    up.conn.destroy();
    // The transcript marks what travelled in plaintext and what inside TLS.
    const discardNote = transcript.find((r) => r.dir === 'event' && /bytes arrived after the 220/.test(r.text));
    assert.equal(discardNote?.tls, false);
    assert.ok(transcript.some((r) => r.dir === 'server' && r.text === '250 inside TLS' && r.tls));
    assert.ok(transcript.some((r) => r.dir === 'client' && r.text === 'EHLO client.test' && r.tls));
    assert.ok(!transcript.some((r) => r.dir === 'server' && r.text.includes('injected')));
  });

  test('nothing unread: discarded is empty', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 ready\r\n');
      await p.startTls({ cert: pair.certPem, key: pair.keyPem });
      await p.waitClose();
    });
    const conn = await open(srv.port);
    await conn.readLine(LIMIT, 'the 220');
    const up = await conn.upgradeToTls(tlsClient, LIMIT);
    assert.equal(up.kind, 'secured');
    assert.equal(up.discarded.length, 0);
    if (up.kind === 'secured') up.conn.destroy();
  });

  test('a peer that closes instead of handshaking: a failed value, not an exception', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 ready\r\n');
      await p.readRaw(); // the ClientHello
      p.destroy();
    });
    const conn = await open(srv.port);
    await conn.readLine(LIMIT, 'the 220');
    const up = await conn.upgradeToTls(tlsClient, LIMIT);
    assert.equal(up.kind, 'failed');
    if (up.kind !== 'failed') return;
    assert.equal(up.error.code, 'TLS_HANDSHAKE_FAILED');
    assert.match(up.error.message, /^TLS handshake failed: /);
    assert.ok(up.reason.length > 0);
  });

  test('a peer that never answers the ClientHello: failed after the limit, named in the reason', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 ready\r\n');
      await p.waitClose();
    });
    const conn = await open(srv.port);
    await conn.readLine(LIMIT, 'the 220');
    const up = await conn.upgradeToTls(tlsClient, SHORT);
    assert.equal(up.kind, 'failed');
    if (up.kind === 'failed') assert.equal(up.reason, 'no handshake within 150 ms (test.shortMs)');
  });

  test('implicit TLS toward a plaintext server: connect rejects with TLS_HANDSHAKE_FAILED', async () => {
    const srv = await serve(async (p) => {
      await p.readRaw();
      await p.write('220 plaintext here\r\n');
      p.end();
    });
    const err = await rejection(connect({ host: '127.0.0.1', port: srv.port, implicitTls: tlsClient, connectLimit: LIMIT, handshakeLimit: LIMIT, maxLineLength: 512 }));
    assert.equal(err.code, 'TLS_HANDSHAKE_FAILED');
  });
});

describe('client connection: writes and reads', () => {
  test('writeRaw hands exact bytes to the socket in one write, labelled in the transcript', async () => {
    let got = '';
    const srv = await serve(async (p) => {
      got = await p.readRaw();
    });
    const transcript: TranscriptRecord[] = [];
    const conn = await open(srv.port, { transcript });
    conn.writeRaw('STARTTLS\r\nNO', 'STARTTLS\\r\\nNO (one segment)');
    assert.deepEqual(await srv.settled(), []);
    assert.equal(got, 'STARTTLS\r\nNO');
    assert.deepEqual(transcript, [{ dir: 'client', tls: false, text: 'STARTTLS\\r\\nNO (one segment)' }]);
    conn.destroy();
  });

  test('a line longer than maxLineLength is a PROTOCOL_ERROR, with or without its LF', async () => {
    for (const tail of ['\r\n', '']) {
      const srv = await serve(async (p) => {
        await p.write('2'.repeat(300) + tail);
        await p.waitClose();
      });
      const conn = await open(srv.port, { maxLineLength: 100 });
      const err = await rejection(conn.readLine(LIMIT, 'the greeting'));
      assert.equal(err.code, 'PROTOCOL_ERROR');
      assert.match(err.message, /longer than 100 octets/);
      assert.equal(conn.isOpen, false);
    }
  });

  test('bare LF ends a line; CRLF is taken off', async () => {
    const srv = await serve(async (p) => {
      await p.write('220-first\n220 second\r\n');
      await p.waitClose();
    });
    const conn = await open(srv.port);
    assert.equal(await conn.readLine(LIMIT, 'x'), '220-first');
    assert.equal(await conn.readLine(LIMIT, 'x'), '220 second');
    conn.destroy();
  });

  test('a read past its deadline: TIMEOUT naming the limit; abort closes, keep does not', async () => {
    for (const onTimeout of ['abort', 'keep'] as const) {
      const srv = await serve(async (p) => {
        await p.expect('GO');
        await p.write('220 late\r\n');
        await p.waitClose();
      });
      const conn = await open(srv.port, { onTimeout });
      const err = await rejection(conn.readLine(SHORT, 'the greeting'));
      assert.equal(err.code, 'TIMEOUT');
      assert.equal(err.message, 'no complete reply to the greeting within 150 ms (test.shortMs)');
      assert.equal(conn.isOpen, onTimeout === 'keep');
      if (onTimeout === 'keep') {
        conn.writeRaw('GO\r\n', 'GO');
        assert.equal(await conn.readLine(LIMIT, 'the greeting'), '220 late');
      }
      conn.destroy();
    }
  });

  test('a peer that closes: CONNECTION_CLOSED after what it sent was read', async () => {
    const srv = await serve(async (p) => {
      await p.write('221 bye\r\n');
      p.end();
    });
    const conn = await open(srv.port);
    assert.equal(await conn.readLine(LIMIT, 'x'), '221 bye');
    assert.equal((await rejection(conn.readLine(LIMIT, 'x'))).code, 'CONNECTION_CLOSED');
  });

  test('nobody listening: CONNECT_FAILED', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const addr = probe.address();
    assert.ok(addr !== null && typeof addr === 'object');
    await new Promise<void>((r) => probe.close(() => r()));
    const err = await rejection(open(addr.port));
    assert.equal(err.code, 'CONNECT_FAILED');
  });
});
