/**
 * MX resolution rules (RFC 5321 §5.1, RFC 7505) with an in-memory Resolver, and deliverToDomain()
 * walking the MX list past a host that fails temporarily.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { deliverToDomain, resolveMxHosts, uniformTimeouts, type Resolver } from '../../src/client/index.js';
import { acceptMessage, greetAndEhlo, startScriptedServer, type ScriptedServer } from './scripted-server.js';

function fake(zone: { mx?: Record<string, Array<{ exchange: string; priority: number }> | 'NXDOMAIN' | 'SERVFAIL'>; a?: Record<string, string[]> }): Resolver {
  const err = (code: string): Error => Object.assign(new Error(code), { code });
  return {
    async resolveMx(d) {
      const v = zone.mx?.[d];
      if (v === 'NXDOMAIN') throw err('ENOTFOUND');
      if (v === 'SERVFAIL') throw err('ESERVFAIL');
      if (v === undefined) throw err('ENODATA');
      return v;
    },
    async resolve4(d) {
      const v = zone.a?.[d];
      if (!v) throw err('ENODATA');
      return v;
    },
    async resolve6() {
      throw err('ENODATA');
    },
  };
}

const servers: ScriptedServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

describe('resolveMxHosts', () => {
  it('sorts by preference', async () => {
    const r = await resolveMxHosts('ex.test', fake({ mx: { 'ex.test': [{ exchange: 'b.ex.test', priority: 20 }, { exchange: 'a.ex.test', priority: 10 }] } }));
    assert.deepEqual(r.kind === 'hosts' ? r.hosts.map((h) => h.name) : r, ['a.ex.test', 'b.ex.test']);
  });
  it('no MX but an A record → the domain itself (implicit MX)', async () => {
    const r = await resolveMxHosts('ex.test', fake({ a: { 'ex.test': ['192.0.2.1'] } }));
    assert.deepEqual(r, { kind: 'hosts', hosts: [{ name: 'ex.test', preference: 0, implicit: true }] });
  });
  it('null MX (RFC 7505) → null-mx', async () => {
    assert.deepEqual(await resolveMxHosts('ex.test', fake({ mx: { 'ex.test': [{ exchange: '', priority: 0 }] } })), { kind: 'null-mx' });
  });
  it('NXDOMAIN → no-such-domain; SERVFAIL → temporary; nothing at all → no-address', async () => {
    assert.equal((await resolveMxHosts('ex.test', fake({ mx: { 'ex.test': 'NXDOMAIN' } }))).kind, 'no-such-domain');
    assert.equal((await resolveMxHosts('ex.test', fake({ mx: { 'ex.test': 'SERVFAIL' } }))).kind, 'temporary');
    assert.equal((await resolveMxHosts('ex.test', fake({}))).kind, 'no-address');
  });
});

describe('deliverToDomain', () => {
  it('tries the next MX after a temporary failure, and checks each host by its own name', async () => {
    const srv = await startScriptedServer([
      async (p) => {
        await p.write('421 4.3.2 busy\r\n');
      },
      async (p) => {
        await greetAndEhlo(p, []);
        await acceptMessage(p);
      },
    ]);
    servers.push(srv);
    const resolver = fake({ mx: { 'ex.test': [{ exchange: '127.0.0.1', priority: 10 }, { exchange: '127.0.0.1.', priority: 20 }] } });
    const r = await deliverToDomain('ex.test', { port: srv.port, level: 'may', helo: 'c.test', from: 'a@b.test', to: ['x@ex.test'], message: 'x\r\n', timeouts: uniformTimeouts(5000) }, resolver);
    assert.equal(r.ok, true, JSON.stringify(r.attempts.map((a) => a.error)));
    assert.equal(r.attempts.length, 2);
    assert.equal(r.attempts[0]?.error?.code, 'GREETING_REFUSED');
  });
  it('null MX: nothing tried, permanent', async () => {
    const r = await deliverToDomain('ex.test', { level: 'may', helo: 'c.test', from: 'a@b.test', to: ['x@ex.test'], message: 'x\r\n' }, fake({ mx: { 'ex.test': [{ exchange: '', priority: 0 }] } }));
    assert.equal(r.ok, false);
    assert.equal(r.permanent, true);
    assert.equal(r.attempts.length, 0);
  });
});
