/**
 * `postseal send` without --server: the real CLI (child process) applies the sending-policy
 * engine (policy/decide.ts) and says in --json which policy applied. Real peers only: the test
 * DNS server (AD bit set) publishes MX, A and `_mta-sts` TXT; the HTTPS MTA-STS server serves the
 * policies; two postseal receivers, one whose certificate names its MX host and one whose
 * certificate names another host; one test CA trusted through --ca for both the SMTP and the
 * policy fetch. Each case has its own recipient domain so no case sees another's records.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli, killAll, tempDirs, type CliResult } from '../cli/child.js';
import { issueCert, makeTestCa, wrongNameCert, type TestCa } from '../helpers/certs.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { startMtaStsServer, policyText, type MtaStsServer } from '../helpers/mta-sts-server.js';
import { startPostsealReceiver, type Receiver } from '../helpers/receivers.js';

/** The MX host of every domain served by the good receiver (its certificate names it). */
const GOOD_MX = 'mx.good.test';
/** The MX host of the testing-mode domain, served by the receiver whose certificate names another host. */
const BAD_MX = 'mx.bad.test';

const D = {
  none: 'nopolicy.test',
  enforce: 'enforce.test',
  outside: 'outside.test',
  table: 'table.test',
  testing: 'testing.test',
} as const;

let ca: TestCa;
let caFile: string;
let dns: DnsServer;
let sts: MtaStsServer;
let good: Receiver;
let bad: Receiver;
const dirs = tempDirs();

function stsRecords(domain: string): DnsRecord[] {
  return [
    { name: `_mta-sts.${domain}`, type: 'TXT', data: `v=STSv1; id=${randomBytes(4).toString('hex')}` },
    { name: `mta-sts.${domain}`, type: 'A', address: '127.0.0.1' },
  ];
}

function mxRecords(domain: string, mx: string): DnsRecord[] {
  return [{ name: domain, type: 'MX', preference: 10, exchange: mx }];
}

before(async () => {
  ca = await makeTestCa();
  const dir = dirs.make('postseal-send-policy-');
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  good = await startPostsealReceiver({ hostname: GOOD_MX, pair: await issueCert(ca, { names: [GOOD_MX] }), domains: [D.none, D.enforce, D.outside, D.table] });
  bad = await startPostsealReceiver({ hostname: BAD_MX, pair: await wrongNameCert(ca), domains: [D.testing] });
  sts = await startMtaStsServer([D.enforce, D.outside, D.table, D.testing], { ca });
  sts.set(D.enforce, { body: policyText('enforce', [GOOD_MX]) });
  sts.set(D.outside, { body: policyText('enforce', ['mx.other.example']) });
  sts.set(D.table, { body: policyText('enforce', ['mx.other.example']) });
  sts.set(D.testing, { body: policyText('testing', [BAD_MX]) });
  dns = await startDnsServer(
    [
      { name: GOOD_MX, type: 'A', address: '127.0.0.1' },
      { name: BAD_MX, type: 'A', address: '127.0.0.1' },
      ...mxRecords(D.none, GOOD_MX),
      ...mxRecords(D.enforce, GOOD_MX),
      ...mxRecords(D.outside, GOOD_MX),
      ...mxRecords(D.table, GOOD_MX),
      ...mxRecords(D.testing, BAD_MX),
      ...stsRecords(D.enforce),
      ...stsRecords(D.outside),
      ...stsRecords(D.table),
      ...stsRecords(D.testing),
    ],
    { ad: true },
  );
});

after(async () => {
  killAll();
  await good?.close();
  await bad?.close();
  await sts?.close();
  await dns?.close();
  dirs.cleanup();
});

interface PolicyJson {
  source: string;
  mode: string | null;
  mtaSts: { from: string; id: string | null; failure: string | null } | null;
  mx: Array<{ host: string; allowed: boolean; level: string; verifyName: string; source: string; rule: string; reached: string | null; verified: boolean | null }>;
}
interface OutcomeJson {
  ok: boolean;
  domain: string | null;
  reason: string | null;
  policy: PolicyJson | null;
  result: { level: string; reached: string; tls: { verified: boolean; checkedName: string } | null; recipients: Array<{ address: string; status: string }> } | null;
}

/** `postseal send` by MX to one recipient of `domain`, with a unique marker in the subject. */
async function send(domain: string, receiver: Receiver, extra: string[] = []): Promise<{ run: CliResult; out: OutcomeJson; marker: string }> {
  const marker = `send-policy-${randomBytes(6).toString('hex')}`;
  const run = await runCli([
    'send',
    '--from', 'sender@client.test',
    '--to', `rcpt@${domain}`,
    '--subject', marker,
    '--body', `body ${marker}`,
    '--helo', 'client.test',
    '--dns', `127.0.0.1:${dns.port}`,
    '--ca', caFile,
    '--smtp-port', String(receiver.port),
    '--mta-sts-endpoint', `127.0.0.1:${sts.port}`,
    '--timeout', '20',
    '--json',
    ...extra,
  ]);
  let parsed: OutcomeJson[];
  try {
    parsed = JSON.parse(run.stdout) as OutcomeJson[];
  } catch {
    assert.fail(`send --json printed no JSON (exit ${String(run.code)}); stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
  assert.equal(parsed.length, 1, run.stdout);
  return { run, out: parsed[0] as OutcomeJson, marker };
}

async function received(receiver: Receiver, marker: string): Promise<boolean> {
  return (await receiver.messages()).some((m) => m.data.includes(marker));
}

test('no policy published: delivered at the default level, exit 0, policy.source default', async () => {
  const { run, out, marker } = await send(D.none, good);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.equal(out.ok, true);
  assert.equal(out.domain, D.none);
  assert.equal(out.policy?.source, 'default');
  assert.equal(out.policy?.mode, null);
  assert.equal(out.policy?.mx.length, 1);
  assert.equal(out.policy?.mx[0]?.host, GOOD_MX);
  assert.equal(out.policy?.mx[0]?.allowed, true);
  assert.equal(out.policy?.mx[0]?.level, 'may');
  assert.equal(out.policy?.mx[0]?.reached, 'verify', 'may reached a verified session: the certificate names the MX and --ca trusts it');
  assert.deepEqual(out.result?.recipients.map((r) => r.status), ['delivered']);
  assert.ok(await received(good, marker), 'the receiver stored the message');
});

test('MTA-STS enforce listing the MX: delivered at verify against the MX name, exit 0', async () => {
  const { run, out, marker } = await send(D.enforce, good);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.equal(out.ok, true);
  assert.equal(out.policy?.source, 'mta-sts');
  assert.equal(out.policy?.mode, 'enforce');
  assert.equal(out.policy?.mtaSts?.from, 'fetched');
  assert.equal(out.policy?.mtaSts?.failure, null);
  const mx = out.policy?.mx[0];
  assert.equal(mx?.host, GOOD_MX);
  assert.equal(mx?.allowed, true);
  assert.equal(mx?.level, 'verify');
  assert.equal(mx?.source, 'mta-sts');
  assert.equal(mx?.verifyName, GOOD_MX);
  assert.equal(mx?.reached, 'verify');
  assert.equal(mx?.verified, true);
  assert.equal(out.result?.level, 'verify');
  assert.equal(out.result?.tls?.verified, true);
  assert.equal(out.result?.tls?.checkedName, GOOD_MX);
  assert.ok(sts.requests.includes(`mta-sts.${D.enforce}`), 'the policy was fetched over HTTPS');
  assert.deepEqual(out.result?.recipients.map((r) => r.status), ['delivered']);
  assert.ok(await received(good, marker), 'the receiver stored the message');
});

test('MTA-STS enforce not listing the MX: refused by policy, exit 1, nothing received, the rule names RFC 8461', async () => {
  const connectionsBefore = good.connections();
  const { run, out, marker } = await send(D.outside, good);
  assert.equal(run.code, 1, run.stderr + run.stdout);
  assert.equal(out.ok, false);
  assert.equal(out.policy?.source, 'mta-sts');
  assert.equal(out.policy?.mode, 'enforce');
  const mx = out.policy?.mx[0];
  assert.equal(mx?.host, GOOD_MX);
  assert.equal(mx?.allowed, false);
  assert.match(mx?.rule ?? '', /RFC 8461/);
  assert.equal(mx?.reached, null, 'no attempt on a host outside the policy');
  assert.match(out.reason ?? '', /RFC 8461|MTA-STS/);
  assert.equal(good.connections(), connectionsBefore, 'no connection to the receiver');
  assert.equal(await received(good, marker), false, 'nothing received');
});

test('--tls encrypt given explicitly wins over an MTA-STS enforce policy: source table', async () => {
  const { run, out, marker } = await send(D.table, good, ['--tls', 'encrypt']);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.equal(out.ok, true);
  assert.equal(out.policy?.source, 'table');
  const mx = out.policy?.mx[0];
  assert.equal(mx?.host, GOOD_MX);
  assert.equal(mx?.allowed, true);
  assert.equal(mx?.level, 'encrypt');
  assert.equal(mx?.source, 'table');
  assert.ok(mx?.reached != null && ['encrypt', 'verify'].includes(mx.reached), `reached ${String(mx?.reached)}`);
  assert.equal(out.result?.level, 'encrypt');
  assert.deepEqual(out.result?.recipients.map((r) => r.status), ['delivered']);
  assert.ok(await received(good, marker), 'the receiver stored the message');
});

test('MTA-STS testing with a wrong-name certificate: still delivered, source mta-sts, mode testing', async () => {
  const { run, out, marker } = await send(D.testing, bad);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.equal(out.ok, true);
  assert.equal(out.policy?.source, 'mta-sts');
  assert.equal(out.policy?.mode, 'testing');
  const mx = out.policy?.mx[0];
  assert.equal(mx?.host, BAD_MX);
  assert.equal(mx?.allowed, true);
  assert.equal(mx?.reached, 'encrypt', 'TLS without a verified name (testing mode does not require it)');
  assert.equal(mx?.verified, false, 'the certificate does not name the MX host');
  assert.equal(out.result?.tls?.verified, false);
  assert.deepEqual(out.result?.recipients.map((r) => r.status), ['delivered']);
  assert.ok(await received(bad, marker), 'the receiver stored the message');
});
