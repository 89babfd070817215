/**
 * The AUTH limiter under attack, against a real server (library SmtpServer,
 * implicit TLS on 127.0.0.1:0, a real certificate) whose UserVerifier counts the passwords it
 * really checks (scrypt, the store's own password code):
 * - 60 parallel TLS sessions from one address, each sending one wrong AUTH PLAIN at the same
 *   moment, four rounds: passwords checked stay within maxFailures (+ the in-flight cap);
 *   before the fix (check-then-record) the first round alone had all 60 checked;
 * - the right password from the same address still works after failures, after a delay;
 * - failures count per account across source addresses (127.0.x.y: loopback /8 is all local on
 *   Linux); other accounts are unaffected; the owner's known network is not held back;
 * - the client-network key (IPv4 prefix, IPv6 /64) and the limiter's bookkeeping, as units.
 * Waits are on replies or on the limiter's own counters (in memory), never on durations.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpServer } from '../../src/server/server.js';
import { AuthLimiter } from '../../src/server/context.js';
import { clientKey } from '../../src/server/client-network.js';
import { DEFAULT_LIMITS } from '../../src/config.js';
import type { AuthLimits, Logger, UserVerifier } from '../../src/server/types.js';
import { CertificateStore, upgradeSocketOptions } from '../../src/tls/index.js';
import { hashPassword, verifyPassword } from '../../src/store/passwords.js';
import { issueCert, makeTestCa, writeKeyPair, type TestCa } from '../helpers/certs.js';
import { WireClient } from '../helpers/wire.js';

const ALICE = { address: 'alice@postseal.test', password: 'correct horse battery' };
const BOB = { address: 'bob@postseal.test', password: 'another good password' };

type Entry = Record<string, unknown> & { level: string };

function memoryLogger(): Logger & { entries: Entry[] } {
  const entries: Entry[] = [];
  const at = (level: string) => (obj: object): void => void entries.push({ ...(obj as Record<string, unknown>), level });
  return { entries, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

/** A real UserVerifier (scrypt hashes, the store's password code) that counts its checks. */
class CountingVerifier implements UserVerifier {
  checked = 0;
  private constructor(private readonly hashes: Map<string, string>) {}
  static async create(users: Array<{ address: string; password: string }>): Promise<CountingVerifier> {
    const m = new Map<string, string>();
    for (const u of users) m.set(u.address, await hashPassword(u.password));
    return new CountingVerifier(m);
  }
  async verifyUser(address: string, password: string): Promise<boolean> {
    this.checked++;
    return verifyPassword(password, this.hashes.get(address.toLowerCase()) ?? null);
  }
}

let ca: TestCa;
let certs: CertificateStore;
let certDir: string;
before(async () => {
  ca = await makeTestCa();
  certDir = await mkdtemp(join(tmpdir(), 'postseal-authlimit-'));
  const files = await writeKeyPair(certDir, await issueCert(ca, { names: ['localhost', '127.0.0.1'] }));
  certs = await CertificateStore.fromFiles(files.certFile, files.keyFile, { policy: { minVersion: 'TLSv1.2' } });
});
after(async () => {
  certs.close();
  await rm(certDir, { recursive: true, force: true });
});

interface AuthServer {
  server: SmtpServer;
  port: number;
  users: CountingVerifier;
  log: ReturnType<typeof memoryLogger>;
}

async function withAuthServer(auth: Partial<AuthLimits>, fn: (s: AuthServer) => Promise<void>): Promise<void> {
  const users = await CountingVerifier.create([ALICE, BOB]);
  const log = memoryLogger();
  const server = new SmtpServer({
    hostname: 'mail.postseal.test',
    localDomains: ['postseal.test'],
    listeners: [{ name: 'submissions', host: '127.0.0.1', port: 0, tls: 'implicit', auth: 'required' }],
    limits: { ...DEFAULT_LIMITS, auth: { ...DEFAULT_LIMITS.auth, ...auth } },
    bareLineEndings: 'reject',
    sink: { accept: (m) => Promise.resolve({ id: m.id }) },
    users,
    tls: {
      hasCertificate: () => true,
      serverOptions: () => {
        const o = upgradeSocketOptions(certs.getter);
        return o && o.secureContext ? { ...o, secureContext: o.secureContext } : null;
      },
    },
    logger: log,
  });
  const [bound] = await server.listen();
  assert.ok(bound);
  try {
    await fn({ server, port: bound.port, users, log });
  } finally {
    await server.close(200);
  }
}

/** A TLS session from `localAddress`, greeted and past EHLO. */
async function session(port: number, localAddress = '127.0.0.1'): Promise<WireClient> {
  const raw = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  const c = await new Promise<WireClient>((resolve, reject) => {
    const t = tls.connect({ socket: raw, ca: ca.certPem, servername: 'localhost' }, () => resolve(new WireClient(t)));
    t.once('error', reject);
  });
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.match((await c.cmd('EHLO client.example')).at(-1) ?? '', /^250 /);
  return c;
}

const plain = (user: string, pass: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`;

/**
 * Sends one AUTH line on every session at once; resolves when each either replied or is held
 * by the limiter (its counter of waiting attempts grew by the rest). Returns the replies.
 */
async function fireAll(s: AuthServer, sessions: WireClient[], line: (i: number) => string): Promise<Array<string | null>> {
  const waitingBefore = s.server.authLimiter.stats().waiting;
  const replies: Array<string | null> = sessions.map(() => null);
  let replied = 0;
  for (const [i, c] of sessions.entries()) {
    c.write(line(i) + '\r\n');
    c.readLine(120_000).then(
      (r) => {
        replies[i] = r;
        replied++;
      },
      () => undefined,
    );
  }
  const deadline = Date.now() + 60_000;
  while (replied + (s.server.authLimiter.stats().waiting - waitingBefore) < sessions.length) {
    if (Date.now() > deadline) assert.fail(`round did not settle: ${replied} replies, ${JSON.stringify(s.server.authLimiter.stats())}`);
    await new Promise((r) => setImmediate(r));
  }
  return replies;
}

describe('AUTH limit under a parallel attack', () => {
  test('60 parallel sessions x 4 rounds from one address: passwords checked <= maxFailures + in-flight cap', async () => {
    // Defaults, except a delay longer than the test: an attempt past the free failures is held
    // (and would be checked only after it), so what is counted is what parallelism alone bought.
    const auth = { delayMs: 600_000, maxDelayMs: 600_000 };
    const { maxFailures, maxInFlightPerNetwork } = DEFAULT_LIMITS.auth;
    await withAuthServer(auth, async (s) => {
      const held: WireClient[] = [];
      for (let round = 0; round < 4; round++) {
        const sessions = await Promise.all(Array.from({ length: 60 }, () => session(s.port)));
        const replies = await fireAll(s, sessions, (i) => plain(ALICE.address, `guess ${round}.${i}`));
        for (const [i, r] of replies.entries()) {
          // A session without a reply is held by the limiter (waiting out its delay).
          if (r === null) held.push(sessions[i] as WireClient);
          else {
            assert.match(r, /^(535 5\.7\.8 |454 4\.7\.0 )/);
            sessions[i]?.close();
          }
        }
      }
      const stats = s.server.authLimiter.stats();
      assert.ok(s.users.checked <= maxFailures + maxInFlightPerNetwork, `checked ${s.users.checked} passwords`);
      assert.equal(s.users.checked, maxFailures, 'exactly the free failures were checked');
      assert.ok(stats.inFlight <= maxInFlightPerNetwork, JSON.stringify(stats));
      assert.equal(held.length, stats.waiting);
      for (const c of held) c.close();
    });
  });

  test('the right password from the same address still works after failures, after a delay', async () => {
    await withAuthServer({ maxFailures: 3, delayMs: 20, maxDelayMs: 200 }, async (s) => {
      const c = await session(s.port, '127.0.0.4');
      for (let i = 0; i < 5; i++) assert.match((await c.cmd(plain(ALICE.address, `wrong ${i}`)))[0] ?? '', /^535 5\.7\.8 /);
      assert.deepEqual(await c.cmd(plain(ALICE.address, ALICE.password)), ['235 2.7.0 Authentication successful']);
      assert.match((await c.cmd(`MAIL FROM:<${ALICE.address}>`))[0] ?? '', /^250 /);
      c.close();
      assert.equal(s.users.checked, 6, 'every attempt was checked, the late ones after their delay');
      const auth = s.log.entries.filter((e) => e.event === 'auth');
      assert.deepEqual(auth.map((e) => e.result), ['failed', 'failed', 'failed', 'delayed', 'failed', 'delayed', 'failed', 'delayed', 'ok']);
      assert.deepEqual(auth.filter((e) => e.result === 'delayed').map((e) => e.delayMs), [20, 40, 80]);
    });
  });
});

describe('AUTH failures per account across client addresses', () => {
  test('a spread attack on one account is held to its limit; other accounts and the owner network are not', async () => {
    const auth = { maxFailures: 3, delayMs: 600_000, maxDelayMs: 600_000 };
    await withAuthServer(auth, async (s) => {
      // The owner logs in from 127.0.0.9 before the attack: that network becomes known.
      const owner = await session(s.port, '127.0.0.9');
      assert.deepEqual(await owner.cmd(plain(ALICE.address, ALICE.password)), ['235 2.7.0 Authentication successful']);
      owner.close();
      const checkedBefore = s.users.checked;

      // Rounds of 10 fresh client addresses, one wrong password each, all at once: every network
      // has one failure at most, so only the account count can stop this. Until the account's
      // in-flight cap is filled with held attempts (a bounded number of rounds).
      const cap = DEFAULT_LIMITS.auth.maxInFlightPerAccount;
      const sessions: WireClient[] = [];
      const replies: string[] = [];
      for (let round = 0; round < 8 && s.server.authLimiter.stats().waiting < cap; round++) {
        const batch = await Promise.all(Array.from({ length: 10 }, (_, i) => session(s.port, `127.0.${round + 1}.${i + 1}`)));
        sessions.push(...batch);
        for (const r of await fireAll(s, batch, (i) => plain(ALICE.address, `spread guess ${round}.${i}`))) if (r !== null) replies.push(r);
      }
      assert.equal(s.server.authLimiter.stats().waiting, cap, 'the account holds its in-flight cap of waiting attempts');
      for (const r of replies) assert.match(r, /^(535 5\.7\.8 |454 4\.7\.0 )/);
      const checked = s.users.checked - checkedBefore;
      assert.ok(checked <= auth.maxFailures + cap, `checked ${checked}`);
      assert.equal(checked, auth.maxFailures, 'past the free failures, attempts wait instead of being checked');
      assert.ok(replies.some((r) => r.startsWith('454 4.7.0 ')), 'attempts past the in-flight cap were refused unchecked');

      // Another account from an attacking address: unaffected.
      const bob = await session(s.port, '127.0.1.1');
      assert.deepEqual(await bob.cmd(plain(BOB.address, BOB.password)), ['235 2.7.0 Authentication successful']);
      bob.close();
      // The owner from the known network: not held back by the account's failures.
      const again = await session(s.port, '127.0.0.9');
      assert.deepEqual(await again.cmd(plain(ALICE.address, ALICE.password)), ['235 2.7.0 Authentication successful']);
      again.close();
      // From a network the account never logged in from, the account is busy: 454, unchecked.
      const stranger = await session(s.port, '127.0.200.1');
      const before = s.users.checked;
      assert.deepEqual(await stranger.cmd(plain(ALICE.address, ALICE.password)), ['454 4.7.0 Temporary authentication failure: too many attempts in progress, try again later']);
      assert.equal(s.users.checked, before);
      stranger.close();
      for (const c of sessions) c.close();
    });
  });
});

describe('AUTH limiter units', () => {
  const limits = (over: Partial<AuthLimits> = {}): AuthLimits => ({ ...DEFAULT_LIMITS.auth, ...over });

  test('client network key: IPv6 per /64, IPv4 per address or per configured prefix, mapped IPv4', () => {
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:ffff:1:2:3'));
    assert.equal(clientKey('2001:db8:1:2::1'), '2001:db8:1:2:0:0:0:0/64');
    assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
    assert.equal(clientKey('2001:DB8:1:2::1'), clientKey('2001:db8:1:2::1'));
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0:0:0:0:0/64');
    assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('192.0.2.7', 24), '192.0.2.0/24');
    assert.equal(clientKey('192.0.2.7', 24), clientKey('192.0.2.250', 24));
    assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('not an address'), 'not an address');
    // The limiter groups with its configured prefixes.
    const l = new AuthLimiter(limits({ maxFailures: 1, maxInFlightPerNetwork: 100, maxInFlightPerAccount: 100 }));
    const a = l.admit('2001:db8:1:2::1', 'x@a.test', 0);
    assert.ok(a.ok);
    a.ticket.settle(false);
    const b = l.admit('2001:db8:1:2:ffff::9', 'y@a.test', 0);
    assert.ok(b.ok && b.delayedBy === 'network' && b.delayMs > 0, 'same /64: one network');
  });

  test('reservations: parallel attempts are counted as they start; success gives its own back', () => {
    const l = new AuthLimiter(limits({ maxFailures: 2, delayMs: 100, maxDelayMs: 1000, maxInFlightPerNetwork: 10, maxInFlightPerAccount: 10 }));
    const first = l.admit('192.0.2.1', 'u@a.test', 0);
    const second = l.admit('192.0.2.1', 'u@a.test', 0);
    const third = l.admit('192.0.2.1', 'u@a.test', 0);
    assert.ok(first.ok && second.ok && third.ok);
    assert.deepEqual([first.delayMs, second.delayMs, third.delayMs], [0, 0, 100]);
    first.ticket.settle(true); // given back
    second.ticket.settle(false);
    third.ticket.settle(false);
    const next = l.admit('192.0.2.1', 'v@a.test', 1);
    assert.ok(next.ok);
    assert.equal(next.delayMs, 100, 'two failures kept, the success given back');
    next.ticket.settle(false);
    // Past the window nothing is remembered.
    const later = l.admit('192.0.2.1', 'v@a.test', 1 + DEFAULT_LIMITS.auth.windowMs);
    assert.ok(later.ok);
    assert.equal(later.delayMs, 0);
  });

  test('in-flight caps refuse without counting; memory stays under maxTrackedKeys', () => {
    const l = new AuthLimiter(limits({ maxInFlightPerNetwork: 2, maxInFlightPerAccount: 100, maxTrackedKeys: 100 }));
    const held = [l.admit('192.0.2.1', 'a@a.test', 0), l.admit('192.0.2.1', 'b@a.test', 0)];
    const refused = l.admit('192.0.2.1', 'c@a.test', 0);
    assert.deepEqual(refused, { ok: false, reason: 'network-busy', network: '192.0.2.1' });
    for (const h of held) if (h.ok) h.ticket.settle(false);
    for (let i = 0; i < 5000; i++) {
      const a = l.admit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `user${i}@a.test`, i);
      if (a.ok) a.ticket.settle(false);
    }
    const st = l.stats();
    assert.ok(st.networks <= 100 && st.accounts <= 100, JSON.stringify(st));
    assert.equal(st.inFlight, 0);
  });
});
