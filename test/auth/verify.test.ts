/**
 * auth/verify.ts against a real DNS server (test/helpers/dns-server.ts) and messages signed by
 * python3-dkim: SPF, DKIM, DMARC verdicts, removal of our forged Authentication-Results, bounded
 * signature count, duplicate From, DNS timeout → temperror.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MAX_HEADER_BLOCK, verifyMessage } from '../../src/auth/verify.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { BODIES_DIR, FileSpool } from '../../src/store/spool.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { execFileSync } from 'node:child_process';
import { message, PRIVATE_PEM, pythonSign as pythonSignSmall, records } from './helpers.js';

/** pythonSign for messages of any size (python3-dkim returns only the signature field). */
function pythonSign(msg: Buffer): Buffer {
  const script = `
import dkim, os, sys
msg = sys.stdin.buffer.read()
sys.stdout.buffer.write(dkim.sign(msg, b'sel', b'example.org', os.environ['DKIM_KEY'].encode(), include_headers=[b'from', b'to', b'subject', b'date', b'message-id']))
`;
  const sig = execFileSync('/usr/bin/python3', ['-c', script], { input: msg, env: { ...process.env, DKIM_KEY: PRIVATE_PEM }, maxBuffer: 1 << 20 });
  return Buffer.concat([sig, msg]);
}

/** A body of `bytes` bytes in 78-byte lines. */
function bigBody(bytes: number): string {
  const line = `${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2)}ABCDEFGH\r\n`;
  return line.repeat(Math.ceil(bytes / line.length));
}

describe('verifyMessage', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  before(async () => {
    dns = await startDnsServer(records());
    resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 500);
  });
  after(() => dns.close());
  const opts = () => ({ hostname: 'mx.postseal.test', resolver: resolver.mailauthResolver() });
  const input = (data: Buffer, ip = '127.0.0.1') => ({ data, ip, helo: 'mail.example.org', mailFrom: 'alice@example.org' });

  test('signed by python3-dkim from an SPF-allowed IP: dkim, spf, dmarc pass; our header first', async () => {
    const r = await verifyMessage(input(pythonSign(message())), opts());
    assert.equal(r.verdicts.spf.result, 'pass');
    assert.equal(r.verdicts.dkim.length, 1);
    assert.equal(r.verdicts.dkim[0]?.result, 'pass');
    assert.equal(r.verdicts.dkim[0]?.domain, 'example.org');
    assert.equal(r.verdicts.dmarc.result, 'pass');
    assert.match(r.header, /^Authentication-Results: mx\.postseal\.test;\r\n dkim=pass/);
    assert.match(r.header, /spf=pass/);
    assert.match(r.header, /dmarc=pass/);
  });

  test('a forged Authentication-Results with our authserv-id is removed from the header block only; others kept', async () => {
    const forged = 'Authentication-Results: MX.postseal.test (comment);\r\n dkim=pass header.d=example.org\r\nAuthentication-Results: other.example; spf=pass\r\n';
    const body = 'Authentication-Results: mx.postseal.test; dkim=pass\r\n';
    const r = await verifyMessage(input(message({ extra: forged, body })), opts());
    const text = r.data.toString();
    assert.doesNotMatch(text.split('\r\n\r\n')[0] ?? '', /mx\.postseal\.test/i);
    assert.match(text, /Authentication-Results: other\.example; spf=pass/);
    assert.ok(text.endsWith(body), 'the body is untouched');
  });

  test('a tampered body: dkim=fail, dmarc fails (SPF from a non-listed IP)', async () => {
    const signed = pythonSign(message()).toString().replace('Hello Bob.', 'Hello Eve.');
    const r = await verifyMessage(input(Buffer.from(signed), '192.0.2.7'), opts());
    assert.equal(r.verdicts.dkim[0]?.result, 'fail');
    assert.equal(r.verdicts.spf.result, 'fail');
    assert.equal(r.verdicts.dmarc.result, 'fail');
    assert.equal(r.verdicts.dmarc.policy, 'reject');
  });

  test('duplicate From: dmarc fail (RFC 7489 §6.6.1) even with a valid signature', async () => {
    const r = await verifyMessage(input(pythonSign(message({ from: ['alice@example.org', 'mallory@example.org'] }))), opts());
    assert.equal(r.verdicts.dmarc.result, 'fail');
    assert.match(r.header, /dmarc=fail/);
  });

  test('100 signatures: at most 10 verified, the rest counted, no crash', async () => {
    const r = await verifyMessage(input(pythonSignSmall(message(), 100)), opts());
    assert.ok(r.verdicts.dkim.length <= 10);
    assert.equal(r.verdicts.dkimOmitted, 90);
    assert.match(r.header, /dkim=policy/);
  });

  test('DNS that never answers: temperror within the deadline, no hang', async () => {
    const silent = await startDnsServer(records(), { faults: { 'example.org TXT': 'drop', 'sel._domainkey.example.org TXT': 'drop', '_dmarc.example.org TXT': 'drop' } });
    try {
      const slow = new DnsResolver({ host: '127.0.0.1', port: silent.port }, 200, { attempts: 1 });
      const r = await verifyMessage(input(pythonSign(message())), { hostname: 'mx.postseal.test', resolver: slow.mailauthResolver(), deadlineMs: 5000 });
      assert.equal(r.verdicts.spf.result, 'temperror');
      assert.equal(r.verdicts.dkim[0]?.result, 'temperror');
    } finally {
      await silent.close();
    }
  });

  test('the whole verification is bounded by its deadline', async () => {
    const never = () => new Promise<never>(() => undefined);
    const r = await verifyMessage(input(pythonSign(message())), { hostname: 'mx.postseal.test', resolver: never, deadlineMs: 100 });
    assert.equal(r.verdicts.spf.result, 'temperror');
    assert.equal(r.verdicts.dmarc.result, 'temperror');
    assert.match(r.header, /spf=temperror/);
  });
});

describe('verifyMessage: per-lookup DNS deadline (auth.dnsTimeoutMs)', () => {
  let dns: DnsServer;
  before(async () => {
    dns = await startDnsServer(records());
  });
  after(() => dns.close());

  test('one DNS question never answered: that mechanism is temperror, the others are decided (the overall deadline is not used up)', async () => {
    const real = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 2000).mailauthResolver();
    // The DKIM key lookup hangs forever (a resolver that never settles, not even with its own timeout).
    const resolver = (name: string, type: string) => (name.startsWith('sel._domainkey.') ? new Promise<never>(() => undefined) : real(name, type));
    const r = await verifyMessage({ data: pythonSign(message()), ip: '127.0.0.1', helo: 'mail.example.org', mailFrom: 'alice@example.org' }, { hostname: 'mx.postseal.test', resolver, dnsTimeoutMs: 200, deadlineMs: 8000 });
    assert.equal(r.verdicts.dkim[0]?.result, 'temperror');
    // Without the per-lookup deadline the 8 s overall deadline would make everything temperror.
    assert.equal(r.verdicts.spf.result, 'pass');
    assert.equal(r.verdicts.dmarc.result, 'pass', 'aligned SPF pass is enough for DMARC');
    assert.match(r.header, /dkim=temperror/);
  });
});

describe('verifyMessage: spooled bodies (read as a stream from the spool file)', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  let dir: string;
  before(async () => {
    dns = await startDnsServer(records());
    resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 1000);
    dir = mkdtempSync(join(tmpdir(), 'postseal-verify-'));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await dns.close();
  });
  const opts = () => ({ hostname: 'mx.postseal.test', resolver: resolver.mailauthResolver() });
  const input = (path: string) => ({ data: { path }, ip: '127.0.0.1', helo: 'mail.example.org', mailFrom: 'alice@example.org' });

  test('a 1 MiB spooled message: dkim/spf/dmarc pass; a forged Authentication-Results of ours is obscured in place by a same-length patch', async () => {
    const forged = 'Authentication-Results: mx.postseal.test;\r\n dkim=pass header.d=bank.example\r\n';
    const signed = pythonSign(message({ body: bigBody(1024 * 1024) }));
    const spool = new FileSpool(dir);
    const file = spool.create('msg1');
    file.write([Buffer.from(forged), signed]);
    const done = await file.finish();
    const path = spool.pathOf(done.file);
    const r = await verifyMessage(input(path), opts());
    assert.equal(r.verdicts.dkim[0]?.result, 'pass', JSON.stringify(r.verdicts));
    assert.equal(r.verdicts.spf.result, 'pass');
    assert.equal(r.verdicts.dmarc.result, 'pass');
    assert.equal(r.data, null, 'the spooled content is not returned in memory');
    assert.equal(r.patches.length, 1);
    assert.equal(r.patches[0]?.offset, 0);
    assert.equal(r.patches[0]?.bytes.length, Buffer.byteLength(forged));
    await spool.patch(done.file, r.patches);
    const after = readFileSync(path);
    assert.equal(after.length, done.size, 'the file did not grow or shrink');
    const head = after.subarray(0, after.indexOf('\r\n\r\n')).toString('latin1');
    assert.doesNotMatch(head, /mx\.postseal\.test|bank\.example/);
    assert.match(head, /^X-Removed-AR:/);
    assert.ok(after.subarray(Buffer.byteLength(forged)).equals(signed), 'everything after the forged field is byte-identical');
    // The patched file still verifies: the placeholder is not covered by the signature.
    assert.equal((await verifyMessage(input(path), opts())).verdicts.dkim[0]?.result, 'pass');
  });

  test('a tampered spooled body: dkim=fail (the body is really hashed from the file)', async () => {
    const signed = pythonSign(message({ body: bigBody(512 * 1024) }));
    const at = signed.lastIndexOf('ABCDEFGH');
    signed.write('ABCDEFGX', at, 'latin1');
    const path = join(dir, 'tampered');
    writeFileSync(path, signed);
    const r = await verifyMessage(input(path), opts());
    assert.equal(r.verdicts.dkim[0]?.result, 'fail');
  });

  test('a 16 MiB spooled message is verified with bounded memory (never read whole)', async () => {
    // Made on disk in 1 MiB pieces and signed by python3-dkim file to file: no large Buffer of
    // this process exists (or becomes garbage) while memory is sampled.
    const src = join(dir, 'huge-src');
    const path = join(dir, 'huge');
    const fd = openSync(src, 'w');
    writeSync(fd, message({ body: '' }));
    const chunk = Buffer.from(bigBody(1024 * 1024));
    for (let i = 0; i < 16; i++) writeSync(fd, chunk);
    closeSync(fd);
    const script = `
import dkim, os, sys
msg = open(sys.argv[1], 'rb').read()
sig = dkim.sign(msg, b'sel', b'example.org', os.environ['DKIM_KEY'].encode(), include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
open(sys.argv[2], 'wb').write(sig + msg)
`;
    execFileSync('/usr/bin/python3', ['-c', script, src, path], { env: { ...process.env, DKIM_KEY: PRIVATE_PEM } });
    const size = statSync(path).size;
    // Live memory, not garbage not yet collected: a full GC before each sample.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const base = process.memoryUsage();
    let peak = 0;
    const sample = (): void => {
      gc();
      const m = process.memoryUsage();
      peak = Math.max(peak, m.arrayBuffers - base.arrayBuffers + m.heapUsed - base.heapUsed);
    };
    const timer = setInterval(sample, 50);
    try {
      // A generous deadline: the forced GCs slow the run down.
      const r = await verifyMessage(input(path), { ...opts(), deadlineMs: 120_000 });
      sample();
      assert.equal(r.verdicts.dkim[0]?.result, 'pass');
    } finally {
      clearInterval(timer);
    }
    // A verifier that read the file whole would hold 16 MiB more.
    assert.ok(peak < size / 2, `peak extra memory ${peak} bytes for a ${size}-byte message`);
  });

  test(`a header block over MAX_HEADER_BLOCK (${MAX_HEADER_BLOCK} bytes): dkim/dmarc permerror, SPF still checked`, async () => {
    const path = join(dir, 'bighead');
    writeFileSync(path, Buffer.concat([Buffer.from(`X-Big: ${'a'.repeat(MAX_HEADER_BLOCK)}\r\n`), pythonSign(message())]));
    const r = await verifyMessage(input(path), opts());
    assert.equal(r.verdicts.dkim[0]?.result, 'permerror');
    assert.equal(r.verdicts.dmarc.result, 'permerror');
    assert.equal(r.verdicts.spf.result, 'pass');
    assert.equal(r.headerTooLarge, true, 'the server refuses it (createVerifier: 552 5.3.4)');
  });
});

/** Sends one message (dot-stuffed) to the mx listener and returns the final reply line. */
async function sendMx(port: number, data: Buffer): Promise<string> {
  const c = await WireClient.connect(port);
  try {
    await c.readReply();
    await c.cmd('EHLO mail.example.org');
    c.write('MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@postseal.test>\r\nDATA\r\n');
    for (const want of ['250', '250', '354']) assert.equal((await c.readReply())[0]?.slice(0, 3), want);
    c.write(Buffer.concat([Buffer.from(data.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]));
    return (await c.readReply(30_000)).at(-1) ?? '';
  } finally {
    c.close();
  }
}

describe('a spooled message received on mx is verified and stored with its verdicts', () => {
  let dns: DnsServer;
  let s: TestServer;
  before(async () => {
    dns = await startDnsServer(records());
    s = await startTestServer({
      configure: (cfg) => {
        cfg.relay.dns = [`127.0.0.1:${dns.port}`];
      },
    });
  });
  after(async () => {
    await s.close();
    await dns.close();
  });

  test('600 KiB signed message over SMTP (past limits.spoolThreshold): verdicts stored, our AR after Received, forged AR obscured, body intact', async () => {
    const forged = Buffer.from('Authentication-Results: mail.postseal.test; dkim=pass header.d=bank.example\r\n');
    const body = bigBody(600 * 1024);
    const signed = pythonSign(message({ body }));
    const line = await sendMx(s.port('mx'), Buffer.concat([forged, signed]));
    const id = /^250 .*queued as (\S+)/.exec(line)?.[1];
    assert.ok(id, line);
    assert.ok(readdirSync(join(s.dataDir, BODIES_DIR)).includes(id), 'the body went to a spool file');
    const stored = s.running.store.getMessage(id);
    assert.ok(stored);
    const v = stored.summary.authResults;
    assert.ok(v, 'verdicts stored for the spooled message');
    assert.equal(v.spf.result, 'pass');
    assert.deepEqual(v.dkim.map((d) => d.result), ['pass']);
    assert.equal(v.dmarc.result, 'pass');
    const text = stored.data.toString('latin1');
    assert.match(text, /^Received: [^]*?\r\nAuthentication-Results: mail\.postseal\.test;\r\n dkim=pass/);
    assert.equal((text.match(/^Authentication-Results: mail\.postseal\.test/gim) ?? []).length, 1);
    assert.doesNotMatch(text, /bank\.example/);
    assert.match(text, /\r\nX-Removed-AR:/);
    assert.ok(text.endsWith(body), 'the body is stored as received');
  });

  test('a tampered spooled message: dkim=fail stored', async () => {
    const signed = pythonSign(message({ body: bigBody(400 * 1024) }));
    signed.write('Z', signed.lastIndexOf('ABCDEFGH'), 'latin1');
    const id = /^250 .*queued as (\S+)/.exec(await sendMx(s.port('mx'), signed))?.[1];
    assert.ok(id);
    assert.deepEqual(s.running.store.getMessage(id)?.summary.authResults?.dkim.map((d) => d.result), ['fail']);
  });
});
