/**
 * End to end against the real postseal server (startTestServer, every listener on 127.0.0.1:0,
 * certificate from a test CA for localhost and 127.0.0.1): verify to mx, AUTH + submission over
 * STARTTLS and over implicit TLS, PIPELINING, BDAT, and a leading-dot message arriving byte-exact.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deliver, uniformTimeouts, type DeliverOptions } from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let srv: TestServer;
const USER = 'alice@postseal.test';
const PASS = 'correct horse battery staple';

before(async () => {
  srv = await startTestServer({ users: [{ address: USER, password: PASS }] });
});
after(async () => {
  await srv.close();
});

function base(port: number, extra: Partial<DeliverOptions>): DeliverOptions {
  return {
    host: '127.0.0.1',
    port,
    serverName: 'localhost',
    level: 'verify',
    helo: 'client.example.test',
    from: 'sender@example.test',
    to: ['bob@postseal.test'],
    message: 'Subject: hi\r\n\r\nhello\r\n',
    tls: { ca: srv.caPem },
    timeouts: uniformTimeouts(10_000),
    ...extra,
  };
}

/** The stored copy without our Received header (the server prepends one). */
function storedBody(mailbox: string, marker: string): Buffer {
  const list = srv.running.store.listMessages({ mailbox, limit: 100 });
  for (const m of list) {
    const got = srv.running.store.getMessage(m.id);
    if (got && got.data.includes(marker)) {
      const start = got.data.indexOf('X-Test-Id: ');
      return got.data.subarray(start);
    }
  }
  throw new Error(`no stored message with ${marker}`);
}

describe('deliver() to the real server', () => {
  it('mx at verify with the test CA: delivered, TLS verified for localhost', async () => {
    const r = await deliver(base(srv.port('mx'), { message: 'X-Test-Id: mx-verify\r\nSubject: hi\r\n\r\nhello\r\n' }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.ok, true);
    assert.equal(r.reached, 'verify');
    assert.equal(r.tls?.sni, 'localhost');
    assert.deepEqual(r.recipients.map((x) => x.status), ['delivered']);
    // PIPELINING: MAIL and RCPTs leave before the MAIL reply arrives.
    const tls = r.transcript.filter((e) => e.phase === 'tls' && e.direction !== 'event');
    const mailAt = tls.findIndex((e) => e.line.startsWith('MAIL FROM'));
    assert.equal(tls[mailAt + 1]?.line.startsWith('RCPT TO'), true);
  });

  it('a message with leading-dot lines arrives byte-exact (dot-stuffing)', async () => {
    const message = 'X-Test-Id: dots\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.leading\r\n...\r\nend.\r\n. \r\n';
    const r = await deliver(base(srv.port('mx'), { message, to: ['bob@postseal.test', 'carol@postseal.test'] }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(storedBody('carol@postseal.test', 'X-Test-Id: dots').toString('latin1'), message);
  });

  it('BDAT/CHUNKING path: byte-exact, several chunks', async () => {
    const message = 'X-Test-Id: bdat\r\nSubject: bdat\r\n\r\n.dot\r\n' + 'line of text\r\n'.repeat(2000);
    const r = await deliver(base(srv.port('mx'), { message, chunking: true }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.ok(r.transcript.some((e) => e.line.startsWith('BDAT ') && e.line.endsWith('LAST')));
    assert.equal(storedBody('bob@postseal.test', 'X-Test-Id: bdat').toString('latin1'), message);
  });

  it('submission (STARTTLS + AUTH PLAIN) at verify: delivered, AUTH redacted', async () => {
    const r = await deliver(base(srv.port('submission'), { from: USER, auth: { user: USER, password: PASS }, message: 'X-Test-Id: sub\r\n\r\nx\r\n' }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.ok, true);
    const auth = r.transcript.find((e) => e.line.startsWith('AUTH'));
    assert.equal(auth?.line, 'AUTH PLAIN [redacted]');
    assert.equal(auth?.phase, 'tls');
  });

  it('submission with AUTH LOGIN and a wrong password → AUTH_FAILED, no MAIL', async () => {
    const r = await deliver(base(srv.port('submission'), { from: USER, auth: { user: USER, password: 'wrong', mechanism: 'LOGIN' } }));
    assert.equal(r.error?.code, 'AUTH_FAILED');
    assert.ok(!r.transcript.some((e) => e.line.startsWith('MAIL')));
  });

  it('submissions (implicit TLS, 465-style) + AUTH: delivered to a remote domain (queued)', async () => {
    const r = await deliver(base(srv.port('submissions'), { implicitTls: true, from: USER, to: ['someone@elsewhere.test'], auth: { user: USER, password: PASS } }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.reached, 'verify');
    assert.ok(r.transcript.every((e) => e.phase === 'tls'));
  });

  it('mx: an unauthenticated relay attempt is rejected per recipient (REJECTED)', async () => {
    const r = await deliver(base(srv.port('mx'), { to: ['x@elsewhere.test'] }));
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'REJECTED');
    assert.equal(r.recipients[0]?.status, 'failed');
  });
});
