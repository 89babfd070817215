/**
 * Issue 11 "Measure": CPU of received-mail verification on the mx listener, and of DKIM signing
 * at submission (Ed25519 vs RSA-2048).
 *
 *   receive   a throughput-style run against a real server (test/helpers/server.ts: SQLite
 *             store, fsync before 250) on 127.0.0.1:0, auth.verify on vs off, C connections
 *             each sending its share of N messages (MAIL, RCPT, DATA, 2 KiB signed body) over
 *             plain SMTP to the mx listener. The verifier's DNS is the test DNS server
 *             (test/helpers/dns-server.ts, UDP on 127.0.0.1) publishing SPF, the DKIM keys and
 *             DMARC; no DNS cache of ours, so every message asks SPF TXT, the key TXT, DMARC TXT.
 *             CPU is process.cpuUsage() of this whole process (server, DNS server and client
 *             all run in it): the on − off difference per message is the verifier's cost.
 *   verify    verifyMessage() alone, in a loop, per signing algorithm (same DNS server).
 *   sign      signMessage() (src/auth/dkim-sign.ts, the submission signer's core) in a loop,
 *             Ed25519 vs RSA-2048, 2 KiB message.
 *
 * Loopback only, bounded: the run is killed after --deadline seconds (default 300).
 * Usage: node --import tsx bench/auth.ts [--messages 1000] [--conns 4] [--loops 2000] [--json]
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { dnsRecord, type DkimAlgorithm, type DkimKey } from '../src/auth/dkim-keys.js';
import { signMessage } from '../src/auth/dkim-sign.js';
import { verifyMessage } from '../src/auth/verify.js';
import { DnsResolver } from '../src/policy/dns.js';
import { startDnsServer, type DnsRecord } from '../test/helpers/dns-server.js';
import { startTestServer } from '../test/helpers/server.js';
import { WireClient } from '../test/helpers/wire.js';
import { arg } from './lib/args.js';

const N = Number(arg('--messages', '1000'));
const CONNS = Number(arg('--conns', '4'));
const LOOPS = Number(arg('--loops', '2000'));
const DEADLINE_S = Number(arg('--deadline', '300'));
const JSON_OUT = process.argv.includes('--json');
if (!(N > 0 && CONNS > 0 && LOOPS > 0)) throw new Error('--messages, --conns, --loops must be > 0');

const killer = setTimeout(() => {
  process.stderr.write(`auth bench: deadline of ${DEADLINE_S} s reached, giving up\n`);
  process.exit(1);
}, DEADLINE_S * 1000);

const DOMAIN = 'example.org';
function key(algorithm: DkimAlgorithm, selector: string): DkimKey {
  const { privateKey } = algorithm === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  return { domain: DOMAIN, selector, algorithm, active: true, file: '', record: dnsRecord(privateKey as KeyObject), privateKey: privateKey as KeyObject };
}
const keys = { ed25519: key('ed25519', 'ed'), rsa: key('rsa', 'rsa') };

/** A 2 KiB message from alice@example.org. */
function message(): Buffer {
  const line = `${'The quick brown fox jumps over the lazy dog. '.repeat(1)}0123456789012345678901234567\r\n`;
  const body = line.repeat(Math.ceil(2048 / line.length));
  return Buffer.from(`From: <alice@${DOMAIN}>\r\nTo: <bob@postseal.test>\r\nSubject: bench\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@${DOMAIN}>\r\n\r\n${body}`);
}

async function signed(alg: DkimAlgorithm): Promise<Buffer> {
  const msg = message();
  const sig = await signMessage([msg], () => [keys[alg]]);
  if (sig === null) throw new Error('not signed');
  return Buffer.concat([Buffer.from(sig, 'latin1'), msg]);
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

const records: DnsRecord[] = [
  { name: DOMAIN, type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' },
  { name: `ed._domainkey.${DOMAIN}`, type: 'TXT', data: keys.ed25519.record },
  { name: `rsa._domainkey.${DOMAIN}`, type: 'TXT', data: keys.rsa.record },
  { name: `_dmarc.${DOMAIN}`, type: 'TXT', data: 'v=DMARC1; p=reject' },
];

interface Row {
  part: string;
  what: string;
  n: number;
  seconds: number;
  perSecond: number;
  cpuMsPerUnit: number;
  note: string;
}
const rows: Row[] = [];

async function receive(dnsPort: number, verify: boolean, data: Buffer): Promise<void> {
  const s = await startTestServer({
    configure: (cfg) => {
      cfg.relay.dns = [`127.0.0.1:${dnsPort}`];
      cfg.auth.verify = verify;
      cfg.log.level = 'silent';
    },
  });
  try {
    const stuffed = Buffer.concat([Buffer.from(data.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]);
    const clients = await Promise.all(
      Array.from({ length: CONNS }, async () => {
        const c = await WireClient.connect(s.port('mx'));
        await c.readReply();
        await c.cmd('EHLO mail.example.org');
        return c;
      }),
    );
    let stored = 0;
    const one = async (c: WireClient): Promise<void> => {
      c.write('MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@postseal.test>\r\nDATA\r\n');
      for (let i = 0; i < 3; i++) await c.readReply();
      c.write(stuffed);
      const last = (await c.readReply(30_000)).at(-1) ?? '';
      if (!last.startsWith('250')) throw new Error(`not stored: ${last}`);
      stored++;
    };
    // Warm-up: one message per connection (not counted).
    await Promise.all(clients.map(one));
    stored = 0;
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    await Promise.all(
      clients.map(async (c, k) => {
        for (let i = k; i < N; i += CONNS) await one(c);
      }),
    );
    const cpu = cpuMs(c0);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    for (const c of clients) c.close();
    if (verify) {
      const last = s.running.store.listMessages({ limit: 1 })[0];
      if (last?.authResults?.dkim[0]?.result !== 'pass') throw new Error(`verification did not pass: ${JSON.stringify(last?.authResults)}`);
    }
    rows.push({ part: 'receive', what: `auth.verify=${verify} (${CONNS} conns, RSA-2048-signed 2 KiB)`, n: stored, seconds: sec, perSecond: stored / sec, cpuMsPerUnit: cpu / stored, note: 'whole process: server + DNS server + client' });
  } finally {
    await s.close();
  }
}

async function verifyLoop(dnsPort: number, alg: DkimAlgorithm): Promise<void> {
  const resolver = new DnsResolver({ host: '127.0.0.1', port: dnsPort }, 2000).mailauthResolver();
  const data = await signed(alg);
  const input = { data, ip: '127.0.0.1', helo: 'mail.example.org', mailFrom: `alice@${DOMAIN}` };
  const opts = { hostname: 'mx.postseal.test', resolver };
  const first = await verifyMessage(input, opts);
  if (first.verdicts.dkim[0]?.result !== 'pass') throw new Error(`${alg}: ${JSON.stringify(first.verdicts)}`);
  const n = Math.max(1, Math.floor(LOOPS / 4));
  // Warm-up (JIT, key import paths), not measured.
  for (let i = 0; i < Math.min(50, n); i++) await verifyMessage(input, opts);
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await verifyMessage(input, opts);
  const cpu = cpuMs(c0);
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  rows.push({ part: 'verify', what: `verifyMessage, ${alg === 'rsa' ? 'RSA-2048' : 'Ed25519'} signature`, n, seconds: sec, perSecond: n / sec, cpuMsPerUnit: cpu / n, note: 'sequential; includes 3 DNS questions over UDP to the in-process DNS server' });
}

async function signLoop(alg: DkimAlgorithm): Promise<void> {
  const msg = message();
  for (let i = 0; i < Math.min(100, LOOPS); i++) await signMessage([msg], () => [keys[alg]]); // warm-up
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let i = 0; i < LOOPS; i++) await signMessage([msg], () => [keys[alg]]);
  const cpu = cpuMs(c0);
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  rows.push({ part: 'sign', what: `signMessage, ${alg === 'rsa' ? 'RSA-2048' : 'Ed25519'}`, n: LOOPS, seconds: sec, perSecond: LOOPS / sec, cpuMsPerUnit: cpu / LOOPS, note: '2 KiB message, relaxed/relaxed' });
}

const dns = await startDnsServer(records);
try {
  await signLoop('ed25519');
  await signLoop('rsa');
  await verifyLoop(dns.port, 'ed25519');
  await verifyLoop(dns.port, 'rsa');
  const data = await signed('rsa');
  await receive(dns.port, false, data);
  await receive(dns.port, true, data);
} finally {
  await dns.close();
  clearTimeout(killer);
}

if (JSON_OUT) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
else {
  process.stdout.write('| part | what | n | s | per s | CPU ms per message |\n| --- | --- | --- | --- | --- | --- |\n');
  for (const r of rows) process.stdout.write(`| ${r.part} | ${r.what} | ${r.n} | ${r.seconds.toFixed(2)} | ${r.perSecond.toFixed(0)} | ${r.cpuMsPerUnit.toFixed(3)} |\n`);
  const off = rows.find((r) => r.part === 'receive' && r.what.startsWith('auth.verify=false'));
  const on = rows.find((r) => r.part === 'receive' && r.what.startsWith('auth.verify=true'));
  if (off && on) process.stdout.write(`\nverification on receive: +${(on.cpuMsPerUnit - off.cpuMsPerUnit).toFixed(3)} CPU ms per message (${((on.cpuMsPerUnit / off.cpuMsPerUnit - 1) * 100).toFixed(0)} %)\n`);
}
process.exit(0);
