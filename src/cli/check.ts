/**
 * `postseal check HOST[:PORT]` and `postseal check --domain DOMAIN`: flags → library call
 * (checkHost / checkDomain) → text or JSON on stdout. No probing logic here.
 *
 * Exit status: 0 no finding at or above --fail-on (default high); 1 such findings; 2 the target
 * could not be checked (the reason is printed) or the flags are wrong.
 */
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import type { Command } from 'commander';
import { checkDomain, type DomainReport } from '../check/domain.js';
import { DnsResolver } from '../policy/dns.js';
import { checkHost } from '../check/host.js';
import { renderDomainReport } from '../check/render-domain.js';
import { renderHostReport } from '../check/render-text.js';
import { SEVERITIES, type Finding, type HostReport, type Severity } from '../check/types.js';
import { parseHostPort } from '../protocol/host-port.js';
import { collect, DEFAULT_DATA_DIR } from './common.js';
import { UsageError } from '../errors.js';
import { listKeys } from '../auth/dkim-keys.js';
import type { DkimKeyInfo } from '../check/dkim.js';

interface CheckFlags {
  domain?: string;
  implicit?: boolean;
  ca?: string[];
  json?: boolean;
  failOn: string;
  timeout: string;
  dns?: string;
  probe?: string[];
  rcpt?: string;
  from?: string;
  mtaStsEndpoint?: string;
  submission?: boolean;
  port?: string;
  data?: string;
}

/** HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 literal. */
export function parseTarget(text: string): { host: string; port: number | null } {
  // The one HOST:PORT parser; port 0 marks "none given" (it is never a valid port here).
  const r = parseHostPort(text, { defaultPort: 0 });
  if (!r.ok) throw new UsageError(`target ${JSON.stringify(text)} is not HOST[:PORT]: ${r.problem}`);
  return { host: r.host, port: r.port === 0 ? null : r.port };
}

function hostPortFlag(text: string, flag: string): { host: string; port: number } {
  const t = parseTarget(text);
  if (t.port === null) throw new UsageError(`${flag} needs HOST:PORT, got ${JSON.stringify(text)}`);
  return { host: t.host, port: t.port };
}

function parsePort(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--port ${text} is not a port number`);
  return n;
}

/**
 * The DKIM keys to check for --domain: those of --data (an error there is the user's to see), else
 * those of the default data directory when it has any for the domain (quietly nothing otherwise).
 */
function dkimKeysFor(domain: string, dataFlag: string | undefined): { source: string; keys: DkimKeyInfo[] } | null {
  if (dataFlag !== undefined) {
    try {
      return { source: dataFlag, keys: listKeys(dataFlag, domain) };
    } catch (e) {
      throw new UsageError(`--data ${dataFlag}: cannot read the DKIM keys of ${domain}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  try {
    const keys = listKeys(DEFAULT_DATA_DIR, domain);
    return keys.length > 0 ? { source: DEFAULT_DATA_DIR, keys } : null;
  } catch {
    return null;
  }
}

function severityAtOrAbove(f: Finding, threshold: Severity): boolean {
  return SEVERITIES.indexOf(f.severity) <= SEVERITIES.indexOf(threshold);
}

/** Exit status for a finished report (see the header). */
export function exitStatus(r: HostReport | DomainReport, failOn: Severity): 0 | 1 | 2 {
  if (r.status === 'error') return 2;
  return r.findings.some((f) => severityAtOrAbove(f, failOn)) ? 1 : 0;
}

async function run(target: string | undefined, flags: CheckFlags): Promise<number> {
  if (!(SEVERITIES as readonly string[]).includes(flags.failOn)) throw new UsageError(`--fail-on must be one of ${SEVERITIES.join(', ')}`);
  const failOn = flags.failOn as Severity;
  const timeoutS = Number(flags.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 600) throw new UsageError('--timeout must be a number of seconds (0 < t <= 600)');
  const timeoutMs = Math.round(timeoutS * 1000);
  const ca = (flags.ca ?? []).map((f) => readFileSync(f, 'utf8'));
  const resolver = flags.dns ? new DnsResolver(hostPortFlag(flags.dns, '--dns'), timeoutMs) : null;
  const probes = flags.probe ?? [];
  for (const p of probes) if (p !== 'smuggling') throw new UsageError(`unknown --probe ${p} (known: smuggling)`);
  let smuggling: { rcpt: string; from?: string } | null = null;
  if (probes.includes('smuggling')) {
    if (!flags.rcpt) throw new UsageError('--probe smuggling sends real test mail: it needs --rcpt ADDRESS');
    smuggling = { rcpt: flags.rcpt, ...(flags.from ? { from: flags.from } : {}) };
  }
  const emit = (text: string): void => void process.stdout.write(text);

  if (flags.domain !== undefined) {
    if (target !== undefined) throw new UsageError('give either HOST[:PORT] or --domain DOMAIN, not both');
    const showProgress = !flags.json;
    const report = await checkDomain(flags.domain, {
      resolver: resolver ?? DnsResolver.system(timeoutMs),
      ca,
      timeoutMs,
      smuggling,
      port: flags.port ? parsePort(flags.port) : 25,
      mtaStsEndpoint: flags.mtaStsEndpoint ? hostPortFlag(flags.mtaStsEndpoint, '--mta-sts-endpoint') : null,
      onProgress: showProgress ? (line) => void process.stderr.write(line + '\n') : undefined,
      dkim: dkimKeysFor(flags.domain, flags.data),
    });
    emit(flags.json ? JSON.stringify(report, null, 2) + '\n' : renderDomainReport(report));
    return exitStatus(report, failOn);
  }

  if (target === undefined) throw new UsageError('missing HOST[:PORT] (or --domain DOMAIN)');
  const t = parseTarget(target);
  const port = t.port ?? 25;
  let address = t.host;
  if (net.isIP(t.host) === 0) {
    try {
      if (resolver) {
        const list = await resolver.addresses(t.host);
        const first = list[0];
        if (first === undefined) throw new Error(`${t.host} has no A or AAAA record`);
        address = first;
      } else {
        address = (await lookup(t.host)).address;
      }
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (flags.json) emit(JSON.stringify({ schemaVersion: 1, kind: 'host', status: 'error', error: { code: 'CHECK_DNS', message: msg } }, null, 2) + '\n');
      else process.stderr.write(`postseal check: could not resolve ${t.host}: ${msg}\n`);
      return 2;
    }
  }
  const report = await checkHost(t.host, {
    port,
    address,
    ca,
    timeoutMs,
    smuggling,
    ...(flags.implicit ? { implicitTls: true } : {}),
    ...(flags.submission ? { submission: true } : {}),
  });
  emit(flags.json ? JSON.stringify(report, null, 2) + '\n' : renderHostReport(report));
  return exitStatus(report, failOn);
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check how well a mail server (or every MX of a domain) does STARTTLS, and whether it is safe')
    .argument('[target]', 'HOST[:PORT] (port 25 by default; :465 means implicit TLS)')
    .option('--domain <domain>', 'check every MX host and address of DOMAIN, plus MTA-STS, TLS-RPT, DANE, SPF, DMARC and our DKIM keys')
    .option('--port <port>', 'SMTP port of every MX in --domain mode (default 25)')
    .option('--data <dir>', `--domain: also check that our DKIM keys in this data directory are published (default: ${DEFAULT_DATA_DIR}, when it has keys for the domain)`)
    .option('--implicit', 'TLS from the first byte (automatic on port 465; on other ports tried when no greeting comes within 3 s)')
    .option('--submission', 'submission semantics: MAIL before STARTTLS must get 530 (automatic on 587 and 465)')
    .option('--ca <file>', 'also trust the CA certificates in this PEM file (repeatable)', collect)
    .option('--json', 'print the report as JSON (schema: src/check/SCHEMA.md)')
    .option('--fail-on <severity>', `exit 1 when a finding is at least this severe (${SEVERITIES.join('|')})`, 'high')
    .option('--timeout <seconds>', 'timeout for each read, handshake and DNS query', '15')
    .option('--dns <host:port>', 'send every DNS query to this resolver')
    .option('--probe <name>', 'opt-in probe that SENDS REAL MAIL: smuggling (needs --rcpt)', collect)
    .option('--rcpt <address>', 'recipient of the test mails of --probe smuggling')
    .option('--from <address>', 'sender of the test mails (default: the --rcpt address)')
    .option('--mta-sts-endpoint <host:port>', 'fetch the MTA-STS policy from here instead of mta-sts.DOMAIN:443 (testing)')
    .action(async (target: string | undefined, flags: CheckFlags) => {
      try {
        process.exitCode = await run(target, flags);
      } catch (e) {
        if (e instanceof UsageError) {
          process.stderr.write(`postseal check: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        const message = e instanceof Error ? e.message : String(e);
        // --json promises JSON on stdout even when the check could not complete (exit 2).
        if (flags.json) {
          const code = typeof (e as { code?: unknown }).code === 'string' ? String((e as { code?: unknown }).code) : 'CHECK_FAILED';
          process.stdout.write(JSON.stringify({ schemaVersion: 1, kind: flags.domain !== undefined ? 'domain' : 'host', status: 'error', error: { code, message } }, null, 2) + '\n');
        }
        process.stderr.write(`postseal check: could not check: ${message}\n`);
        process.exitCode = 2;
      }
    });
}
