/**
 * Interop: nodemailer 8 (in process, Node's TLS) delivers with `requireTLS` (STARTTLS must be
 * offered and succeed) and `secure: true` (implicit TLS), verifying our certificate with `ca`
 * (rejectUnauthorized stays on). `raw` sends our bytes as they are (nodemailer stuffs dots and
 * adds nothing), so the stored message must be our Received header + exactly those bytes.
 * nodemailer is not a child process: its connection, greeting and socket timeouts bound the test.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { expectDelivered, makeMessage, RCPT, startInteropServer, USER, type InteropServer } from '../helpers/peers.js';

let server: InteropServer;
before(async () => {
  server = await startInteropServer();
});
after(async () => {
  await server.close();
});

const cases = [
  { name: 'requireTLS to mx, no AUTH', secure: false, listener: 'mx', auth: null },
  { name: 'requireTLS to submission, AUTH PLAIN', secure: false, listener: 'submission', auth: 'PLAIN' },
  { name: 'requireTLS to submission, AUTH LOGIN', secure: false, listener: 'submission', auth: 'LOGIN' },
  { name: 'secure: true to submissions, AUTH PLAIN', secure: true, listener: 'submissions', auth: 'PLAIN' },
] as const;

for (const c of cases) {
  test(`nodemailer: ${c.name}`, async () => {
    const msg = makeMessage(`nodemailer ${c.name}`);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: server.port(c.listener),
      name: 'nodemailer.interop.test',
      secure: c.secure,
      requireTLS: !c.secure,
      tls: { ca: server.caPem, servername: 'localhost', rejectUnauthorized: true },
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 20_000,
      ...(c.auth ? { auth: { user: USER.address, pass: USER.password }, authMethod: c.auth } : {}),
    });
    try {
      const ids = server.ids();
      const info = await transport.sendMail({ envelope: { from: msg.from, to: [RCPT] }, raw: msg.bytes });
      assert.deepEqual(info.accepted, [RCPT]);
      assert.deepEqual(info.rejected, []);
      await expectDelivered(server, ids, msg, { listener: c.listener, authUser: c.auth ? USER.address : null });
    } finally {
      transport.close();
    }
  });
}

test('nodemailer: refuses our certificate when it trusts another CA (requireTLS to mx)', async () => {
  const msg = makeMessage('nodemailer foreign CA');
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: server.port('mx'),
    requireTLS: true,
    tls: { ca: await readFile(server.foreignCaFile, 'utf8'), servername: 'localhost', rejectUnauthorized: true },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  try {
    const ids = server.ids();
    await assert.rejects(transport.sendMail({ envelope: { from: msg.from, to: [RCPT] }, raw: msg.bytes }), /certificate/i);
    assert.equal(server.ids().size, ids.size);
  } finally {
    transport.close();
  }
});
