/**
 * `postseal report tls`: what TLS-RPT (RFC 8460) has counted, what the next report per policy
 * domain will say, and `--send-now` to make and send the reports at once. Parsing and printing
 * only: the work is policy/tlsrpt-send.ts.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { createOwnMailSigner } from '../auth/dkim-own.js';
import { loadConfigFile, storeSpecOf } from '../config.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { DnsResolver } from '../policy/dns.js';
import { deliverTlsRptReports, makeTlsRptReports, planTlsRptReports, type TlsRptSendOptions } from '../policy/tlsrpt-send.js';
import { HOST_PORT_SYNTAX, parseHostPort } from '../protocol/host-port.js';
import type { TlsRptCount } from '../store/index.js';
import type { StoreSpec } from '../store/open.js';
import { collect, DATA_FLAG, DEFAULT_DATA_DIR, STORE_FLAG, storeSpecFrom, withReader, withStore, type StoreFlags } from './common.js';

interface ReportFlags extends StoreFlags {
  domain?: string;
  json?: boolean;
  sendNow?: boolean;
  dns?: string[];
  ca?: string;
  org?: string;
  contact?: string;
  submitter?: string;
  from?: string;
  config?: string;
  dkim?: boolean;
}

/**
 * What --send-now signs with, as serve's scheduled reporter does (serve.ts signGenerated): the
 * data directory's DKIM keys of the From domain (or of its nearest configured parent in the
 * config's `domains`), unless `dkim.enabled` is false in --config or --no-dkim is given. Signed
 * once, before the report is queued (dkim-own.ts); no key: sent unsigned, with a warning.
 */
interface SignSettings {
  dataDir: string;
  domains: string[];
  enabled: boolean;
  expirySeconds: number | null;
  /** The store the --config file names (its store.url, else its dataDir), or null without --config. */
  store: StoreSpec | null;
}

/** Signing problems (no key for the From domain, an unreadable key) as plain lines on stderr. */
const stderrWarnings: Logger = {
  info() {},
  debug() {},
  error: (_o, msg) => void process.stderr.write(`postseal: ${msg ?? ''}\n`),
  warn: (_o, msg) => void process.stderr.write(`postseal: warning: ${msg ?? ''}\n`),
};

function signSettings(f: ReportFlags): SignSettings {
  if (f.config === undefined) return { dataDir: f.data ?? DEFAULT_DATA_DIR, domains: [], enabled: f.dkim !== false, expirySeconds: null, store: null };
  const cfg = loadConfigFile(f.config);
  return { dataDir: f.data ?? cfg.dataDir, domains: cfg.domains, enabled: cfg.dkim.enabled && f.dkim !== false, expirySeconds: cfg.dkim.expirySeconds, store: storeSpecOf(cfg) };
}

function countLine(c: TlsRptCount): string {
  const where = [c.mxHost || '-', c.receivingIp || '-'].join(' ');
  return `${c.day}  ${c.policyDomain}  ${c.policyType.padEnd(15)} ${where}  ${c.result}=${c.count}${c.detail !== null ? `  (${c.detail})` : ''}`;
}

function sendOptions(f: ReportFlags, sign: SignSettings): TlsRptSendOptions {
  const submitter = f.submitter ?? hostname();
  const servers = (f.dns ?? []).map((t) => {
    const r = parseHostPort(t, { defaultPort: 53 });
    if (!r.ok) throw new UsageError(`--dns ${t}: ${r.problem}; expected ${HOST_PORT_SYNTAX}`);
    return { host: r.host, port: r.port };
  });
  const resolver = servers.length > 0 ? new DnsResolver(servers) : DnsResolver.system();
  let ca: string[] = [];
  if (f.ca !== undefined) {
    try {
      ca = [readFileSync(f.ca, 'utf8')];
    } catch (e) {
      throw new UsageError(`--ca ${f.ca}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return {
    organizationName: f.org ?? submitter,
    contactInfo: f.contact ?? `postmaster@${submitter}`,
    submitter,
    from: f.from ?? `tlsrpt-noreply@${submitter}`,
    lookupTxt: (name) => resolver.txt(name),
    ca,
    sign: sign.enabled ? createOwnMailSigner({ dataDir: sign.dataDir, domains: sign.domains, expirySeconds: sign.expirySeconds, logger: stderrWarnings }) : null,
  };
}

export function registerReport(program: Command): void {
  const report = program.command('report').description('reports about outbound TLS');
  report
    .command('tls')
    .description('TLS-RPT (RFC 8460): what has been counted and what the next report per policy domain will say; --send-now sends it')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--domain <domain>', 'only this policy domain')
    .option('--json', 'JSON output')
    .option('--send-now', 'make the reports now (today included, up to now) and send them and any waiting for a retry')
    .option('--dns <host:port>', 'resolver for the _smtp._tls TXT lookups (repeatable; default: the system resolver)', collect)
    .option('--ca <file>', 'extra trusted CA (PEM) for https: collectors')
    .option('--org <name>', 'organization-name in the report (default: the submitter)')
    .option('--contact <address>', 'contact-info in the report (default: postmaster@SUBMITTER)')
    .option('--submitter <host>', 'the reporting host (TLS-Report-Submitter; default: this host name)')
    .option('--from <address>', 'sender of mailto: reports (default: tlsrpt-noreply@SUBMITTER)')
    .option('--config <file>', 'serve config file: its store (unless --store, --data or $POSTSEAL_STORE is given), dataDir (DKIM keys, unless --data), domains and dkim.enabled/expirySeconds apply to --send-now')
    .option('--no-dkim', 'send the reports unsigned (default: DKIM-signed with the data directory\'s keys of the From domain, as serve does)')
    .action(async (f: ReportFlags) => {
      const now = new Date();
      const only = f.domain !== undefined ? { domain: f.domain } : {};
      if (f.sendNow === true) {
        const sign = signSettings(f);
        const opts = sendOptions(f, sign);
        // The store: --store, --data, $POSTSEAL_STORE, then the --config file's.
        await withStore(storeSpecFrom(f, sign.store), async (store) => {
          const made = await makeTlsRptReports(store, opts, now, { ...only, includeToday: true });
          const rounds = await deliverTlsRptReports(store, opts, now, { ...only, force: true });
          if (f.json === true) process.stdout.write(JSON.stringify({ made, rounds }, null, 2) + '\n');
          else {
            for (const m of made) process.stdout.write(`${m.day}  ${m.policyDomain}  ${m.outcome}${m.reportId !== null ? `  ${m.reportId}` : ''}${m.detail !== null ? `  (${m.detail})` : ''}\n`);
            for (const r of rounds) {
              process.stdout.write(`${r.reportId}  ${r.policyDomain}  ${r.state}${r.sent.length ? `  sent: ${r.sent.join(', ')}` : ''}${r.queued.length ? `  queued: ${r.queued.join(', ')}` : ''}\n`);
              for (const [uri, why] of Object.entries(r.failed)) process.stdout.write(`  failed ${uri}: ${why}\n`);
            }
            if (made.length === 0 && rounds.length === 0) process.stdout.write('nothing to report\n');
          }
          if (rounds.some((r) => r.state !== 'sent')) process.exitCode = 1;
        });
        return;
      }
      await withReader(f, async (store) => {
        const counts = await store.listTlsRptCounts(only);
        const waiting = (await store.listTlsRptReports(only)).map(({ gz, ...r }) => ({ ...r, bytes: gz.length }));
        const submitter = f.submitter ?? hostname();
        const id = { organizationName: f.org ?? submitter, contactInfo: f.contact ?? `postmaster@${submitter}`, submitter };
        // The next report of each day as it stands now (today's so far; it is sent after the day ends).
        const next = (await planTlsRptReports(store, id, now, { ...only, includeToday: true })).map((p) => ({ policyDomain: p.policyDomain, day: p.day, report: p.report }));
        if (f.json === true) {
          process.stdout.write(JSON.stringify({ counts, next, waiting }, null, 2) + '\n');
          return;
        }
        if (counts.length === 0) process.stdout.write('no TLS-RPT counts\n');
        for (const c of counts) process.stdout.write(countLine(c) + '\n');
        for (const n of next) process.stdout.write(`\nnext report for ${n.policyDomain} (${n.day}; the report-id is made when it is sent):\n${JSON.stringify(n.report, null, 2)}\n`);
        for (const w of waiting) process.stdout.write(`\nwaiting: ${w.reportId} ${w.policyDomain} ${w.day} attempts=${w.attempts} next=${new Date(w.nextAttemptAt).toISOString()} to ${w.rua.join(', ')}${w.lastError !== null ? `  last: ${w.lastError}` : ''}\n`);
      });
    });
}
