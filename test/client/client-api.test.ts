/**
 * SmtpClient as a library: the upgrade returns a new client and kills the old one, capabilities
 * come from the post-TLS EHLO only, pipelining puts MAIL and RCPTs before any reply, limits and
 * timeouts end a conversation with a code, AUTH is redacted in the transcript.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SmtpClient, uniformTimeouts, type ConnectOptions } from '../../src/client/index.js';
import { acceptStartTls, drainUntilQuit, ehloReply, greetAndEhlo, type ScriptedServer, type ScriptPeer, scriptedServers } from './scripted-server.js';
import { MX_NAME, testPki, tlsServerOptions } from './fixtures.js';

let caPem = '';
let tlsOpts: { key: string; cert: string };
const serve = scriptedServers();
before(async () => {
  const pki = await testPki();
  caPem = pki.ca.certPem;
  tlsOpts = tlsServerOptions(pki.good);
});


function opts(port: number, ms = 5000): ConnectOptions {
  return { host: '127.0.0.1', port, serverName: MX_NAME, tls: { ca: caPem }, timeouts: uniformTimeouts(ms) };
}

describe('startTls() returns a new client', () => {
  it('the plaintext client throws after the upgrade; the secured one has no capabilities until EHLO', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN', 'SIZE 10', 'PIPELINING']);
      await acceptStartTls(p, tlsOpts, ['SIZE 1000', 'AUTH LOGIN', 'REQUIRETLS', 'STARTTLS']);
      await drainUntilQuit(p);
    });
    const plain = await SmtpClient.connect(opts(srv.port));
    await plain.ehlo('client.test');
    const st = await plain.startTls();
    assert.equal(st.kind, 'secured');
    if (st.kind !== 'secured') return;
    await assert.rejects(plain.noop(), { code: 'CLIENT_UPGRADED' });
    await assert.rejects(plain.ehlo('client.test'), { code: 'CLIENT_UPGRADED' });
    const c = st.client;
    assert.equal(c.capabilities, null);
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test'] }, 'x\r\n'), { code: 'PROTOCOL_ERROR' });
    const caps = await c.ehlo('client.test');
    // RFC 3207 §4.2: only what the post-TLS EHLO said.
    assert.deepEqual(caps.keywords.get('SIZE'), ['1000']);
    assert.deepEqual(caps.keywords.get('AUTH'), ['LOGIN']);
    assert.equal(caps.keywords.has('PIPELINING'), false);
    await assert.rejects(c.startTls(), { code: 'TLS_ALREADY_ACTIVE' });
    await c.quit();
    await srv.settled();
    assert.equal((srv.received().match(/STARTTLS/g) ?? []).length, 1);
  });

  it('AUTH before TLS is refused without a byte written, unless allowPlaintext', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['AUTH PLAIN LOGIN']);
      await p.expect('AUTH LOGIN');
      await p.write('334 VXNlcm5hbWU6\r\n');
      await p.readLine();
      await p.write('334 UGFzc3dvcmQ6\r\n');
      await p.readLine();
      await p.write('235 2.7.0 ok\r\n');
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    await assert.rejects(c.auth('user', 'pw'), { code: 'AUTH_NEEDS_TLS' });
    const r = await c.auth('user', 'hunter2', { allowPlaintext: true, mechanism: 'LOGIN' });
    assert.equal(r.code, 235);
    await c.quit();
    const sent = c.transcript.clientLines();
    assert.deepEqual(sent.slice(1, 4), ['AUTH LOGIN', '[redacted]', '[redacted]']);
    assert.ok(!JSON.stringify(c.transcript.entries).includes(Buffer.from('hunter2').toString('base64')));
  });
});

describe('transactions', () => {
  it('PIPELINING: MAIL and every RCPT are written before any reply; per-recipient results', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['PIPELINING']);
      // Read all three lines before answering: a client waiting for the MAIL reply would stall here.
      const lines = [await p.readLine(), await p.readLine(), await p.readLine()];
      assert.match(lines[0] ?? '', /^MAIL FROM:<a@b\.test>/);
      await p.write('250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n');
      await p.expect('DATA');
      await p.write('354 go\r\n');
      await p.readData();
      await p.write('250 2.0.0 queued\r\n');
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    const tx = await c.send({ from: 'a@b.test', to: ['x@d.test', 'y@d.test'] }, 'Subject: x\r\n\r\nhi\r\n');
    assert.equal(tx.pipelined, true);
    assert.deepEqual(tx.delivered, ['y@d.test']);
    assert.equal(tx.recipients[0]?.reply.code, 550);
    assert.equal(tx.recipients[0]?.delivered, false);
    await c.quit();
  });

  it('all recipients refused: no DATA, RSET instead', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, []);
      await p.expect('MAIL');
      await p.write('250 ok\r\n');
      await p.expect('RCPT');
      await p.write('450 4.2.0 later\r\n');
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    const tx = await c.send({ from: 'a@b.test', to: ['x@d.test'] }, 'x\r\n');
    assert.equal(tx.data, null);
    await c.quit();
    assert.ok(!srv.received().includes('DATA'));
    assert.ok(srv.received().includes('RSET'));
  });

  it('BDAT when CHUNKING is offered: exact octet counts, no dot-stuffing', async () => {
    const chunks: string[] = [];
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['CHUNKING']);
      await p.expect('MAIL');
      await p.write('250 ok\r\n');
      await p.expect('RCPT');
      await p.write('250 ok\r\n');
      for (;;) {
        const line = await p.expect('BDAT ');
        const n = Number(line.split(' ')[1]);
        let got = '';
        while (got.length < n) got += await p.readRaw();
        chunks.push(got);
        await p.write('250 ok\r\n');
        if (line.endsWith('LAST')) break;
      }
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    const body = 'Subject: b\r\n\r\n.leading dot\r\n' + 'x'.repeat(40) + '\r\n';
    const tx = await c.send({ from: 'a@b.test', to: ['x@d.test'] }, body, { chunking: true, chunkSize: 16 });
    assert.equal(tx.method, 'BDAT');
    assert.equal(chunks.join(''), body);
    assert.ok(chunks.length > 2);
    await c.quit();
  });

  it('SIZE, 8BITMIME and SMTPUTF8 are checked before sending', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['SIZE 10']);
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    await assert.rejects(c.send({ from: 'a@b.test', to: ['x@d.test'] }, 'this is longer than ten\r\n'), { code: 'MESSAGE_TOO_BIG' });
    await assert.rejects(c.send({ from: 'a@b.test', to: ['x@d.test'] }, 'é\r\n'), { code: 'NOT_SUPPORTED' });
    await assert.rejects(c.send({ from: 'a@b.test', to: ['pé@d.test'] }, 'x\r\n'), { code: 'NOT_SUPPORTED' });
    await assert.rejects(c.send({ from: 'a@b.test', to: ['x@d.test'], requireTls: true }, 'x\r\n'), { code: 'REQUIRETLS_NOT_SUPPORTED' });
    await c.quit();
    assert.ok(!srv.received().includes('MAIL'));
  });
});

describe('limits and timeouts', () => {
  it('no greeting within the greeting timeout → TIMEOUT', async () => {
    const srv = await serve(async (p) => {
      await p.waitClose();
    });
    await assert.rejects(SmtpClient.connect(opts(srv.port, 200)), { code: 'TIMEOUT' });
  });

  it('a reply line longer than the limit → PROTOCOL_ERROR', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 ' + 'a'.repeat(5000));
      await p.waitClose();
    });
    await assert.rejects(SmtpClient.connect({ ...opts(srv.port), limits: { maxLineLength: 512 } }), { code: 'PROTOCOL_ERROR' });
  });

  it('a reply with too many lines → PROTOCOL_ERROR', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 hi\r\n');
      await p.expect('EHLO');
      await p.write('250-x\r\n'.repeat(500) + '250 end\r\n');
      await p.waitClose();
    });
    const c = await SmtpClient.connect({ ...opts(srv.port), limits: { maxReplyLines: 50 } });
    await assert.rejects(c.ehlo('client.test'), { code: 'PROTOCOL_ERROR' });
  });

  it('a non-220 greeting → GREETING_REFUSED with the reply', async () => {
    const srv = await serve(async (p) => {
      await p.write('554 5.3.2 no service\r\n');
      await drainUntilQuit(p);
    });
    await assert.rejects(SmtpClient.connect(opts(srv.port)), (e: unknown) => (e as { code?: string; reply?: { code: number } }).code === 'GREETING_REFUSED' && (e as { reply?: { code: number } }).reply?.code === 554);
  });

  it('a multi-line reply whose code changes → PROTOCOL_ERROR', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 hi\r\n');
      await p.expect('EHLO');
      await p.write(ehloReply('x', ['A']).replace('250 A', '354 A'));
      await p.waitClose();
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await assert.rejects(c.ehlo('client.test'), { code: 'PROTOCOL_ERROR' });
  });
});
