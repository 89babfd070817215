/**
 * The client-side STARTTLS rules (ARCHITECTURE.md), each against a scripted fake
 * server that records every byte it receives. Each test fails if its rule is broken.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deliver, type TlsLevel } from '../../src/client/index.js';
import { acceptMessage, acceptStartTls, drainUntilQuit, ehloReply, greetAndEhlo, startScriptedServer, type ScriptedServer, type ScriptPeer } from './scripted-server.js';
import { assertNothingSent, deliverOptions, testPki, tlsServerOptions } from './fixtures.js';

let caPem = '';
let tlsOpts: { key: string; cert: string };
const servers: ScriptedServer[] = [];

before(async () => {
  const { ca, good } = await testPki();
  caPem = ca.certPem;
  tlsOpts = tlsServerOptions(good);
});
after(async () => {
  for (const s of servers) await s.close();
});

async function serve(...scripts: Array<(p: ScriptPeer) => Promise<void>>): Promise<ScriptedServer> {
  const s = await startScriptedServer(scripts);
  servers.push(s);
  return s;
}

/** After STARTTLS: answer 220 and then break the handshake with bytes that are not TLS. */
async function breakHandshake(p: ScriptPeer): Promise<void> {
  await p.expect('STARTTLS');
  await p.write('220 2.0.0 go ahead\r\n');
  await p.readRaw(); // the ClientHello
  await p.write('HTTP/1.1 400 this is not TLS\r\n\r\n');
}

describe('response injection after the 220 to STARTTLS', () => {
  for (const [name, injected] of [
    ['a whole injected reply', '250 injected-reply\r\n'],
    ['a partial injected line', '250-injected-partial'],
  ] as const) {
    it(`discards ${name} sent with the 220 and never reads it inside TLS`, async () => {
      const srv = await serve(async (p) => {
        await greetAndEhlo(p, ['PIPELINING', 'STARTTLS']);
        await p.expect('STARTTLS');
        await p.write('220 2.0.0 go ahead\r\n' + injected); // one write: arrives with the 220
        await p.startTls(tlsOpts);
        await p.expect('EHLO ');
        await p.write(ehloReply('real-ehlo-inside-tls', ['PIPELINING']));
        await acceptMessage(p);
      });
      const r = await deliver(deliverOptions(srv.port, 'verify', caPem));
      assert.equal(r.error, null, JSON.stringify(r.error));
      assert.equal(r.ok, true);
      assert.deepEqual(r.findings.find((f) => f.kind === 'bytes-after-starttls'), { kind: 'bytes-after-starttls', bytes: injected.length, action: 'discarded' });
      const serverLines = r.transcript.filter((e) => e.direction === 'S').map((e) => e.line);
      assert.ok(!serverLines.some((l) => l.includes('injected')), 'injected bytes were read as a reply');
      assert.ok(r.transcript.some((e) => e.direction === 'S' && e.phase === 'tls' && e.line.includes('real-ehlo-inside-tls')));
    });
  }
});

describe('encrypt and verify: no TLS, no mail', () => {
  const cases: Array<{ name: string; code: string; script: (p: ScriptPeer) => Promise<void> }> = [
    {
      name: 'STARTTLS not advertised',
      code: 'TLS_REQUIRED_NOT_OFFERED',
      script: async (p) => {
        await greetAndEhlo(p, ['PIPELINING', 'AUTH PLAIN LOGIN', 'XSTARTTLS']);
        await drainUntilQuit(p);
      },
    },
    {
      name: 'STARTTLS answered 454',
      code: 'STARTTLS_REFUSED',
      script: async (p) => {
        await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN']);
        await p.expect('STARTTLS');
        await p.write('454 4.7.0 TLS not available\r\n');
        await drainUntilQuit(p);
      },
    },
    {
      name: 'STARTTLS answered 250 instead of 220',
      code: 'STARTTLS_REFUSED',
      script: async (p) => {
        await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN']);
        await p.expect('STARTTLS');
        await p.write('250 2.0.0 sure, go on in plaintext\r\n');
        await drainUntilQuit(p);
      },
    },
    {
      name: 'EHLO refused (no HELO fallback)',
      code: 'EHLO_REFUSED',
      script: async (p) => {
        await p.write('220 fake.test ESMTP\r\n');
        await p.expect('EHLO ');
        await p.write('502 5.5.1 EHLO not implemented\r\n');
        await drainUntilQuit(p);
      },
    },
    {
      name: 'TLS handshake failed',
      code: 'TLS_HANDSHAKE_FAILED',
      script: async (p) => {
        await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN']);
        await breakHandshake(p);
        await drainUntilQuit(p);
      },
    },
  ];
  for (const level of ['encrypt', 'verify'] as const) {
    for (const c of cases) {
      it(`${level}: ${c.name} → ${c.code}, no MAIL, no AUTH, no message byte`, async () => {
        const srv = await serve(c.script);
        const r = await deliver(deliverOptions(srv.port, level, caPem, { auth: { user: 'u@fake.test', password: 'secret' } }));
        assert.equal(r.error?.code, c.code, JSON.stringify(r.error));
        assert.equal(r.ok, false);
        assert.notEqual(r.recipients[0]?.status, 'delivered');
        await srv.settled();
        const leaked = assertNothingSent(srv.received());
        assert.equal(leaked, null, `client sent ${leaked ?? ''}: ${JSON.stringify(srv.received())}`);
        assert.ok(!/^HELO /m.test(srv.received()), 'HELO fallback where TLS is required');
        assert.equal(srv.connections, 1, 'no second connection at a level that requires TLS');
      });
    }
  }
});

describe('STARTTLS at most once', () => {
  it('never sends STARTTLS twice even if the post-TLS EHLO offers it again', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS']);
      await acceptStartTls(p, tlsOpts, ['STARTTLS', 'PIPELINING']);
      await acceptMessage(p);
    });
    const r = await deliver(deliverOptions(srv.port, 'verify', caPem));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.ok, true);
    assert.equal(r.reached, 'verify');
    await srv.settled();
    const starttls = srv.log.map((c) => c.data).join('').match(/^STARTTLS\r$/gm) ?? [];
    assert.equal(starttls.length, 1);
    assert.ok(!srv.received({ phase: 'tls' }).includes('STARTTLS'));
  });
});

describe('may: opportunistic', () => {
  it('a refused STARTTLS continues in plaintext on the same connection', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS']);
      await p.expect('STARTTLS');
      await p.write('454 4.7.0 TLS not available\r\n');
      await acceptMessage(p);
    });
    const r = await deliver(deliverOptions(srv.port, 'may', caPem));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.ok, true);
    assert.equal(r.reached, 'none');
    assert.equal(r.connections, 1);
    assert.ok(r.findings.some((f) => f.kind === 'starttls-refused'));
  });

  it('a failed handshake retries in plaintext on a NEW connection, without STARTTLS', async () => {
    const srv = await serve(
      async (p) => {
        await greetAndEhlo(p, ['STARTTLS']);
        await breakHandshake(p);
        await drainUntilQuit(p);
      },
      async (p) => {
        await greetAndEhlo(p, ['STARTTLS', 'PIPELINING']);
        await acceptMessage(p);
      },
    );
    const r = await deliver(deliverOptions(srv.port, 'may', caPem));
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.ok, true);
    assert.equal(r.connections, 2);
    assert.equal(srv.connections, 2);
    assert.equal(assertNothingSent(srv.received({ connection: 1 })), null, 'mail sent on the connection whose handshake failed');
    assert.ok(!srv.received({ connection: 2 }).includes('STARTTLS'), 'STARTTLS again on the plaintext retry');
    assert.ok(r.findings.some((f) => f.kind === 'handshake-failed-plaintext-retry'));
  });

  it('a failed handshake is not retried in plaintext when credentials are to be sent', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN']);
      await breakHandshake(p);
      await drainUntilQuit(p);
    });
    const r = await deliver(deliverOptions(srv.port, 'may', caPem, { auth: { user: 'u@fake.test', password: 'secret' } }));
    assert.equal(r.error?.code, 'TLS_HANDSHAKE_FAILED');
    assert.equal(srv.connections, 1);
    assert.equal(assertNothingSent(srv.received()), null);
  });

  it('a refused STARTTLS with credentials sends no AUTH in plaintext (AUTH_NEEDS_TLS)', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS', 'AUTH PLAIN LOGIN']);
      await p.expect('STARTTLS');
      await p.write('454 4.7.0 TLS not available\r\n');
      await drainUntilQuit(p);
    });
    const levels: TlsLevel[] = ['may'];
    for (const level of levels) {
      const r = await deliver(deliverOptions(srv.port, level, caPem, { auth: { user: 'u@fake.test', password: 'secret' } }));
      assert.equal(r.error?.code, 'AUTH_NEEDS_TLS');
    }
    await srv.settled();
    assert.equal(assertNothingSent(srv.received()), null);
  });

  it('at none, STARTTLS is never sent even when offered', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['STARTTLS']);
      await acceptMessage(p);
    });
    const r = await deliver(deliverOptions(srv.port, 'none', caPem));
    assert.equal(r.ok, true);
    assert.ok(!srv.received().includes('STARTTLS'));
  });
});
