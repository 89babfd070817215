/**
 * A TIMEOUT message names the limit that was applied and the setting it came from: scripted
 * servers that never answer (or stop halfway through a reply), small timeouts for the step under
 * test and long ones for every other step, so only the step under test can fire.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deliver, SmtpClient, uniformTimeouts, type ConnectOptions, type Timeouts } from '../../src/client/index.js';
import { greetAndEhlo, type ScriptedServer, type ScriptPeer, scriptedServers } from './scripted-server.js';
import { deliverOptions, MX_NAME, testPki } from './fixtures.js';

let caPem = '';
const serve = scriptedServers();
before(async () => {
  caPem = (await testPki()).ca.certPem;
});


/** Every step 30 s except the ones given. */
function timeouts(small: Partial<Timeouts>): Timeouts {
  return { ...uniformTimeouts(30_000), ...small };
}

function opts(port: number, small: Partial<Timeouts>, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return { host: '127.0.0.1', port, serverName: MX_NAME, tls: { ca: caPem }, timeouts: timeouts(small), ...extra };
}

function timeoutError(message: RegExp) {
  return (err: Error & { code?: string }): boolean => {
    assert.equal(err.code, 'TIMEOUT', err.message);
    assert.match(err.message, message);
    return true;
  };
}

/** Greeting, EHLO, MAIL and RCPT accepted; then `rest`. */
function untilRcpt(rest: (p: ScriptPeer) => Promise<void>) {
  return async (p: ScriptPeer): Promise<void> => {
    await greetAndEhlo(p, []);
    await p.expect('MAIL FROM:');
    await p.write('250 2.1.0 ok\r\n');
    await p.expect('RCPT TO:');
    await p.write('250 2.1.5 ok\r\n');
    await rest(p);
  };
}

describe('TIMEOUT messages name the limit applied', () => {
  it('no greeting: greetingMs', async () => {
    const srv = await serve((p) => p.waitClose(30_000));
    await assert.rejects(SmtpClient.connect(opts(srv.port, { greetingMs: 150 })), timeoutError(/^no complete reply to the greeting within 150 ms \(greetingMs\)$/));
  });

  it('a reply that stops after its first line: the whole-reply limit, not the time that was left for the second line', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 fake.test ESMTP\r\n');
      await p.expect('EHLO ');
      await p.write('250-fake.test\r\n');
      await p.waitClose(30_000);
    });
    const c = await SmtpClient.connect(opts(srv.port, { commandMs: 300 }));
    await assert.rejects(c.ehlo('client.test'), timeoutError(/^no complete reply to EHLO client\.test within 300 ms \(commandMs\)$/));
  });

  it('no answer to DATA: dataInitMs (the 354 stage), not the DATA-termination limit', async () => {
    const srv = await serve(untilRcpt(async (p) => {
      await p.expect('DATA');
      await p.waitClose(30_000);
    }));
    const c = await SmtpClient.connect(opts(srv.port, { dataInitMs: 200 }));
    await c.ehlo('client.test');
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test'] }, 'Subject: t\r\n\r\nx\r\n'), timeoutError(/^no complete reply to DATA within 200 ms \(dataInitMs\)$/));
  });

  it('no answer to the final dot: dataFinalMs', async () => {
    const srv = await serve(untilRcpt(async (p) => {
      await p.expect('DATA');
      await p.write('354 go ahead\r\n');
      await p.readData();
      await p.waitClose(30_000);
    }));
    const c = await SmtpClient.connect(opts(srv.port, { dataFinalMs: 200 }));
    await c.ehlo('client.test');
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test'] }, 'Subject: t\r\n\r\nx\r\n'), timeoutError(/^no complete reply to end of data within 200 ms \(dataFinalMs\)$/));
  });

  it('a silent implicit-TLS handshake: tlsHandshakeMs, not the connect timeout', async () => {
    const srv = await serve((p) => p.waitClose(30_000));
    await assert.rejects(SmtpClient.connect(opts(srv.port, { tlsHandshakeMs: 200 }, { implicitTls: true })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TLS_HANDSHAKE_FAILED');
      assert.match(err.message, /no handshake within 200 ms \(tlsHandshakeMs\)$/);
      return true;
    });
  });

  it('uniformTimeouts (postseal send --timeout): the message names the step whose value fired', async () => {
    const srv = await serve(untilRcpt(async (p) => {
      await p.expect('DATA');
      await p.waitClose(30_000);
    }));
    const r = await deliver(deliverOptions(srv.port, 'none', caPem, { timeouts: uniformTimeouts(250) }));
    assert.equal(r.error?.code, 'TIMEOUT');
    assert.match(r.error?.message ?? '', /^no complete reply to DATA within 250 ms \(dataInitMs\)$/);
  });
});
