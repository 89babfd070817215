/**
 * The sending-policy matrix of issue 10: for each scenario (no policy, MTA-STS enforce/testing,
 * DANE-EE 3 1 1, DANE-TA 2 0 1, unusable TLSA, bogus DNSSEC, TLS table entry, REQUIRETLS) and each
 * path (honest, STARTTLS stripped, wrong certificate, MX not in the policy), the queue runner
 * delivers or defers as the RFCs say, the recorded TLS facts and TLS-RPT counters are right, and
 * no byte of the message reaches the attacker where it must not (the MITM's record).
 *
 * Real parts only: a postseal receiver with a test-CA certificate (chain included, for DANE-TA)
 * for every MX name, the attacker in the middle (helpers/mitm.ts) in front of it, the test DNS
 * server with the AD bit set (validating resolver) and SERVFAIL for the bogus TLSA, and an HTTPS
 * policy server with a test-CA certificate for every mta-sts.DOMAIN.
 *
 * Every (scenario, path) cell has its own recipient domain, so MTA-STS cache entries and TLS-RPT
 * counters never mix. The expectation table EXPECT is written once; every cell is driven from it
 * and the resulting matrix is printed at the end.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { systemResolver, uniformTimeouts } from '../../src/client/index.js';
import { defaultConfig, DEFAULT_RELAY } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { QueueRunner, type RelayConfig } from '../../src/relay/runner.js';
import { startServe } from '../../src/serve.js';
import { openSqliteStore, type Store } from '../../src/store/index.js';
import { issueCert, makeTestCa, writeKeyPair, type PemKeyPair, type TestCa } from '../helpers/certs.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { startMitm, type Mitm, type MitmMode } from '../helpers/mitm.js';
import { queueOutbound } from '../helpers/outbound.js';
import { runPeer, ROOT } from '../helpers/peers.js';
import { startPostsealReceiver, type Receiver } from '../helpers/receivers.js';

// --- the expectation table --------------------------------------------------------------------

const SCENARIOS = ['none', 'sts-enforce', 'sts-testing', 'dane-ee', 'dane-ta', 'tlsa-unusable', 'dnssec-bogus', 'table', 'requiretls'] as const;
type Scenario = (typeof SCENARIOS)[number];
const PATHS = ['honest', 'stripped', 'wrong-cert', 'mx-unlisted'] as const;
type Path = (typeof PATHS)[number];

const LABEL: Record<Scenario, string> = {
  none: 'no policy',
  'sts-enforce': 'MTA-STS enforce',
  'sts-testing': 'MTA-STS testing',
  'dane-ee': 'DANE-EE 3 1 1',
  'dane-ta': 'DANE-TA 2 0 1',
  'tlsa-unusable': 'unusable TLSA (1 1 1, 0 0 1)',
  'dnssec-bogus': 'bogus DNSSEC (TLSA SERVFAIL)',
  table: 'table entry (verify)',
  requiretls: 'REQUIRETLS',
};
const MODE: Record<Path, MitmMode> = { honest: 'pass', stripped: 'strip-starttls', 'wrong-cert': 'wrong-cert', 'mx-unlisted': 'pass' };

interface Expect {
  outcome: 'delivered' | 'deferred';
  /** levelReached recorded for the attempt (any of). */
  reached?: string[];
  /** The attacker reads the body: true only where the RFC accepts it (opportunistic paths). */
  leak: boolean;
  /** The MX is never connected to (decided before connecting). */
  noConnection?: boolean;
  /** TLS-RPT counter for the cell's domain: policy type and result (any of), or null: not asserted. */
  rpt: { type: 'sts' | 'tlsa'; result: string[] } | null;
  why: string;
}

const ok = (reached: string[], why: string, rpt: Expect['rpt'] = null, leak = false): Expect => ({ outcome: 'delivered', reached, leak, rpt, why });
const defer = (why: string, rpt: Expect['rpt'] = null, noConnection = false): Expect => ({ outcome: 'deferred', leak: false, noConnection, rpt, why });
const sts = (...result: string[]): Expect['rpt'] => ({ type: 'sts', result });
const tlsa = (...result: string[]): Expect['rpt'] => ({ type: 'tlsa', result });
const DANE_MISMATCH = ['tlsa-invalid', 'validation-failure', 'certificate-not-trusted'];

const EXPECT: Record<Scenario, Record<Path, Expect>> = {
  none: {
    honest: ok(['verify'], 'RFC 7435 opportunistic; the chain is trusted so the session is verified anyway'),
    stripped: ok(['none'], 'RFC 3207 §4 / RFC 7435: nothing tells may that STARTTLS was stripped: plaintext, the attacker reads it', null, true),
    'wrong-cert': ok(['encrypt'], 'RFC 7435: may takes any certificate: the attacker reads it', null, true),
    'mx-unlisted': ok(['verify'], 'no policy: any MX'),
  },
  'sts-enforce': {
    honest: ok(['verify'], 'RFC 8461 §4.1/§4.2: MX matches, PKIX verified for the MX name', sts('success')),
    stripped: defer('RFC 8461 §5: enforce never falls back to plaintext: deferred 4.7.x', sts('starttls-not-supported')),
    'wrong-cert': defer('RFC 8461 §4.2: certificate not trusted: deferred', sts('certificate-not-trusted', 'certificate-host-mismatch')),
    'mx-unlisted': defer('RFC 8461 §4.1: MX matches no mx: pattern: not used, deferred', sts('validation-failure'), true),
  },
  'sts-testing': {
    honest: ok(['verify'], 'RFC 8461 §5 testing, no failure', sts('success')),
    stripped: ok(['none'], 'RFC 8461 §5 testing: deliver as before, report starttls-not-supported', sts('starttls-not-supported'), true),
    'wrong-cert': ok(['encrypt'], 'RFC 8461 §5 testing: deliver as before, report the certificate', sts('certificate-not-trusted', 'certificate-host-mismatch'), true),
    'mx-unlisted': ok(['verify'], 'RFC 8461 §5 testing: deliver, report the MX mismatch', sts('validation-failure')),
  },
  'dane-ee': {
    honest: ok(['dane', 'verify'], 'RFC 7672 §3.1.1: DANE-EE SPKI SHA-256 matches', tlsa('success')),
    stripped: defer('RFC 7672 §2.2: usable secure TLSA makes STARTTLS mandatory', tlsa('starttls-not-supported')),
    'wrong-cert': defer('RFC 7672 §3.1.1: no TLSA record matches the certificate', tlsa(...DANE_MISMATCH)),
    'mx-unlisted': ok(['dane', 'verify'], 'RFC 7672 §2.2: DANE has no MX list: the MX from the secure MX RRset, its own TLSA', tlsa('success')),
  },
  'dane-ta': {
    honest: ok(['dane', 'verify'], 'RFC 7672 §3.1.2: DANE-TA cert SHA-256 of the CA in the chain, name matches', tlsa('success')),
    stripped: defer('RFC 7672 §2.2: STARTTLS mandatory', tlsa('starttls-not-supported')),
    'wrong-cert': defer('RFC 7672 §3.1.2: chain does not lead to the TLSA trust anchor', tlsa(...DANE_MISMATCH)),
    'mx-unlisted': ok(['dane', 'verify'], 'RFC 7672 §2.2: DANE has no MX list', tlsa('success')),
  },
  'tlsa-unusable': {
    honest: ok(['encrypt', 'verify'], 'RFC 7672 §2.2/§3.1.3: PKIX-TA/EE unusable: encrypt without authentication'),
    stripped: defer('RFC 7672 §2.2: a secure TLSA RRset, even unusable, makes TLS mandatory'),
    'wrong-cert': ok(['encrypt'], 'RFC 7672 §2.2: encrypt, no authentication: any certificate (the attacker reads it)', null, true),
    'mx-unlisted': ok(['encrypt', 'verify'], 'RFC 7672 §2.2: encrypt'),
  },
  'dnssec-bogus': {
    honest: defer('RFC 7672 §2.1.1: a bogus TLSA answer: the MX is not used', tlsa('dnssec-invalid'), true),
    stripped: defer('RFC 7672 §2.1.1: not used (the attacker never sees a connection)', tlsa('dnssec-invalid'), true),
    'wrong-cert': defer('RFC 7672 §2.1.1: not used', tlsa('dnssec-invalid'), true),
    'mx-unlisted': defer('RFC 7672 §2.1.1: not used', tlsa('dnssec-invalid'), true),
  },
  table: {
    honest: ok(['verify'], 'table entry verify (Postfix smtp_tls_policy_maps): wins over everything'),
    stripped: defer('table entry verify: TLS required'),
    'wrong-cert': defer('table entry verify: the chain is not trusted'),
    'mx-unlisted': ok(['verify'], 'a table entry has no MX list; the certificate names the MX'),
  },
  requiretls: {
    honest: ok(['verify'], 'RFC 8689 §4.2.1: verified peer that offers REQUIRETLS'),
    stripped: defer('RFC 8689 §4.2.1: no TLS: not sent'),
    'wrong-cert': defer('RFC 8689 §4.2.1: not verified: not sent'),
    'mx-unlisted': ok(['verify'], 'RFC 8689: any verified MX'),
  },
};

// The relay's policy keys live in the config schema (relay.dns/mtaSts/dane/tlsRpt) and serve
// builds the runner's lookups from them, so the cells that need a policy go through startServe
// with those keys; the others drive the QueueRunner directly.
const relayDefaults = defaultConfig().relay as unknown as Record<string, unknown>;
/** Scenarios that need serve's policy lookups (MTA-STS, DANE, TLS-RPT); the rest use the runner alone. */
const NEEDS_POLICY: ReadonlySet<Scenario> = new Set<Scenario>(['sts-enforce', 'sts-testing', 'dane-ee', 'dane-ta', 'tlsa-unusable', 'dnssec-bogus']);

/** The policy settings for the runner, in the issue's contract shape. */
function policySettings(dnsPort: number, policyPort: number): Record<string, unknown> {
  const sub = (k: string): Record<string, unknown> => {
    const v = relayDefaults[k];
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  };
  const out: Record<string, unknown> = {};
  out.dns = [`127.0.0.1:${dnsPort}`];
  out.mtaSts = { ...sub('mtaSts'), enabled: true, endpoint: `127.0.0.1:${policyPort}` };
  out.dane = { ...sub('dane'), enabled: true };
  out.tlsRpt = { ...sub('tlsRpt'), enabled: true };
  // TLS-RPT reports are not the subject here: counting only.
  return out;
}

interface RptReader {
  listTlsRptCounts(opts?: { domain?: string }): Array<{ policyType: string; result: string; mxHost: string; count: number }>;
}
function rptReader(store: Store): RptReader | null {
  const s = store as unknown as Partial<RptReader>;
  return typeof s.listTlsRptCounts === 'function' ? (s as RptReader) : null;
}

// --- the world: PKI, receiver, attacker, DNS, HTTPS policy server ------------------------------

const domainOf = (s: Scenario, p: Path): string => `${p}.${s}.matrix.test`;
const mxOf = (s: Scenario, p: Path): string => (p === 'mx-unlisted' ? `mx.${s}.unlisted.test` : `mx.${domainOf(s, p)}`);
const STS_SCENARIOS: Scenario[] = ['sts-enforce', 'sts-testing'];
const RESTART_DOMAIN = 'restart.matrix.test';

let ca: TestCa;
let otherCa: TestCa;
let receiverPair: PemKeyPair;
let receiver: Receiver;
let mitm: Mitm;
let dns: DnsServer;
let policy: PolicyServer;
let caFile: string;
const dirs: string[] = [];

interface Cell {
  scenario: Scenario;
  path: Path;
  got: string;
  pass: boolean | null;
  dataDir: string | null;
  queueId: string | null;
  /** lastTls.host as recorded. */
  tlsHost: string | null;
}
const cells: Cell[] = [];

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

interface PolicyServer {
  port: number;
  hits: string[];
  close(): Promise<void>;
}

/** An HTTPS server answering https://mta-sts.DOMAIN/.well-known/mta-sts.txt from `policies` by Host. */
async function startPolicyServer(pair: PemKeyPair, policies: Map<string, string>): Promise<PolicyServer> {
  const hits: string[] = [];
  const server = https.createServer({ key: pair.keyPem, cert: pair.certPem }, (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    hits.push(`${host}${req.url ?? ''}`);
    const text = req.url === '/.well-known/mta-sts.txt' ? policies.get(host.replace(/^mta-sts\./, '')) : undefined;
    if (text === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no policy\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('policy server: no port');
  return {
    port: addr.port,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function stsPolicy(mode: 'enforce' | 'testing', mx: string): string {
  return `version: STSv1\r\nmode: ${mode}\r\nmx: ${mx}\r\nmax_age: 86400\r\n`;
}

function records(smtpPorts: number[]): { records: DnsRecord[]; servfail: string[]; policies: Map<string, string> } {
  const out: DnsRecord[] = [];
  const servfail: string[] = [];
  const policies = new Map<string, string>();
  const leaf = new X509Certificate(receiverPair.certPem);
  const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  const caDer = new X509Certificate(ca.certPem).raw;
  const tlsaFor = (mx: string, usage: number, selector: number, data: Buffer): DnsRecord[] =>
    smtpPorts.map((port) => ({ name: `_${port}._tcp.${mx}`, type: 'TLSA', usage, selector, matchingType: 1, certificate: data }));
  const sts = (domain: string, mode: 'enforce' | 'testing'): void => {
    out.push({ name: `_mta-sts.${domain}`, type: 'TXT', data: `v=STSv1; id=${randomBytes(4).toString('hex')}` });
    out.push({ name: `_smtp._tls.${domain}`, type: 'TXT', data: `v=TLSRPTv1; rua=mailto:tlsrpt@${domain}` });
    out.push({ name: `mta-sts.${domain}`, type: 'A', address: '127.0.0.1' });
    policies.set(domain, stsPolicy(mode, `mx.${domain}`));
  };
  for (const s of SCENARIOS) {
    for (const p of PATHS) {
      const d = domainOf(s, p);
      const mx = mxOf(s, p);
      out.push({ name: d, type: 'MX', preference: 10, exchange: mx }, { name: mx, type: 'A', address: '127.0.0.1' });
      if (s === 'sts-enforce') sts(d, 'enforce');
      if (s === 'sts-testing') sts(d, 'testing');
      if (s === 'dane-ee') out.push(...tlsaFor(mx, 3, 1, sha256(spki)));
      if (s === 'dane-ta') out.push(...tlsaFor(mx, 2, 0, sha256(caDer)));
      if (s === 'tlsa-unusable') out.push(...tlsaFor(mx, 1, 1, sha256(spki)), ...tlsaFor(mx, 0, 0, sha256(caDer)));
      if (s === 'dnssec-bogus') for (const port of smtpPorts) servfail.push(`_${port}._tcp.${mx} TLSA`);
    }
  }
  out.push({ name: RESTART_DOMAIN, type: 'MX', preference: 10, exchange: `mx.${RESTART_DOMAIN}` }, { name: `mx.${RESTART_DOMAIN}`, type: 'A', address: '127.0.0.1' });
  sts(RESTART_DOMAIN, 'enforce');
  return { records: out, servfail, policies };
}

before(async () => {
  ca = await makeTestCa();
  otherCa = await makeTestCa({ commonName: 'attacker CA' });
  const mxNames = [...SCENARIOS.flatMap((s) => PATHS.map((p) => mxOf(s, p))), `mx.${RESTART_DOMAIN}`];
  // The chain goes with the leaf: DANE-TA(2) needs the trust anchor in the served chain (RFC 7671 §5.2.2).
  receiverPair = await issueCert(ca, { names: mxNames, includeChain: true });
  receiver = await startPostsealReceiver({ hostname: 'mx.matrix.test', pair: receiverPair, domains: [...SCENARIOS.flatMap((s) => PATHS.map((p) => domainOf(s, p))), RESTART_DOMAIN] });
  // The attacker holds a valid-looking certificate for every MX name, from a CA the sender does not trust.
  mitm = await startMitm({ upstreamPort: receiver.port, mode: 'pass', cert: await issueCert(otherCa, { names: mxNames }) });
  const world = records([25, mitm.port]);
  dns = await startDnsServer(world.records, { ad: true, servfail: world.servfail });
  const policyNames = [...STS_SCENARIOS.flatMap((s) => PATHS.map((p) => `mta-sts.${domainOf(s, p)}`)), `mta-sts.${RESTART_DOMAIN}`];
  policy = await startPolicyServer(await issueCert(ca, { names: policyNames }), world.policies);
  const dir = await mkdtemp(join(tmpdir(), 'postseal-matrix-'));
  dirs.push(dir);
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
});

after(async () => {
  await mitm?.close();
  await receiver?.close();
  await dns?.close();
  await policy?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  process.stdout.write(formatMatrix(cells));
});

function runnerConfig(): RelayConfig {
  return {
    ...DEFAULT_RELAY,
    ...policySettings(dns.port, policy.port),
    hostname: 'out.sender.test',
    localDomains: ['sender.test'],
    ca: ca.certPem,
    smtpPort: mitm.port,
    tlsPolicy: Object.fromEntries(PATHS.map((p) => [domainOf('table', p), 'verify' as const])),
    timeouts: uniformTimeouts(10_000),
  } as RelayConfig;
}

function message(marker: string, to: string): Buffer {
  return Buffer.from(
    [`From: <alice@sender.test>`, `To: <bob@${to}>`, `Subject: matrix`, `Message-ID: <${marker}@sender.test>`, '', `the body line ${marker}`, ''].join('\r\n'),
    'latin1',
  );
}

let serveCerts: { certFile: string; keyFile: string } | null = null;

/** A sender `serve` on dataDir with the policy keys set (relay interval 1 h; runOnce drives it). */
async function serveConfig(dataDir: string, policyPort: number): Promise<ReturnType<typeof defaultConfig>> {
  serveCerts ??= await writeKeyPair(join(dirs[0] ?? dataDir, 'sender-certs'), await issueCert(ca, { names: ['out.sender.test'] }));
  const cfg = defaultConfig();
  cfg.dataDir = dataDir;
  cfg.hostname = 'out.sender.test';
  cfg.domains = ['sender.test'];
  cfg.tls.cert = serveCerts.certFile;
  cfg.tls.key = serveCerts.keyFile;
  for (const l of Object.values(cfg.listeners)) if (l) l.address = '127.0.0.1:0';
  cfg.log.level = 'silent';
  cfg.relay.smtpPort = mitm.port;
  cfg.relay.ca = caFile;
  cfg.relay.intervalMs = 3_600_000;
  cfg.relay.tlsPolicy = Object.fromEntries(PATHS.map((p) => [domainOf('table', p), 'verify' as const]));
  Object.assign(cfg.relay as unknown as Record<string, unknown>, policySettings(dns.port, policyPort));
  return cfg;
}

/**
 * Starts serve (relay timer at 1 h), lets the pass its start scheduled finish, queues with
 * `enqueue`, runs one pass, closes (TLS-RPT counts are flushed on close).
 */
async function viaServe(dataDir: string, enqueue: (s: Store) => Promise<string>, policyPort = policy.port): Promise<string> {
  const running = await startServe(await serveConfig(dataDir, policyPort), { logger: silentLogger });
  try {
    assert.ok(running.relay, 'relay on');
    // The pass serve's start scheduled is shared or finished first (runOnce shares a pass in
    // progress); after the second runOnce the queued row has been through one pass either way.
    await running.relay.runOnce();
    const id = await enqueue(running.store);
    await running.relay.runOnce();
    return id;
  } finally {
    await running.close(1000);
  }
}

// --- the cells ------------------------------------------------------------------------------------

describe('policy matrix: queue runner × attacker in the middle', () => {
  for (const scenario of SCENARIOS) {
    for (const path of PATHS) {
      const want = EXPECT[scenario][path];
      const cell: Cell = { scenario, path, got: '-', pass: null, dataDir: null, queueId: null, tlsHost: null };
      cells.push(cell);
      test(`${LABEL[scenario]} × ${path}: ${want.outcome} (${want.why})`, async () => {
        const domain = domainOf(scenario, path);
        const marker = `BODY-${scenario}-${path}-${randomBytes(6).toString('hex')}`;
        mitm.setMode(MODE[path]);
        mitm.clear();
        const dir = await mkdtemp(join(tmpdir(), 'postseal-matrix-sender-'));
        dirs.push(dir);
        cell.dataDir = dir;
        let store = await openSqliteStore(dir);
        try {
          const data = message(marker, domain);
          const requireTls = scenario === 'requiretls';
          let id: string;
          if (!NEEDS_POLICY.has(scenario)) {
            id = await queueOutbound(store, { from: 'alice@sender.test', to: [`bob@${domain}`], data, requireTls });
            await new QueueRunner(store, runnerConfig(), systemResolver([`127.0.0.1:${dns.port}`]), silentLogger).runOnce();
          } else {
            // serve builds the policy lookups from relay.*; its store is reopened here afterwards.
            await store.close();
            id = await viaServe(dir, (s) => queueOutbound(s, { from: 'alice@sender.test', to: [`bob@${domain}`], data, requireTls }));
            store = await openSqliteStore(dir);
          }
          cell.queueId = id;
          const row = store.listQueue().find((e) => e.id === id);
          const attempts = store.listAttempts(id);
          const leaked = mitm.saw(marker);
          const received = (await receiver.messages()).some((m) => m.data.includes(marker));
          cell.got = `${row?.status ?? '?'}${row?.lastTls ? ` @${row.lastTls.levelReached}` : ''}${leaked ? ' LEAKED' : ''}${mitm.connections.length === 0 ? ' (no conn)' : ''}`;

          assert.equal(row?.status, want.outcome, `status (lastError: ${row?.lastError ?? ''})`);
          assert.equal(attempts.length, 1, 'one attempt recorded');
          assert.equal(attempts[0]?.outcome, want.outcome);
          assert.equal(received, want.outcome === 'delivered', 'the receiver has the message iff delivered');
          assert.equal(leaked, want.leak, want.leak ? 'the attacker reads the body on this path (RFC-accepted)' : 'no byte of the body may reach the attacker');
          if (!want.leak) assert.equal(mitm.sawOnWire(marker), false, 'the body never crossed in plaintext');
          if (want.noConnection === true) assert.equal(mitm.connections.length, 0, 'the MX is not connected to at all');
          if (want.outcome === 'delivered') {
            assert.ok(row?.lastTls, 'TLS facts recorded');
            assert.ok(want.reached?.includes(row.lastTls.levelReached), `levelReached ${row.lastTls.levelReached}, want ${want.reached?.join('|') ?? ''}`);
            cell.tlsHost = row.lastTls.host;
            // The MX name, with or without TLS (a plaintext attempt once recorded the address).
            assert.equal(row.lastTls.host, mxOf(scenario, path));
          } else {
            assert.ok((row?.lastError ?? '') !== '', 'a deferral says why');
            assert.equal(attempts[0]?.nextAttemptAt !== null, true, 'deferred with a next attempt, never bounced at once');
          }
          if (want.rpt !== null) {
            const reader = rptReader(store);
            assert.ok(reader, 'the store counts TLS-RPT results (listTlsRptCounts)');
            const counts = reader.listTlsRptCounts({ domain });
            const hit = counts.find((c) => c.policyType === want.rpt?.type && want.rpt.result.includes(c.result));
            assert.ok(hit, `TLS-RPT ${want.rpt.type} ${want.rpt.result.join('|')} counted for ${domain}; have ${JSON.stringify(counts)}`);
          }
          cell.pass = true;
        } catch (e) {
          cell.pass = false;
          throw e;
        } finally {
          await store.close().catch(() => undefined); // already closed when serve failed to start
        }
      });
    }
  }
});

test('queue show --json reports the attempts and TLS facts of a delivered and a deferred cell', async () => {
  for (const [scenario, path] of [['table', 'honest'], ['table', 'stripped']] as const) {
    const cell = cells.find((c) => c.scenario === scenario && c.path === path);
    assert.ok(cell?.dataDir && cell.queueId, `${scenario} × ${path} ran`);
    const r = await runPeer(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'queue', 'show', cell.queueId, '--data', cell.dataDir, '--json'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const shown = JSON.parse(r.stdout.toString('utf8')) as { attempts: Array<{ outcome: string; error: string | null; tls: { levelAsked: string; levelReached: string; verified: boolean } | null }> };
    const want = EXPECT[scenario][path];
    assert.equal(shown.attempts.length, 1);
    assert.equal(shown.attempts[0]?.outcome, want.outcome);
    assert.equal(shown.attempts[0]?.tls?.levelAsked, 'verify');
    if (want.outcome === 'delivered') assert.equal(shown.attempts[0]?.tls?.verified, true);
    else assert.match(shown.attempts[0]?.error ?? '', /TLS_REQUIRED_NOT_OFFERED|STARTTLS/);
  }
});

// --- the policy cache survives a restart ------------------------------------------------------------

test('the MTA-STS cache survives a restart: serve stopped, HTTPS policy server gone, enforce still applies', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'postseal-matrix-restart-'));
  dirs.push(dataDir);
  // Its own policy server, so closing it leaves the matrix alone.
  const own = await startPolicyServer(await issueCert(ca, { names: [`mta-sts.${RESTART_DOMAIN}`] }), new Map([[RESTART_DOMAIN, stsPolicy('enforce', `mx.${RESTART_DOMAIN}`)]]));
  const send = async (label: string, mode: MitmMode): Promise<{ status: string | undefined; leaked: boolean }> => {
    mitm.setMode(mode);
    mitm.clear();
    const marker = `BODY-restart-${label}-${randomBytes(6).toString('hex')}`;
    const id = await viaServe(dataDir, (s) => queueOutbound(s, { from: 'alice@sender.test', to: [`bob@${RESTART_DOMAIN}`], data: message(marker, RESTART_DOMAIN) }), own.port);
    const store = await openSqliteStore(dataDir);
    try {
      return { status: store.listQueue().find((e) => e.id === id)?.status, leaked: mitm.saw(marker) };
    } finally {
      await store.close();
    }
  };
  try {
    const first = await send('first', 'pass');
    assert.equal(first.status, 'delivered', 'policy fetched, honest path delivered');
    assert.ok(own.hits.some((h) => h.startsWith(`mta-sts.${RESTART_DOMAIN}/`)), 'the policy was fetched over HTTPS');
  } finally {
    await own.close();
  }
  const second = await send('after-restart', 'strip-starttls');
  assert.equal(second.status, 'deferred', 'the cached enforce policy still applies after the restart');
  assert.equal(second.leaked, false, 'no byte of the body reached the attacker');
});

// --- the printed matrix -------------------------------------------------------------------------------

function formatMatrix(all: Cell[]): string {
  const mark = (c: Cell | undefined): string => {
    if (!c) return '-';
    const want = EXPECT[c.scenario][c.path].outcome;
    if (c.pass === true) return `${c.got} ✓`;
    if (c.pass === false) return `FAIL (want ${want}; got ${c.got})`;
    return 'not run';
  };
  const head = ['scenario', ...PATHS];
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const rows = SCENARIOS.map((s) => line([LABEL[s], ...PATHS.map((p) => mark(all.find((c) => c.scenario === s && c.path === p)))]));
  const reasons = SCENARIOS.flatMap((s) => PATHS.map((p) => `- ${LABEL[s]} × ${p}: ${EXPECT[s][p].outcome} — ${EXPECT[s][p].why}`));
  return ['', '## Sending-policy matrix (queue runner × attacker in the middle)', '', line(head), line(head.map(() => '---')), ...rows, '', '### Expected, and why', ...reasons, ''].join('\n') + '\n';
}
