/**
 * The attacker in the middle itself (test/helpers/mitm.ts), against a real postseal receiver
 * with a test-CA certificate for its MX name: postseal's client (deliver) and swaks go through
 * it in each mode, and the proxy's record says what crossed it where an attacker could read it.
 * These tests pin the proxy's behaviour so the policy matrix (policy-matrix.test.ts) can rely on it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deliver, uniformTimeouts, type TlsLevel } from '../../src/client/index.js';
import { issueCert, makeTestCa, selfSigned, type TestCa } from '../helpers/certs.js';
import { startMitm, stripStartTls, type Mitm, type MitmMode } from '../helpers/mitm.js';
import { findPeer, runPeer, tempDir } from '../helpers/peers.js';
import { startPostsealReceiver, type Receiver } from '../helpers/receivers.js';

const MX = 'mx.mitm.test';
const DOMAIN = 'mitm.test';
let ca: TestCa;
let receiver: Receiver;
let tmp: Awaited<ReturnType<typeof tempDir>>;
const proxies: Mitm[] = [];

before(async () => {
  ca = await makeTestCa();
  receiver = await startPostsealReceiver({ hostname: MX, pair: await issueCert(ca, { names: [MX] }), domains: [DOMAIN] });
  tmp = await tempDir('mitm');
});
after(async () => {
  for (const p of proxies) await p.close();
  await receiver.close();
  await tmp.cleanup();
});

async function proxy(mode: MitmMode): Promise<Mitm> {
  // wrong-cert: a certificate for another name from another CA, as an attacker would have.
  const cert = await selfSigned(['attacker.invalid']);
  const p = await startMitm({ upstreamPort: receiver.port, mode, cert });
  proxies.push(p);
  return p;
}

function body(label: string): { marker: string; message: string } {
  const marker = `MARKER-${label}-${randomBytes(6).toString('hex')}`;
  const message = [`From: <a@sender.test>`, `To: <b@${DOMAIN}>`, `Subject: mitm ${label}`, `Message-ID: <${marker}@sender.test>`, '', `body line ${marker}`, ''].join('\r\n');
  return { marker, message };
}

async function send(p: Mitm, level: TlsLevel, label: string): Promise<{ marker: string; r: Awaited<ReturnType<typeof deliver>> }> {
  const { marker, message } = body(label);
  const r = await deliver({
    host: '127.0.0.1',
    port: p.port,
    serverName: MX,
    level,
    helo: 'out.sender.test',
    tls: { ca: ca.certPem },
    timeouts: uniformTimeouts(10_000),
    from: 'a@sender.test',
    to: [`b@${DOMAIN}`],
    message,
  });
  return { marker, r };
}

async function receiverHas(marker: string): Promise<{ tls: boolean | null } | null> {
  const m = (await receiver.messages()).find((x) => x.data.includes(marker));
  return m ? { tls: m.tls } : null;
}

test('stripStartTls keeps the reply well-formed', () => {
  assert.deepEqual(stripStartTls(['250-mx.test', '250-PIPELINING', '250 STARTTLS']), { lines: ['250-mx.test', '250 PIPELINING'], removed: 1 });
  assert.deepEqual(stripStartTls(['250-mx.test', '250-STARTTLS', '250 SIZE 10']), { lines: ['250-mx.test', '250 SIZE 10'], removed: 1 });
  assert.deepEqual(stripStartTls(['250 ok']), { lines: ['250 ok'], removed: 0 });
  assert.deepEqual(stripStartTls(['220-a', '220 STARTTLS']).removed, 0);
});

describe('pass: an honest relay of bytes', () => {
  test('verify succeeds end to end, the body never readable by the proxy', async () => {
    const p = await proxy('pass');
    const { marker, r } = await send(p, 'verify', 'pass');
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.reached, 'verify');
    assert.equal((await receiverHas(marker))?.tls, true);
    assert.equal(p.connections[0]?.starttls, 'forwarded');
    assert.equal(p.saw(marker), false, 'the body crossed the proxy encrypted');
    assert.equal(p.sawOnWire(marker), false);
    assert.ok(p.wire().length > 0);
  });
});

describe('strip-starttls', () => {
  test('may: delivered in plaintext, the attacker reads the body (the downgrade works)', async () => {
    const p = await proxy('strip-starttls');
    const { marker, r } = await send(p, 'may', 'strip-may');
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.reached, 'none');
    assert.ok(r.findings.some((f) => f.kind === 'starttls-not-offered'));
    assert.equal(p.connections[0]?.stripped, 1);
    assert.equal((await receiverHas(marker))?.tls, false);
    assert.equal(p.saw(marker), true);
  });
  test('encrypt: refused before MAIL, nothing of the message crosses', async () => {
    const p = await proxy('strip-starttls');
    const { marker, r } = await send(p, 'encrypt', 'strip-encrypt');
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'TLS_REQUIRED_NOT_OFFERED');
    assert.equal(p.saw(marker), false);
    assert.equal(p.connections[0]?.commands.some((c) => /^MAIL /i.test(c)), false);
    assert.equal(await receiverHas(marker), null);
  });
});

describe('refuse-starttls', () => {
  test('may: 454 from the proxy, plaintext delivery, the receiver never saw STARTTLS', async () => {
    const p = await proxy('refuse-starttls');
    const { marker, r } = await send(p, 'may', 'refuse-may');
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.reached, 'none');
    assert.ok(r.findings.some((f) => f.kind === 'starttls-refused'));
    assert.equal(p.connections[0]?.starttls, 'refused');
    assert.equal(p.saw(marker), true);
  });
  test('verify: STARTTLS_REFUSED, nothing of the message crosses', async () => {
    const p = await proxy('refuse-starttls');
    const { marker, r } = await send(p, 'verify', 'refuse-verify');
    assert.equal(r.error?.code, 'STARTTLS_REFUSED');
    assert.equal(p.saw(marker), false);
    assert.equal(await receiverHas(marker), null);
  });
});

describe('wrong-cert', () => {
  test('encrypt: the proxy terminates TLS, reads the body and relays it over its own STARTTLS', async () => {
    const p = await proxy('wrong-cert');
    const { marker, r } = await send(p, 'encrypt', 'wrong-encrypt');
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.reached, 'encrypt');
    assert.equal(r.tls?.verified, false);
    assert.equal(p.connections[0]?.starttls, 'intercepted');
    assert.equal(p.connections[0]?.clientHandshake, 'ok');
    assert.equal(p.saw(marker), true, 'the attacker read the body');
    assert.equal(p.sawOnWire(marker), false, 'but it was encrypted on the wire');
    assert.equal((await receiverHas(marker))?.tls, true, 'the receiver got it over the proxy\'s TLS');
  });
  test('verify: TLS_VERIFY_FAILED right after the handshake, nothing of the message crosses', async () => {
    const p = await proxy('wrong-cert');
    const { marker, r } = await send(p, 'verify', 'wrong-verify');
    assert.equal(r.error?.code, 'TLS_VERIFY_FAILED');
    assert.equal(p.saw(marker), false);
    assert.equal(p.connections[0]?.commands.some((c) => /^MAIL /i.test(c)), false);
    assert.equal(await receiverHas(marker), null);
  });
});

describe('swaks through the proxy', () => {
  async function swaks(bin: string, p: Mitm, label: string, extra: string[]): Promise<{ marker: string; code: number | null; out: string }> {
    const { marker, message } = body(label);
    const file = join(tmp.dir, `${label}.eml`);
    await writeFile(file, message.replace(/\r\n$/, ''));
    const caFile = join(tmp.dir, 'ca.pem');
    await writeFile(caFile, ca.certPem);
    const r = await runPeer(bin, ['--server', '127.0.0.1', '--port', String(p.port), '--helo', 'swaks.sender.test', '--from', 'a@sender.test', '--to', `b@${DOMAIN}`, '--data', `@${file}`, '--tls-ca-path', caFile, '--tls-sni', MX, ...extra], { timeoutMs: 20_000 });
    return { marker, code: r.code, out: r.stdout.toString('utf8') + r.stderr };
  }
  test('pass with --tls --tls-verify: delivered, body encrypted past the proxy', async (t) => {
    const bin = await findPeer(t, 'swaks');
    if (!bin) return;
    const p = await proxy('pass');
    const { marker, code, out } = await swaks(bin, p, 'swaks-pass', ['--tls', '--tls-verify']);
    assert.equal(code, 0, out);
    assert.equal(p.saw(marker), false);
    assert.equal((await receiverHas(marker))?.tls, true);
  });
  test('strip with --tls: swaks gives up, the proxy saw no body', async (t) => {
    const bin = await findPeer(t, 'swaks');
    if (!bin) return;
    const p = await proxy('strip-starttls');
    const { marker, code, out } = await swaks(bin, p, 'swaks-strip', ['--tls']);
    assert.notEqual(code, 0, out);
    assert.match(out, /STARTTLS/);
    assert.equal(p.saw(marker), false);
    assert.equal(await receiverHas(marker), null);
  });
  test('wrong-cert with --tls --tls-verify: swaks refuses the certificate, the proxy saw no body', async (t) => {
    const bin = await findPeer(t, 'swaks');
    if (!bin) return;
    const p = await proxy('wrong-cert');
    const { marker, code, out } = await swaks(bin, p, 'swaks-wrong', ['--tls', '--tls-verify']);
    assert.notEqual(code, 0, out);
    assert.equal(p.saw(marker), false);
    assert.equal(await receiverHas(marker), null);
  });
});
