/**
 * Sending policy: delivery cost with policies on vs off (issue 10 "Measure"). For each scenario,
 * N messages (default 500 × 2 KiB), each scenario its own recipient domain, are queued in a fresh
 * SQLite store (not timed) and one QueueRunner pass delivers them over STARTTLS to a postseal
 * discard receiver on 127.0.0.1:0 (startServe(cfg, { sink })), with the real sending-policy
 * engine: policyLookups() over the store's persistent MTA-STS cache, as serve's createRunner
 * builds it (relay.dns → the test DNS server with the AD bit, relay.mtaSts.endpoint → the test
 * HTTPS policy host, relay.ca → the test CA, a counting TLS-RPT recorder). Scenarios:
 *
 *   none        MTA-STS and DANE off (relay.mtaSts.enabled=false, relay.dane.enabled=false): baseline
 *   empty       both on, the domain publishes nothing (the _mta-sts TXT and TLSA lookups find nothing)
 *   sts-cached  MTA-STS enforce, the policy already in the cache (a 1-message run fills it first)
 *   sts-first   MTA-STS enforce, empty cache: first contact (TXT + HTTPS fetch)
 *   dane        DANE-EE 3 1 1 (TLSA for the receiver's SPKI, AD set)
 *
 * Counted at the test servers, per scenario domain: DNS questions (UDP + TCP) and HTTPS requests.
 * CPU is process.cpuUsage() around the pass; the receiver, the DNS server and the HTTPS server run
 * in this process too, so it is the whole loopback system's CPU (the difference between rows is
 * the policy's). "first delivery" is runOnce() start → the receiver's first accepted message.
 *
 * Loopback only, bounded: the whole run is killed after --deadline seconds (default 120).
 * Usage: node --import tsx bench/policy.ts [--messages 500] [--size 2048] [--concurrency 8]
 *        [--per-connection 100] [--json]
 */
import 'reflect-metadata';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemResolver, uniformTimeouts } from '../src/client/index.js';
import { DEFAULT_RELAY } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { policyLookups } from '../src/policy/context.js';
import type { TlsRptEvent } from '../src/policy/types.js';
import { QueueRunner, type RunnerPolicy } from '../src/relay/runner.js';
import { openSqliteStore, type Store } from '../src/store/index.js';
import { issueCert, makeTestCa } from '../test/helpers/certs.js';
import { startDnsServer, type DnsRecord } from '../test/helpers/dns-server.js';
import { policyText, startMtaStsServer } from '../test/helpers/mta-sts-server.js';
import { queueOutbound } from '../test/helpers/outbound.js';
import { startDiscardReceiver } from './lib/discard-receiver.js';
import { arg } from './lib/args.js';

const N = Number(arg('--messages', '500'));
const SIZE = Number(arg('--size', '2048'));
const CONCURRENCY = Number(arg('--concurrency', '8'));
const PER_CONNECTION = Number(arg('--per-connection', '100'));
const DEADLINE_S = Number(arg('--deadline', '120'));
const JSON_OUT = process.argv.includes('--json');
if (!(N > 0 && SIZE >= 256 && CONCURRENCY > 0 && PER_CONNECTION > 0)) throw new Error('--messages > 0, --size >= 256, --concurrency > 0, --per-connection > 0');

const killer = setTimeout(() => {
  process.stderr.write(`policy bench: deadline of ${DEADLINE_S} s reached, giving up\n`);
  process.exit(1);
}, DEADLINE_S * 1000);
killer.unref();

const SCENARIOS = ['none', 'empty', 'sts-cached', 'sts-first', 'dane'] as const;
type Scenario = (typeof SCENARIOS)[number] | 'warmup';
const LABEL: Record<Scenario, string> = {
  warmup: 'warm-up (JIT, not reported)',
  none: 'no policy (MTA-STS, DANE off)',
  empty: 'policies on, domain publishes nothing',
  'sts-cached': 'MTA-STS enforce, cached',
  'sts-first': 'MTA-STS enforce, first contact',
  dane: 'DANE-EE 3 1 1',
};
const domainOf = (s: Scenario): string => `${s}.bench.test`;
const mxOf = (s: Scenario): string => `mx.${domainOf(s)}`;

/** A SIZE-octet message: headers, then 76-character lines (one starts with a dot), CRLF. */
function message(to: string, i: number): Buffer {
  const head = `From: <bench@sender.test>\r\nTo: <${to}>\r\nSubject: policy ${i}\r\nMessage-ID: <${i}.policy@sender.test>\r\n\r\n.dot-stuffed first line\r\n`;
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn\r\n';
  let body = '';
  while (head.length + body.length + line.length <= SIZE - 2) body += line;
  body += 'x'.repeat(Math.max(0, SIZE - 2 - head.length - body.length)) + '\r\n';
  return Buffer.from(head + body, 'latin1');
}

interface Row {
  scenario: Scenario;
  label: string;
  messages: number;
  delivered: number;
  notDelivered: number;
  seconds: number;
  messagesPerSecond: number;
  cpuMsPerMessage: number;
  dnsQueries: number;
  dnsByType: Record<string, number>;
  httpsFetches: number;
  /** mtaSts / tlsa lookup calls made by the engine (wrapped), and their total wall time. */
  mtaStsCalls: number;
  tlsaCalls: number;
  lookupMs: number;
  /** The longest single lookup call (ms). */
  lookupMaxMs: number;
  firstDeliveryMs: number | null;
  /** (delivered − 1) / (end − first delivery). */
  steadyMessagesPerSecond: number | null;
  connections: number;
  levels: Record<string, number>;
  warmupHttpsFetches: number;
}

const root = await mkdtemp(join(tmpdir(), 'postseal-bench-policy-'));
const cleanups: Array<() => Promise<void>> = [async () => rm(root, { recursive: true, force: true })];
try {
  // One test CA: the receiver's leaf names every MX, the policy host's names every mta-sts.DOMAIN.
  const ca = await makeTestCa({ commonName: 'policy bench CA' });
  const ALL: Scenario[] = ['warmup', ...SCENARIOS];
  const leaf = await issueCert(ca, { names: ALL.map(mxOf) });
  // The receiver: postseal's protocol engine with a discarding sink; the time of the first accept.
  let firstAccept: bigint | null = null;
  const receiver = await startDiscardReceiver({ dir: root, certPem: leaf.certPem, keyPem: leaf.keyPem, domains: ALL.map(domainOf), onAccept: () => (firstAccept ??= process.hrtime.bigint()) });
  cleanups.unshift(() => receiver.close());
  const port = receiver.port;

  // DNS: MX + A for every domain; the _mta-sts TXT for the two MTA-STS ones; TLSA 3 1 1 for dane.
  const spki = new X509Certificate(leaf.certPem).publicKey.export({ type: 'spki', format: 'der' });
  const records: DnsRecord[] = [];
  for (const s of ALL) {
    records.push({ name: domainOf(s), type: 'MX', preference: 10, exchange: mxOf(s) }, { name: mxOf(s), type: 'A', address: '127.0.0.1' });
  }
  for (const s of ['sts-cached', 'sts-first'] as const) records.push({ name: `_mta-sts.${domainOf(s)}`, type: 'TXT', data: 'v=STSv1; id=bench1' });
  records.push({ name: `_${port}._tcp.${mxOf('dane')}`, type: 'TLSA', usage: 3, selector: 1, matchingType: 1, certificate: createHash('sha256').update(spki).digest() });
  const dns = await startDnsServer(records, { ad: true, adNxdomain: true });
  cleanups.unshift(() => dns.close());

  const sts = await startMtaStsServer(['sts-cached', 'sts-first'].map((s) => domainOf(s as Scenario)), { ca });
  cleanups.unshift(() => sts.close());
  for (const s of ['sts-cached', 'sts-first'] as const) sts.set(domainOf(s), { body: policyText('enforce', [mxOf(s)]) });

  const inDomain = (q: string, d: string): boolean => {
    const name = q.split(' ')[0] ?? '';
    return name === d || name.endsWith(`.${d}`);
  };

  async function queue(store: Store, s: Scenario, count: number, from: number): Promise<void> {
    for (let i = from; i < from + count; i++) {
      const to = `rcpt${i}@${domainOf(s)}`;
      await queueOutbound(store, { from: 'bench@sender.test', to: [to], data: message(to, i) });
    }
  }

  const rows: Row[] = [];
  // A first pass (policies off, its own domain, not reported) so that JIT warm-up does not land on
  // the baseline row.
  for (const s of ALL) {
    const store = await openSqliteStore(join(root, `sender-${s}`));
    try {
      const on = s !== 'none' && s !== 'warmup';
      const lookups = policyLookups(
        { dns: [`127.0.0.1:${dns.port}`], ca: ca.certPem, mtaSts: { enabled: on, endpoint: `127.0.0.1:${sts.port}` }, dane: { enabled: on } },
        store,
      );
      // The engine's lookups, wrapped to count calls and their time (the same functions inside).
      const t = { mtaSts: 0, tlsa: 0, ms: 0, max: 0 };
      const timed = async <T>(f: () => Promise<T>): Promise<T> => {
        const t0 = performance.now();
        try {
          return await f();
        } finally {
          const ms = performance.now() - t0;
          t.ms += ms;
          t.max = Math.max(t.max, ms);
        }
      };
      const mtaSts = lookups.mtaSts;
      const tlsa = lookups.tlsa;
      const rptEvents: TlsRptEvent[] = [];
      const policy: RunnerPolicy = {
        dns: lookups.dns,
        mtaSts: mtaSts ? (d) => (t.mtaSts++, timed(() => mtaSts(d))) : null,
        tlsa: tlsa ? (h, p) => (t.tlsa++, timed(() => tlsa(h, p))) : null,
        tlsRpt: on ? { record: (e) => void rptEvents.push(e) } : null,
      };
      const runner = new QueueRunner(
        store,
        {
          ...DEFAULT_RELAY,
          hostname: 'out.sender.test',
          localDomains: ['sender.test'],
          smtpPort: port,
          ca: ca.certPem,
          concurrency: CONCURRENCY,
          maxMessagesPerConnection: PER_CONNECTION,
          timeouts: uniformTimeouts(30_000),
        },
        systemResolver([`127.0.0.1:${dns.port}`]),
        silentLogger,
        policy,
      );
      // sts-cached: a one-message pass first fills the store's MTA-STS cache (not measured).
      let warmupHttpsFetches = 0;
      if (s === 'sts-cached') {
        const h0 = sts.requests.length;
        await queue(store, s, 1, N);
        const w = await runner.runOnce();
        if (w.delivered !== 1) throw new Error(`sts-cached warm-up: not delivered (${JSON.stringify(w)})`);
        warmupHttpsFetches = sts.requests.length - h0;
        Object.assign(t, { mtaSts: 0, tlsa: 0, ms: 0, max: 0 });
        rptEvents.length = 0;
      }
      await queue(store, s, N, 0);
      const d0 = dns.queries.length;
      const dt0 = dns.tcpQueries.length;
      const h0 = sts.requests.length;
      firstAccept = null;
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const summary = await runner.runOnce();
      const t1 = process.hrtime.bigint();
      const cpu = process.cpuUsage(cpu0);
      const d = domainOf(s);
      const asked = [...dns.queries.slice(d0), ...dns.tcpQueries.slice(dt0)].filter((q) => inDomain(q, d));
      const dnsByType: Record<string, number> = {};
      for (const q of asked) {
        const type = q.split(' ')[1] ?? '?';
        dnsByType[type] = (dnsByType[type] ?? 0) + 1;
      }
      const levels: Record<string, number> = {};
      for (const e of rptEvents) levels[`${e.policyType}:${e.result}`] = (levels[`${e.policyType}:${e.result}`] ?? 0) + 1;
      const seconds = Number(t1 - t0) / 1e9;
      const fa = firstAccept as bigint | null;
      const firstDeliveryMs = fa !== null ? Number(fa - t0) / 1e6 : null;
      const afterFirst = fa !== null ? Number(t1 - fa) / 1e9 : 0;
      if (s === 'warmup') continue;
      rows.push({
        scenario: s,
        label: LABEL[s],
        messages: N,
        delivered: summary.delivered,
        notDelivered: summary.deferred + summary.failed,
        seconds,
        messagesPerSecond: summary.delivered / seconds,
        cpuMsPerMessage: (cpu.user + cpu.system) / 1000 / N,
        dnsQueries: asked.length,
        dnsByType,
        httpsFetches: sts.requests.slice(h0).filter((h) => h === `mta-sts.${d}`).length,
        mtaStsCalls: t.mtaSts,
        tlsaCalls: t.tlsa,
        lookupMs: t.ms,
        lookupMaxMs: t.max,
        firstDeliveryMs,
        steadyMessagesPerSecond: fa !== null && afterFirst > 0 ? (summary.delivered - 1) / afterFirst : null,
        connections: summary.connections,
        levels,
        warmupHttpsFetches,
      });
    } finally {
      await store.close();
    }
  }

  if (JSON_OUT) {
    process.stdout.write(JSON.stringify({ messages: N, size: SIZE, concurrency: CONCURRENCY, perConnection: PER_CONNECTION, node: process.version, rows }, null, 2) + '\n');
  } else {
    const f = (x: number, digits: number): string => x.toFixed(digits);
    process.stdout.write(
      `policy: ${N} messages × ${SIZE} octets per scenario, one domain each, MX on 127.0.0.1:${port} (postseal discard receiver, STARTTLS), ` +
        `concurrency ${CONCURRENCY}, ${PER_CONNECTION} per connection, test DNS (AD) and HTTPS policy host on loopback, Node ${process.version}\n\n`,
    );
    process.stdout.write(
      '| scenario | delivered | s | msgs/s | CPU ms/msg | DNS queries (total, /msg) | HTTPS fetches (total, /msg) | engine lookup calls (MTA-STS, TLSA; total ms, longest ms) | first delivery ms | steady msgs/s | connections |\n' +
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n',
    );
    for (const r of rows) {
      process.stdout.write(
        `| ${r.label} | ${r.delivered}/${r.messages} | ${f(r.seconds, 2)} | ${f(r.messagesPerSecond, 0)} | ${f(r.cpuMsPerMessage, 2)} | ` +
          `${r.dnsQueries}, ${f(r.dnsQueries / r.messages, 3)} | ${r.httpsFetches}, ${f(r.httpsFetches / r.messages, 3)} | ` +
          `${r.mtaStsCalls}, ${r.tlsaCalls}; ${f(r.lookupMs, 1)}, ${f(r.lookupMaxMs, 1)} | ${r.firstDeliveryMs === null ? '—' : f(r.firstDeliveryMs, 1)} | ` +
          `${r.steadyMessagesPerSecond === null ? '—' : f(r.steadyMessagesPerSecond, 0)} | ${r.connections} |\n`,
      );
    }
    process.stdout.write('\nDNS questions by type (scenario domain only), TLS-RPT results, warm-up:\n');
    for (const r of rows) {
      const types = Object.entries(r.dnsByType).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      const rpt = Object.entries(r.levels).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      process.stdout.write(`- ${r.scenario}: DNS ${types}; TLS-RPT ${rpt}${r.scenario === 'sts-cached' ? `; warm-up pass (1 message) HTTPS fetches: ${r.warmupHttpsFetches}` : ''}\n`);
    }
  }
  if (rows.some((r) => r.delivered !== r.messages)) process.exitCode = 1;
} finally {
  for (const c of cleanups) await c().catch(() => undefined);
  clearTimeout(killer);
}
