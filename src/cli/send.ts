/**
 * `postseal send`: deliver one message, to --server or by MX, at a chosen TLS level, and print
 * what happened (--json: the whole DeliveryResult: transcript, TLS facts, per-recipient outcome).
 * Argument parsing and printing only; the work is deliver()/deliverToDomain() in src/client.
 *
 * Default --tls: `may` (opportunistic, like Postfix smtp_tls_security_level for MX delivery);
 * `verify` when --auth is given (submission: credentials only to a verified server).
 * Without --server, the sending policy applies as in the relay (policy/decide.ts: DANE, then
 * MTA-STS, then the default); `--tls LEVEL` given explicitly acts as a TLS table entry and wins.
 * --json names the policy that applied (`policy`: source, mode, per MX level, rule, reached).
 * Exit status: 0 every recipient delivered, 1 refused by policy or by the receiver (the message
 * says which rule or reply), 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';
import {
  buildMessage,
  deliver,
  deliverToDomain,
  isTlsLevel,
  systemResolver,
  TLS_LEVELS,
  uniformTimeouts,
  type DeliverOptions,
  type DeliveryResult,
  type DomainDelivery,
  type TlsLevel,
} from '../client/index.js';
import { parseHostPort } from '../protocol/host-port.js';
import { decide, type Decided } from '../policy/decide.js';
import { domainPlan } from '../policy/attempt.js';
import { memoryMtaStsCache, policyLookups } from '../policy/context.js';
import type { PolicySource } from '../policy/types.js';
import { replyText } from '../protocol/reply.js';
import { collect } from './common.js';

interface SendFlags {
  from?: string;
  to: string[];
  server?: string;
  tlsName?: string;
  tls?: string;
  implicit?: boolean;
  auth?: string;
  passwordStdin?: boolean;
  file?: string;
  subject?: string;
  body?: string;
  ca?: string;
  helo?: string;
  timeout?: string;
  chunking?: boolean;
  normalize?: boolean;
  dns: string[];
  smtpPort?: string;
  mtaStsEndpoint?: string;
  mtaSts?: boolean;
  dane?: boolean;
  json?: boolean;
}

export function registerSend(program: Command): void {
  program
    .command('send')
    .description('deliver one message (stdin, --file, or --subject/--body) at a chosen TLS level')
    .option('--from <address>', 'envelope sender (MAIL FROM); "" for the null sender')
    .option('--to <address>', 'recipient (repeatable)', collect, [])
    .option('--server <host[:port]>', 'deliver to this server (default port 25, 465 with --implicit); without it: MX lookup')
    .option('--tls-name <name>', 'the name the certificate must carry and SNI (default: the --server host)')
    .option('--tls <level>', `TLS level: ${TLS_LEVELS.join(' | ')} (default may, verify with --auth)`)
    .option('--implicit', 'implicit TLS from the first byte (RFC 8314, port 465)')
    .option('--auth <user>', 'authenticate (password from $POSTSEAL_PASSWORD or --password-stdin)')
    .option('--password-stdin', 'read the password from standard input (the message must then come from --file or --subject/--body)')
    .option('--file <path>', 'message file (RFC 5322, CRLF or LF line endings with --normalize)')
    .option('--subject <text>', 'build a message with this subject')
    .option('--body <text>', 'build a message with this body')
    .option('--ca <file>', 'trusted CA certificates (PEM) instead of the system roots; also trusted for the MTA-STS policy fetch')
    .option('--helo <name>', 'EHLO name (default: this machine\'s host name)')
    .option('--timeout <seconds>', 'one timeout for every step (default: RFC 5321 §4.5.3.2 values)')
    .option('--chunking', 'use BDAT when the server offers CHUNKING')
    .option('--normalize', 'convert bare CR/LF in the message to CRLF instead of refusing it')
    .option('--dns <host:port>', 'DNS server for MX, TLSA and MTA-STS lookups; its AD bit is trusted (repeatable)', collect, [])
    .option('--smtp-port <port>', 'port of the MX hosts (default 25; tests only)')
    .option('--mta-sts-endpoint <host:port>', 'fetch every MTA-STS policy from here (tests only; Host and certificate name stay mta-sts.DOMAIN)')
    .option('--no-mta-sts', 'do not look up or apply MTA-STS policies')
    .option('--no-dane', 'do not look up TLSA or apply DANE')
    .option('--json', 'print the whole result as JSON')
    .action(async (flags: SendFlags) => {
      const results = await runSend(flags);
      if (flags.json === true) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
      else for (const r of results) printHuman(r);
      process.exitCode = results.every((r) => r.ok) ? 0 : 1;
    });
}

/** The policy that applied to one domain (send --json `policy`). */
export interface SendPolicy {
  source: PolicySource;
  mode: 'enforce' | 'testing' | 'none' | null;
  mtaSts: { from: 'cache' | 'fetched' | 'none'; id: string | null; failure: string | null } | null;
  mx: Array<{ host: string; allowed: boolean; level: TlsLevel; verifyName: string; source: PolicySource; rule: string; reached: DeliveryResult['reached'] | null; verified: boolean | null }>;
}

type SendOutcome = { ok: boolean; domain: string | null; result: DeliveryResult | null; mx: DomainDelivery | null; reason: string | null; policy: SendPolicy | null };

async function runSend(flags: SendFlags): Promise<SendOutcome[]> {
  if (flags.from === undefined) throw new ConfigError('send: --from is required');
  if (flags.to.length === 0) throw new ConfigError('send: at least one --to is required');
  const level = flags.tls ?? (flags.auth !== undefined ? 'verify' : 'may');
  if (!isTlsLevel(level)) throw new ConfigError(`send: --tls ${JSON.stringify(level)}: expected one of ${TLS_LEVELS.join(', ')}`);
  const built = flags.subject !== undefined || flags.body !== undefined;
  if (built && flags.file !== undefined) throw new ConfigError('send: --file and --subject/--body exclude each other');
  if (flags.passwordStdin === true && flags.file === undefined && !built) throw new ConfigError('send: with --password-stdin the message must come from --file or --subject/--body');
  let password: string | undefined;
  if (flags.auth !== undefined) {
    password = flags.passwordStdin === true ? (await readAll()).toString('utf8').replace(/\r?\n$/, '') : process.env['POSTSEAL_PASSWORD'];
    if (password === undefined || password === '') throw new ConfigError('send: --auth needs a password in $POSTSEAL_PASSWORD or --password-stdin');
  }
  let message: Uint8Array;
  if (built) message = Buffer.from(buildMessage({ from: flags.from, to: flags.to, subject: flags.subject ?? '', body: flags.body ?? '' }), 'utf8');
  else if (flags.file !== undefined) message = readFile(flags.file);
  else message = await readAll();
  let ca: string | undefined;
  if (flags.ca !== undefined) ca = readFile(flags.ca).toString('utf8');
  let timeouts: DeliverOptions['timeouts'];
  if (flags.timeout !== undefined) {
    const s = Number(flags.timeout);
    if (!Number.isFinite(s) || s <= 0) throw new ConfigError(`send: --timeout ${JSON.stringify(flags.timeout)}: expected seconds > 0`);
    timeouts = uniformTimeouts(Math.round(s * 1000));
  }
  const common: Omit<DeliverOptions, 'host' | 'to'> = {
    level: level as TlsLevel,
    implicitTls: flags.implicit === true,
    helo: flags.helo ?? hostname(),
    from: flags.from,
    message,
    tls: ca !== undefined ? { ca } : {},
    bareLineEndings: flags.normalize === true ? 'normalize' : 'reject',
    chunking: flags.chunking === true,
    ...(timeouts ? { timeouts } : {}),
    ...(flags.auth !== undefined && password !== undefined ? { auth: { user: flags.auth, password } } : {}),
  };
  if (flags.server !== undefined) {
    const { host, port } = parseServer(flags.server, flags.implicit === true);
    const result = await deliver({ ...common, host, port, serverName: flags.tlsName ?? host, to: flags.to });
    return [{ ok: result.ok, domain: null, result, mx: null, reason: result.error?.message ?? null, policy: null }];
  }
  // MX delivery: one walk per recipient domain (RFC 5321 §5.1).
  if (flags.tlsName !== undefined) throw new ConfigError('send: --tls-name needs --server (with MX lookup each MX host name is checked)');
  const byDomain = new Map<string, string[]>();
  for (const to of flags.to) {
    const d = to.slice(to.lastIndexOf('@') + 1).toLowerCase();
    byDomain.set(d, [...(byDomain.get(d) ?? []), to]);
  }
  for (const dns of flags.dns) {
    const d = parseHostPort(dns, { defaultPort: 53 });
    if (!d.ok) throw new ConfigError(`send: --dns ${JSON.stringify(dns)}: expected HOST[:PORT]: ${d.problem}`);
  }
  if (flags.mtaStsEndpoint !== undefined) {
    const e = parseHostPort(flags.mtaStsEndpoint, {});
    if (!e.ok) throw new ConfigError(`send: --mta-sts-endpoint ${JSON.stringify(flags.mtaStsEndpoint)}: expected HOST:PORT: ${e.problem}`);
  }
  let port = flags.implicit === true ? 465 : 25;
  if (flags.smtpPort !== undefined) {
    port = Number(flags.smtpPort);
    if (!/^[0-9]+$/.test(flags.smtpPort) || port < 1 || port > 65535) throw new ConfigError(`send: --smtp-port ${JSON.stringify(flags.smtpPort)}: expected a port 1-65535`);
  }
  const resolver = systemResolver(flags.dns.length > 0 ? flags.dns : undefined);
  const lookups = policyLookups({ dns: flags.dns, ca: ca ?? null, mtaSts: { enabled: flags.mtaSts !== false, endpoint: flags.mtaStsEndpoint ?? null }, dane: { enabled: flags.dane !== false } }, memoryMtaStsCache());
  const ctx = { ...lookups, resolver, table: {}, defaultLevel: level as TlsLevel, port };
  const out: SendOutcome[] = [];
  for (const [domain, to] of byDomain) {
    // --tls given explicitly is the operator's table entry for every destination (it wins).
    const decided = await decide(domain, ctx, { table: flags.tls !== undefined ? (level as TlsLevel) : null });
    const mx = await deliverToDomain(domain, { ...common, port, to }, resolver, domainPlan(decided));
    out.push({ ok: mx.ok, domain, result: mx.final, mx, reason: mx.reason, policy: policyOf(decided, mx) });
  }
  return out;
}

/** What --json says about the policy: the decision per MX and what each attempt reached. */
function policyOf(d: Decided, mx: DomainDelivery): SendPolicy {
  const sts = d.input.mtaSts;
  return {
    source: d.decision.source,
    mode: d.decision.mode,
    mtaSts: sts === null ? null : { from: sts.from, id: sts.policy?.id ?? null, failure: sts.failure ? `${sts.failure.type}: ${sts.failure.detail}` : null },
    mx: d.decision.mx.map((m) => {
      const tried = [...mx.attempts].reverse().find((a) => a.serverName === m.verifyName);
      return { host: m.host, allowed: m.allowed, level: m.level, verifyName: m.verifyName, source: m.source, rule: m.rule, reached: tried?.reached ?? null, verified: tried ? (tried.tls?.verified ?? false) : null };
    }),
  };
}

/** HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address (the one HOST:PORT parser). */
export function parseServer(text: string, implicit: boolean): { host: string; port: number } {
  const r = parseHostPort(text, { defaultPort: implicit ? 465 : 25 });
  if (!r.ok) throw new ConfigError(`send: --server ${JSON.stringify(text)}: expected HOST[:PORT] or [IPv6]:PORT: ${r.problem}`);
  return { host: r.host, port: r.port };
}

function readFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`send: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

async function readAll(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function printHuman(o: SendOutcome): void {
  const w = (s: string): boolean => process.stdout.write(s + '\n');
  if (o.domain !== null) w(`domain ${o.domain}: ${o.mx?.mx.kind === 'hosts' ? o.mx.mx.hosts.map((h) => `${h.name} (${h.preference})`).join(', ') : (o.mx?.mx.kind ?? '')}`);
  if (o.policy !== null) {
    w(`policy ${o.policy.source}${o.policy.mode !== null ? ` (MTA-STS ${o.policy.mode})` : ''}`);
    for (const m of o.policy.mx) w(`mx     ${m.host}: ${m.allowed ? m.level : 'not used'}${m.reached !== null ? `, reached ${m.reached}` : ''} — ${m.rule}`);
  }
  const r = o.result;
  if (r === null) {
    w(`not delivered: ${o.reason ?? 'unknown'}`);
    return;
  }
  const tls = r.tls ? `${r.tls.protocol} ${r.tls.cipher}${r.tls.group ? ' ' + r.tls.group : ''}, certificate ${r.tls.verified ? 'verified' : `not verified (${r.tls.verifyError ?? ''})`} for ${r.tls.checkedName}` : 'none (plaintext)';
  w(`server ${r.host}:${r.port}  level ${r.level}  reached ${r.reached}`);
  w(`tls    ${tls}`);
  for (const f of r.findings) w(`note   ${f.kind}${'bytes' in f ? ` (${f.bytes} octets discarded)` : ''}${'reason' in f ? `: ${f.reason}` : ''}`);
  for (const x of r.recipients) w(`${x.status.padEnd(9)} ${x.address}${x.reply ? `  ${replyText(x.reply)}` : ''}${x.status !== 'delivered' && x.reason && !x.reply ? `  ${x.reason}` : ''}`);
  if (r.error) w(`error  ${r.error.code}: ${r.error.message}`);
}
