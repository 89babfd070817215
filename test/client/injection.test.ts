/**
 * CRLF injection (nodemailer advisories class) and bare line endings (SMTP smuggling class): a CR,
 * LF or NUL in an EHLO name, an address, an ESMTP parameter or the AUTH user is refused before
 * anything is sent — deliver() does not even connect, and SmtpClient writes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deliver, SmtpClient, uniformTimeouts, type DeliverOptions } from '../../src/client/index.js';
import { acceptMessage, drainUntilQuit, greetAndEhlo, startScriptedServer, type ScriptedServer } from './scripted-server.js';
import { deliverOptions, testPki } from './fixtures.js';

let caPem = '';
const servers: ScriptedServer[] = [];
before(async () => {
  caPem = (await testPki()).ca.certPem;
});
after(async () => {
  for (const s of servers) await s.close();
});

const evil = ['\r\nRSET', '\nMAIL FROM:<x@y.z>', '\rDATA', '\0'];

describe('CRLF_INJECTION before anything is sent', () => {
  const fields: Array<[string, (v: string) => Partial<DeliverOptions>]> = [
    ['EHLO name', (v) => ({ helo: `client${v}.test` })],
    ['sender', (v) => ({ from: `a${v}@sender.test` })],
    ['recipient', (v) => ({ to: ['ok@fake.test', `b@fake.test${v}`] })],
    ['MAIL parameter', (v) => ({ mailParams: [`ENVID=x${v}`] })],
    ['RCPT parameter', (v) => ({ rcptParams: [`NOTIFY=NEVER${v}`] })],
    ['AUTH user', (v) => ({ auth: { user: `u${v}`, password: 'pw' } })],
  ];
  for (const [field, make] of fields) {
    it(`deliver(): CR/LF/NUL in the ${field} → CRLF_INJECTION, no connection`, async () => {
      const srv = await startScriptedServer(async (p) => {
        await greetAndEhlo(p, ['STARTTLS']);
        await drainUntilQuit(p);
      });
      servers.push(srv);
      for (const v of evil) {
        const r = await deliver(deliverOptions(srv.port, 'may', caPem, make(v)));
        assert.equal(r.error?.code, 'CRLF_INJECTION', `${JSON.stringify(v)}: ${JSON.stringify(r.error)}`);
        assert.equal(r.error?.permanent, true);
      }
      assert.equal(srv.connections, 0);
    });
  }

  it('SmtpClient: ehlo/send/auth refuse CR/LF without writing a byte', async () => {
    const srv = await startScriptedServer(async (p) => {
      await greetAndEhlo(p, ['PIPELINING', 'AUTH PLAIN']);
      await drainUntilQuit(p);
    });
    servers.push(srv);
    const c = await SmtpClient.connect({ host: '127.0.0.1', port: srv.port, timeouts: uniformTimeouts(5000) });
    await assert.rejects(c.ehlo('a\r\nMAIL FROM:<x@y.z>'), { code: 'CRLF_INJECTION' });
    await c.ehlo('client.test');
    const before = srv.received();
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test\r\nRCPT TO:<e@f.test>'] }, 'x\r\n'), { code: 'CRLF_INJECTION' });
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test'], mailParams: ['A=1 B=2'] }, 'x\r\n'), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(c.auth('u\r\nx', 'pw', { allowPlaintext: true }), { code: 'CRLF_INJECTION' });
    await c.noop(); // a round trip, so anything written above has arrived
    assert.equal(srv.received().slice(before.length), 'NOOP\r\n');
    await c.quit();
  });
});

describe('bare CR or LF in content', () => {
  it('is refused by default (BARE_LINE_ENDING), nothing of the transaction sent', async () => {
    const srv = await startScriptedServer(async (p) => {
      await greetAndEhlo(p, []);
      await drainUntilQuit(p);
    });
    servers.push(srv);
    for (const body of ['a\nb\r\n', 'a\rb\r\n', 'x\r\n\n.\n\r\n']) {
      const r = await deliver(deliverOptions(srv.port, 'none', caPem, { message: body }));
      assert.equal(r.error?.code, 'BARE_LINE_ENDING');
    }
    assert.equal(srv.connections, 0);
  });

  it('is normalised to CRLF when asked, and "<LF>.<LF>" cannot end the data early', async () => {
    let got: string[] = [];
    const srv = await startScriptedServer(async (p) => {
      await greetAndEhlo(p, []);
      got = await acceptMessage(p);
    });
    servers.push(srv);
    const r = await deliver(deliverOptions(srv.port, 'none', caPem, { message: 'Subject: s\n\none\n.\nMAIL FROM:<evil@x.test>\n', bareLineEndings: 'normalize' }));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(got, ['Subject: s', '', 'one', '..', 'MAIL FROM:<evil@x.test>']);
  });
});
