/**
 * Several server certificates, chosen by SNI, on the real server: implicit TLS
 * (465) and STARTTLS (25), names from SAN DNS entries with one-label wildcards, the default for
 * no SNI and unknown names, ECDSA and RSA side by side for one name, per-pair reload, the
 * refusals at start, and the ClientHello scanner that makes the ECDSA+RSA choice possible.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { defaultConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { startServe } from '../../src/serve.js';
import type { Logger } from '../../src/server/types.js';
import { serverSocketOptions } from '../../src/tls/options.js';
import { CertificateStore, type ReloadResult } from '../../src/tls/store.js';
import { scanClientHello } from '../../src/transport/client-hello.js';
import { secureServerSocket } from '../../src/transport/server-connection.js';
import { issueCert, makeTestCa, writeKeyPair, type KeyPairFiles, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { closeSocket, connectTls } from './harness.js';

let dir: string;
let ca: TestCa;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-sni-'));
  ca = await makeTestCa();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fingerprintOf = (pem: string): string => new X509Certificate(pem).fingerprint256;

/** Via getPeerCertificate(): getPeerX509Certificate() empties later peer-cert calls on Node 20. */
function served(socket: tls.TLSSocket): string {
  const fp = socket.getPeerCertificate().fingerprint256;
  assert.equal(typeof fp, 'string');
  return fp;
}

/** TLS 1.2, RSA key exchange signatures and RSA suites only: a client that cannot verify ECDSA. */
const RSA_ONLY_12: tls.ConnectionOptions = {
  maxVersion: 'TLSv1.2',
  ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384',
  sigalgs: 'RSA-PSS+SHA256:RSA+SHA256',
};
/** TLS 1.3 with RSA-PSS signature algorithms only. */
const RSA_ONLY_13: tls.ConnectionOptions = { minVersion: 'TLSv1.3', sigalgs: 'RSA-PSS+SHA256:RSA-PSS+SHA384' };
/** TLS 1.2 suites that need an RSA certificate, but default signature algorithms (ECDSA offered). */
const RSA_SUITES_ONLY: tls.ConnectionOptions = { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' };

/** A logger that hands out the TLS facts of finished sessions on the mx listener. */
function sessionLog(): { logger: Logger; nextSession(): Promise<{ sni: string | null } | null> } {
  const seen: Array<{ sni: string | null } | null> = [];
  const waiters: Array<(t: { sni: string | null } | null) => void> = [];
  const info = (obj: object): void => {
    const o = obj as { event?: string; listener?: string; tls?: { sni: string | null } | null };
    if (o.event !== 'session' || o.listener !== 'mx') return;
    const t = o.tls ?? null;
    const w = waiters.shift();
    if (w) w(t);
    else seen.push(t);
  };
  const noop = (): void => undefined;
  return {
    logger: { info, warn: noop, error: noop, debug: noop },
    nextSession: () => {
      const first = seen.shift();
      return first !== undefined ? Promise.resolve(first) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** Client side of STARTTLS on the mx listener, then EHLO inside TLS. */
async function startTls(port: number, options: tls.ConnectionOptions): Promise<{ c: WireClient; socket: tls.TLSSocket }> {
  const c = await WireClient.connect(port);
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.ok((await c.cmd('EHLO client.test')).some((l) => /^250[ -]STARTTLS$/.test(l)));
  assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220 /);
  const socket = await c.startTls('', { rejectUnauthorized: false, ...options });
  assert.match((await c.cmd('EHLO client.test')).at(-1) ?? '', /^250 /);
  return { c, socket };
}

describe('several certificates on the real server', () => {
  let server: TestServer;
  let log: ReturnType<typeof sessionLog>;
  const pairs: Record<string, PemKeyPair> = {};
  const files: Record<string, KeyPairFiles> = {};
  before(async () => {
    pairs.aEc = await issueCert(ca, { names: ['a.test', 'mail.a.test'], keyType: 'ec', includeChain: true });
    pairs.aRsa = await issueCert(ca, { names: ['a.test', 'mail.a.test'], keyType: 'rsa', includeChain: true });
    pairs.b = await issueCert(ca, { names: ['b.test'] });
    pairs.wild = await issueCert(ca, { names: ['*.wild.test'] });
    for (const [name, pair] of Object.entries(pairs)) files[name] = await writeKeyPair(join(dir, 'server'), pair, `${name}-`);
    log = sessionLog();
    server = await startTestServer({
      logger: log.logger,
      configure: (cfg) => {
        cfg.tls.certificates = ['aEc', 'aRsa', 'b', 'wild'].map((n) => {
          const f = files[n];
          assert.ok(f);
          return { cert: f.certFile, key: f.keyFile };
        });
      },
    });
  });
  after(async () => {
    await server.close();
  });
  const fp = (name: string): string => {
    const pair = pairs[name];
    assert.ok(pair, name);
    return fingerprintOf(pair.certPem);
  };
  const defaultFp = (): string => {
    const leaf = server.running.certs.certificate();
    assert.ok(leaf);
    return leaf.fingerprint256;
  };

  test('implicit TLS: each name gets its certificate; unknown names and no SNI get the default', async () => {
    const port = server.port('submissions');
    const cases: Array<[string | undefined, string]> = [
      ['a.test', fp('aEc')],
      ['MAIL.A.test', fp('aEc')],
      ['b.test', fp('b')],
      ['x.wild.test', fp('wild')],
      // RFC 6125 §6.4.3: the wildcard covers exactly one label.
      ['y.x.wild.test', defaultFp()],
      ['wild.test', defaultFp()],
      ['unknown.test', defaultFp()],
      [undefined, defaultFp()],
    ];
    for (const [servername, want] of cases) {
      const s = await connectTls(port, servername === undefined ? {} : { servername });
      assert.equal(served(s), want, `servername=${String(servername)}`);
      await closeSocket(s);
    }
  });

  test('a verifying client gets a chain that verifies for the name it asked for', async () => {
    for (const servername of ['a.test', 'b.test', 'x.wild.test']) {
      const s = await connectTls(server.port('submissions'), { servername, ca: ca.certPem, rejectUnauthorized: true });
      assert.equal(s.authorized, true, servername);
      await closeSocket(s);
    }
  });

  test('ECDSA and RSA for one name: a modern client gets ECDSA, RSA-only clients get RSA', async () => {
    const port = server.port('submissions');
    const cases: Array<[string, tls.ConnectionOptions, string]> = [
      ['TLS 1.3 default', {}, fp('aEc')],
      ['TLS 1.2 default', { maxVersion: 'TLSv1.2' }, fp('aEc')],
      ['TLS 1.2 RSA suites and sigalgs', RSA_ONLY_12, fp('aRsa')],
      ['TLS 1.3 RSA-PSS sigalgs', RSA_ONLY_13, fp('aRsa')],
      // OpenSSL picks the suite with both key types present, which Node's SNICallback cannot do.
      ['TLS 1.2 RSA suites, ECDSA sigalgs offered', RSA_SUITES_ONLY, fp('aRsa')],
    ];
    for (const [what, options, want] of cases) {
      const s = await connectTls(port, { servername: 'a.test', ca: ca.certPem, rejectUnauthorized: true, ...options });
      assert.equal(served(s), want, what);
      await closeSocket(s);
    }
  });

  test('STARTTLS on the mx listener: chosen by SNI, ECDSA/RSA by client, SNI recorded in the session facts', async () => {
    const port = server.port('mx');
    const cases: Array<[string | undefined, tls.ConnectionOptions, string]> = [
      ['a.test', {}, fp('aEc')],
      ['a.test', RSA_ONLY_12, fp('aRsa')],
      ['mail.a.test', RSA_SUITES_ONLY, fp('aRsa')],
      ['b.test', {}, fp('b')],
      ['z.wild.test', {}, fp('wild')],
      ['nobody.test', {}, defaultFp()],
      [undefined, {}, defaultFp()],
    ];
    for (const [servername, options, want] of cases) {
      // WireClient sends 'localhost' unless told; '' sends no SNI at all.
      const { c, socket } = await startTls(port, { servername: servername ?? '', ...options });
      assert.equal(served(socket), want, `servername=${String(servername)}`);
      await c.cmd('QUIT');
      c.close();
      const facts = await log.nextSession();
      assert.equal(facts?.sni ?? null, servername ?? null, `recorded SNI for ${String(servername)}`);
    }
  });

  test('openssl s_client -starttls smtp -servername gets the certificate of that name', async (t) => {
    const port = server.port('mx');
    const run = (args: string[]): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-starttls', 'smtp', ...args], { timeout: 20_000 }, (err, stdout) => {
          if (err && stdout === '') reject(err);
          else resolve(stdout);
        });
        child.stdin?.end('QUIT\r\n');
      });
    let out: string;
    try {
      out = await run(['-servername', 'b.test']);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return t.skip('openssl not installed');
      throw err;
    }
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
    assert.ok(pem, out);
    assert.equal(fingerprintOf(pem), fp('b'));
    const rsa = await run(['-servername', 'a.test', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
    const rsaPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(rsa)?.[0];
    assert.ok(rsaPem, rsa);
    assert.equal(fingerprintOf(rsaPem), fp('aRsa'));
    // Two sessions ended (QUIT); their log lines are not this test's business.
    await log.nextSession();
    await log.nextSession();
  });

  test('reload: one pair renewed, another broken: the renewed one is served, the broken one keeps its old certificate', async () => {
    const port = server.port('submissions');
    const bFiles = files.b;
    const wildFiles = files.wild;
    assert.ok(bFiles && wildFiles);
    const renewed = await issueCert(ca, { names: ['*.wild.test'] });
    await writeKeyPair(join(dir, 'server'), renewed, 'wild-');
    await writeFile(bFiles.keyFile, '-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n');
    const result = await server.running.certs.reload();
    assert.equal(result.ok, false);
    assert.ok(!result.ok);
    assert.equal(result.changed, true);
    assert.equal(result.error.code, 'TLS_CERT_INVALID');
    assert.match(result.error.message, /tls\.certificates\[2\]/);
    assert.ok(result.error.message.includes(bFiles.keyFile), result.error.message);

    const w = await connectTls(port, { servername: 'q.wild.test' });
    assert.equal(served(w), fingerprintOf(renewed.certPem));
    await closeSocket(w);
    const b = await connectTls(port, { servername: 'b.test' });
    assert.equal(served(b), fp('b'));
    await closeSocket(b);

    // Repaired: the next reload succeeds and reports every certificate in service.
    const pairB = pairs.b;
    assert.ok(pairB);
    await writeFile(bFiles.keyFile, pairB.keyPem);
    const fixed = await server.running.certs.reload();
    assert.ok(fixed.ok, JSON.stringify(fixed));
    assert.equal(fixed.certificates.length, 5);
    pairs.wild = renewed;
  });
});

describe('CertificateStore with several pairs', () => {
  function reloadWhere(store: CertificateStore, pred: (r: ReloadResult) => boolean): Promise<ReloadResult> {
    return new Promise((resolve) => {
      const off = store.onReload((r) => {
        if (pred(r)) {
          off();
          resolve(r);
        }
      });
    });
  }

  /** A server wrapping accepted sockets as the real server does (transport's secureServerSocket). */
  async function startStoreServer(store: CertificateStore, timeoutMs = 5000): Promise<{ port: number; close(): Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((raw) => {
      sockets.add(raw);
      raw.on('close', () => sockets.delete(raw));
      raw.on('error', () => raw.destroy());
      const options = serverSocketOptions(store.select());
      if (options === null) return raw.destroy();
      secureServerSocket(raw, options, timeoutMs).then(
        (secure) => secure.on('error', () => secure.destroy()),
        () => undefined,
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    return {
      port: address.port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  test('the watcher follows every pair, not only the default', async () => {
    const main = await writeKeyPair(join(dir, 'watch'), await issueCert(ca, { names: ['main.test'] }), 'main-');
    const other = await writeKeyPair(join(dir, 'watch-other'), await issueCert(ca, { names: ['other.test'] }), 'other-');
    const store = await CertificateStore.fromPairs(
      [
        { ...main, label: 'tls.cert/tls.key' },
        { ...other, label: 'tls.certificates[0]' },
      ],
      { debounceMs: 50 },
    );
    store.watch();
    const server = await startStoreServer(store);
    try {
      const next = await issueCert(ca, { names: ['other.test'] });
      const want = fingerprintOf(next.certPem);
      const reloaded = reloadWhere(store, (r) => r.ok && r.certificates.some((c) => c.fingerprint256 === want));
      await writeFile(other.keyFile, next.keyPem);
      await writeFile(other.certFile, next.certPem);
      await reloaded;
      assert.deepEqual(
        store.certificates().map((c) => [c.label, c.names]),
        [
          ['tls.cert/tls.key', ['main.test']],
          ['tls.certificates[0]', ['other.test']],
        ],
      );
      const s = await connectTls(server.port, { servername: 'other.test' });
      assert.equal(served(s), want);
      await closeSocket(s);
    } finally {
      store.close();
      await server.close();
    }
  });

  test('waiting for the ClientHello is bounded: a stalled client is cut off, garbage fails the handshake', async () => {
    const one = await writeKeyPair(join(dir, 'stall'), await issueCert(ca, { names: ['one.test'] }), 'one-');
    const two = await writeKeyPair(join(dir, 'stall'), await issueCert(ca, { names: ['two.test'] }), 'two-');
    const store = await CertificateStore.fromPairs([one, two]);
    assert.notEqual(store.select()?.sniCallback ?? null, null);
    const server = await startStoreServer(store, 300);
    const closed = (bytes: Buffer): Promise<void> =>
      new Promise((resolve) => {
        const raw = net.connect(server.port, '127.0.0.1', () => raw.write(bytes));
        raw.on('data', () => undefined);
        raw.once('error', () => undefined);
        raw.once('close', () => resolve());
      });
    try {
      // The start of a handshake record that never completes: the handshake timeout closes it.
      await closed(Buffer.from([22, 3, 1, 2, 0, 1, 0]));
      // Not TLS at all: the default context is used and OpenSSL fails the handshake.
      await closed(Buffer.from('EHLO client.test\r\n'));
    } finally {
      store.close();
      await server.close();
    }
  });

  test('two different certificates of one key type for one name are refused, naming both', async () => {
    const one = await writeKeyPair(join(dir, 'conflict'), await issueCert(ca, { names: ['same.test'] }), 'one-');
    const two = await writeKeyPair(join(dir, 'conflict'), await issueCert(ca, { names: ['same.test', 'x.test'] }), 'two-');
    await assert.rejects(
      CertificateStore.fromPairs([
        { ...one, label: 'tls.cert/tls.key' },
        { ...two, label: 'tls.certificates[0]' },
      ]),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TLS_CERT_CONFLICT');
        assert.match(err.message, /tls\.certificates\[0\].*tls\.cert\/tls\.key.*same\.test/);
        return true;
      },
    );
    // The same certificate listed twice is harmless.
    const store = await CertificateStore.fromPairs([one, { ...one }]);
    assert.equal(store.certificates().length, 2);
    store.close();
  });
});

describe('refused at start', () => {
  async function startWith(certificates: Array<{ cert: string; key: string }>): Promise<Error & { code?: string }> {
    const cfg = defaultConfig();
    cfg.dataDir = join(dir, `data-${Math.random().toString(36).slice(2)}`);
    cfg.hostname = 'mail.postseal.test';
    cfg.tls.certificates = certificates;
    for (const l of Object.values(cfg.listeners)) if (l) l.address = '127.0.0.1:0';
    try {
      const running = await startServe(cfg, { logger: silentLogger });
      await running.close(0);
    } catch (err) {
      assert.ok(err instanceof Error);
      return err;
    }
    assert.fail('the server started');
  }

  test('a key that does not match, an unreadable file: the message names the config key and the file', async () => {
    const good = await writeKeyPair(join(dir, 'start'), await issueCert(ca, { names: ['good.test'] }), 'good-');
    const other = await writeKeyPair(join(dir, 'start'), await issueCert(ca, { names: ['other.test'] }), 'other-');
    const mismatch = await startWith([
      { cert: good.certFile, key: good.keyFile },
      { cert: other.certFile, key: good.keyFile },
    ]);
    assert.equal(mismatch.code, 'TLS_CERT_INVALID');
    assert.match(mismatch.message, /^tls\.certificates\[1\]: /);
    assert.ok(mismatch.message.includes(good.keyFile), mismatch.message);

    const missing = join(dir, 'start', 'no-such-key.pem');
    const unreadable = await startWith([{ cert: good.certFile, key: missing }]);
    assert.equal(unreadable.code, 'TLS_CERT_INVALID');
    assert.match(unreadable.message, /^tls\.certificates\[0\]: cannot read TLS key file/);
    assert.ok(unreadable.message.includes(missing), unreadable.message);
  });
});

describe('scanClientHello', () => {
  /** The first flight a real Node client sends (a real ClientHello), captured on a raw socket. */
  async function captureHello(options: tls.ConnectionOptions): Promise<Buffer> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const got = new Promise<Buffer>((resolve) => {
      server.once('connection', (raw) => {
        let held = Buffer.alloc(0);
        raw.on('data', (d: Buffer) => {
          held = Buffer.concat([held, d]);
          if (scanClientHello(held).kind === 'done') {
            resolve(held);
            raw.destroy();
          }
        });
      });
    });
    const client = tls.connect({ host: '127.0.0.1', port: address.port, rejectUnauthorized: false, ...options });
    client.on('error', () => undefined);
    const hello = await got;
    client.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return hello;
  }

  /** The same handshake message cut into records of at most `size` bytes (RFC 8446 §5.1). */
  function refragment(hello: Buffer, size: number): Buffer {
    const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
    const out: Buffer[] = [];
    for (let i = 0; i < body.length; i += size) {
      const part = body.subarray(i, i + size);
      const head = Buffer.from([22, 3, 1, 0, 0]);
      head.writeUInt16BE(part.length, 3);
      out.push(head, part);
    }
    return Buffer.concat(out);
  }

  test('reads the SNI of a real ClientHello, whole, in pieces, and over several records', async () => {
    const hello = await captureHello({ servername: 'Mail.Example.test' });
    assert.deepEqual(scanClientHello(hello), { kind: 'done', servername: 'Mail.Example.test' });
    for (let cut = 0; cut < hello.length; cut += 7) assert.equal(scanClientHello(hello.subarray(0, cut)).kind, 'incomplete', `cut at ${cut}`);
    const split = refragment(hello, 50);
    assert.deepEqual(scanClientHello(split), { kind: 'done', servername: 'Mail.Example.test' });
    assert.equal(scanClientHello(split.subarray(0, split.length - 1)).kind, 'incomplete');
  });

  test('no SNI, or not TLS at all: done, with no name (OpenSSL judges the rest)', async () => {
    const noSni = await captureHello({}); // by IP: Node sends no server_name
    assert.deepEqual(scanClientHello(noSni), { kind: 'done', servername: null });
    assert.deepEqual(scanClientHello(Buffer.from('EHLO client.test\r\n')), { kind: 'done', servername: null });
    assert.deepEqual(scanClientHello(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0])), { kind: 'done', servername: null });
  });
});
