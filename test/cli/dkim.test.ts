/**
 * `postseal dkim keygen|list|activate|remove` and `postseal dns-records` through the real CLI:
 * key files 0600 in 0700 directories, the exact TXT record (Ed25519: the raw 32-byte key, RFC 8463
 * §4.2; RSA-2048: SPKI split into 255-character strings), rotation (a second key of an algorithm
 * is not active until `activate`; the active key is not removed without --force).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { killAll, runCli, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

interface Row {
  domain: string;
  selector: string;
  algorithm: string;
  active: boolean;
  name: string;
  record: string[];
}

describe('postseal dkim', () => {
  it('keygen, list, activate, remove; dns-records', async () => {
    const data = dirs.make();
    const ed = await runCli(['dkim', 'keygen', 'Example.ORG', '--selector', 'ed1', '--data', data]);
    assert.equal(ed.code, 0, ed.stderr);
    // RFC 8463 §4.2: 32 raw bytes → 44 base64 characters.
    assert.match(ed.stdout, /^ed1\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="$/m);
    const dir = join(data, 'dkim', 'example.org');
    assert.equal(statSync(join(dir, 'ed1.key')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(data, 'dkim')).mode & 0o777, 0o700);

    const rsa = await runCli(['dkim', 'keygen', 'example.org', '--selector', 'rsa1', '--algorithm', 'rsa', '--data', data]);
    assert.equal(rsa.code, 0, rsa.stderr);
    const line = /^rsa1\._domainkey\.example\.org\. IN TXT (.*)$/m.exec(rsa.stdout)?.[1] ?? '';
    const strings = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? '');
    assert.equal(strings.length, 2);
    assert.equal(strings[0]?.length, 255);
    assert.match(strings.join(''), /^v=DKIM1; k=rsa; p=MIIBIjAN/); // SPKI of a 2048-bit key

    // Rotation: a second Ed25519 key is not active until activated.
    const ed2 = await runCli(['dkim', 'keygen', 'example.org', '--selector', 'ed2', '--data', data]);
    assert.equal(ed2.code, 0, ed2.stderr);
    assert.match(ed2.stdout, /not active yet/);
    const dup = await runCli(['dkim', 'keygen', 'example.org', '--selector', 'ed2', '--data', data]);
    assert.equal(dup.code, 2);
    const bad = await runCli(['dkim', 'keygen', 'example.org', '--algorithm', 'dsa', '--data', data]);
    assert.equal(bad.code, 2);

    const list = async (): Promise<Row[]> => {
      const r = await runCli(['dkim', 'list', '--json', '--data', data]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Row[];
    };
    let rows = await list();
    assert.deepEqual(
      rows.map((r) => `${r.selector}:${r.algorithm}:${r.active}`),
      ['ed1:ed25519:true', 'ed2:ed25519:false', 'rsa1:rsa:true'],
    );
    assert.equal(rows[0]?.name, 'ed1._domainkey.example.org');

    const act = await runCli(['dkim', 'activate', 'example.org', 'ed2', '--data', data]);
    assert.equal(act.code, 0, act.stderr);
    rows = await list();
    assert.deepEqual(rows.map((r) => `${r.selector}:${r.active}`), ['ed1:false', 'ed2:true', 'rsa1:true']);

    // The active key stays unless forced; the old one goes.
    assert.equal((await runCli(['dkim', 'remove', 'example.org', 'ed2', '--data', data])).code, 2);
    const rm = await runCli(['dkim', 'remove', 'example.org', 'ed1', '--data', data]);
    assert.equal(rm.code, 0, rm.stderr);
    rows = await list();
    assert.deepEqual(rows.map((r) => r.selector), ['ed2', 'rsa1']);

    const dns = await runCli(['dns-records', 'example.org', '--hostname', 'mx.example.org', '--data', data]);
    assert.equal(dns.code, 0, dns.stderr);
    const out = dns.stdout;
    assert.match(out, /^example\.org\. IN TXT "v=spf1 mx -all"$/m);
    assert.match(out, /^ed2\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=ed25519; p=/m);
    assert.match(out, /^rsa1\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=rsa; p=/m);
    assert.ok(out.includes(`rsa1._domainkey.example.org. IN TXT ${strings.map((s) => `"${s}"`).join(' ')}`), 'the same record keygen printed');
    assert.match(out, /^_dmarc\.example\.org\. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@example\.org"$/m);
    assert.match(out, /^_mta-sts\.example\.org\. IN TXT "v=STSv1; id=[0-9a-f]{20}"$/m);
    assert.match(out, /^; {3}mx: mx\.example\.org$/m);
    assert.match(out, /^_smtp\._tls\.example\.org\. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example\.org"$/m);
  });
});
