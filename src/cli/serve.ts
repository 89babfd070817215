/** `postseal serve`: flags → config → startServe; signals for reload and graceful stop. */
import type { Command } from 'commander';
import { applyConfigObject, defaultConfig, loadConfigFile, parseAddress, type ServeConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { startServe } from '../serve.js';
import { LISTENER_TLS_LEVELS } from '../types.js';
import { collect } from './common.js';

interface ServeFlags {
  config?: string;
  data?: string;
  hostname?: string;
  mx?: string;
  submission?: string;
  submissions?: string;
  mxTls?: string;
  submissionTls?: string;
  cert?: string;
  key?: string;
  certPair?: string[];
  domain?: string[];
  bareLineEndings?: string;
  logLevel?: string;
  route?: string[];
  tlsPolicy?: string[];
  relayTls?: string;
  dns?: string[];
  relayCa?: string;
  smtpPort?: string;
  relay?: boolean;
  catchAll?: boolean;
}

/** "example.net=VALUE" pairs from a repeatable flag. */
function pairs(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${flag} ${item} is not valid: expected DOMAIN=VALUE`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** "--cert-pair CERT:KEY" → { cert, key }; exactly one ':' (use tls.certificates for paths with ':'). */
function certPair(item: string): { cert: string; key: string } {
  const parts = item.split(':');
  const [cert, key] = parts;
  if (parts.length !== 2 || !cert || !key) {
    throw new ConfigError(`--cert-pair ${item} is not valid: expected CERT:KEY (two PEM file paths; for paths containing ':' use tls.certificates in the config file)`);
  }
  return { cert, key };
}

export function flagsToConfig(flags: ServeFlags): ServeConfig {
  let cfg = flags.config ? loadConfigFile(flags.config) : defaultConfig();
  const doc: Record<string, unknown> = {};
  if (flags.data) doc.dataDir = flags.data;
  if (flags.hostname) doc.hostname = flags.hostname;
  if (flags.domain) doc.domains = [...cfg.domains, ...flags.domain];
  const listeners: Record<string, unknown> = {};
  for (const name of ['mx', 'submission', 'submissions'] as const) {
    const v = flags[name];
    if (v === undefined) continue;
    if (v === 'off') listeners[name] = 'off';
    else {
      parseAddress(v, `--${name}`);
      listeners[name] = { address: v };
    }
  }
  if (flags.mxTls) {
    if (!['none', 'may', 'encrypt'].includes(flags.mxTls)) throw new ConfigError(`--mx-tls ${flags.mxTls} is not valid: expected none|may|encrypt`);
    const cur = listeners.mx;
    listeners.mx = cur === 'off' ? 'off' : { ...(typeof cur === 'object' ? cur : {}), tls: flags.mxTls };
  }
  if (flags.submissionTls) {
    if (!(LISTENER_TLS_LEVELS as readonly string[]).includes(flags.submissionTls)) throw new ConfigError(`--submission-tls ${flags.submissionTls} is not valid`);
    const cur = listeners.submission;
    listeners.submission = cur === 'off' ? 'off' : { ...(typeof cur === 'object' ? cur : {}), tls: flags.submissionTls };
  }
  if (Object.keys(listeners).length) doc.listeners = listeners;
  // Only the flags given: --key alone must not erase a tls.cert from the config file.
  if (flags.cert || flags.key) doc.tls = { ...(flags.cert ? { cert: flags.cert } : {}), ...(flags.key ? { key: flags.key } : {}) };
  // --cert-pair adds to tls.certificates of the config file, like --domain adds to domains.
  if (flags.certPair) doc.tls = { ...(doc.tls as object | undefined), certificates: [...cfg.tls.certificates, ...flags.certPair.map(certPair)] };
  if (flags.bareLineEndings) doc.bareLineEndings = flags.bareLineEndings;
  if (flags.logLevel) doc.log = { level: flags.logLevel };
  const relay: Record<string, unknown> = {};
  if (flags.route) relay.routes = pairs(flags.route, '--route');
  if (flags.tlsPolicy) relay.tlsPolicy = pairs(flags.tlsPolicy, '--tls-policy');
  if (flags.relayTls) relay.defaultTls = flags.relayTls;
  if (flags.dns) relay.dns = flags.dns;
  if (flags.relayCa) relay.ca = flags.relayCa;
  if (flags.smtpPort) relay.smtpPort = Number(flags.smtpPort);
  if (flags.relay === false) relay.enabled = false;
  if (Object.keys(relay).length) doc.relay = relay;
  if (flags.catchAll) doc.recipients = { catchAll: true };
  cfg = applyConfigObject(cfg, doc);
  return cfg;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the mail server: mx (STARTTLS may), submission (STARTTLS required + AUTH), submissions (implicit TLS + AUTH)')
    .option('--config <file>', 'JSON config file (flags override it)')
    .option('--data <dir>', 'data directory (database, self-signed certificate)')
    .option('--hostname <name>', 'name in the greeting, EHLO and Received headers')
    .option('--mx <addr|off>', 'mx listener address (default 127.0.0.1:2525)')
    .option('--submission <addr|off>', 'submission listener address (default 127.0.0.1:2587)')
    .option('--submissions <addr|off>', 'implicit-TLS submission listener address (default 127.0.0.1:2465)')
    .option('--mx-tls <level>', 'TLS level of the mx listener: none|may|encrypt (default may)')
    .option('--submission-tls <level>', 'TLS level of the submission listener (default encrypt)')
    .option('--cert <file>', 'certificate PEM (chain after the leaf)')
    .option('--key <file>', 'private key PEM')
    .option('--cert-pair <cert:key>', 'one more certificate and its key, served to clients whose SNI names one of its SAN DNS names; ECDSA and RSA for the same names may both be given (repeatable)', collect)
    .option('--domain <domain>', 'a local domain (repeatable)', collect)
    .option('--bare-line-endings <mode>', 'reject (default) or normalize bare CR/LF in messages')
    .option('--log-level <level>', 'debug|info|warn|error|silent')
    .option('--route <domain=host:port>', 'static route for outbound mail, * for a relayhost (repeatable)', collect)
    .option('--tls-policy <domain=level>', 'outbound TLS level for a domain: none|may|encrypt|verify (repeatable)', collect)
    .option('--relay-tls <level>', 'outbound TLS level for other domains (default may)')
    .option('--dns <host:port>', 'DNS server for MX lookups (repeatable)', collect)
    .option('--relay-ca <file>', 'extra trusted CA (PEM) for outbound verify')
    .option('--smtp-port <port>', 'port for MX deliveries (default 25)')
    .option('--no-relay', 'do not deliver queued outbound mail')
    .option('--catch-all', 'accept mail for any address at a local domain (default: known users and postmaster only)')
    .action(async (flags: ServeFlags) => {
      const cfg = flagsToConfig(flags);
      const running = await startServe(cfg);
      // Every reload (SIGHUP or the file watcher) is logged once, here, with what is now served.
      running.certs.onReload((r) => {
        if (r.ok) running.logger.info({ event: 'tls-reload', changed: r.changed, fingerprint256: r.certificate.fingerprint256 }, 'certificate reloaded');
        else running.logger.error({ event: 'tls-reload', error: r.error.message, changed: r.changed }, 'certificate reload failed; keeping the previous one');
      });
      // SIGHUP: reload the certificate without dropping live sessions.
      process.on('SIGHUP', () => {
        running.logger.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP: reloading the certificate');
        void running.certs.reload();
      });
      if (cfg.tls.cert || cfg.tls.certificates.length > 0) running.certs.watch();
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        running.logger.info({ event: 'shutdown', signal }, 'stopping: 421 to idle sessions, finishing transactions in flight');
        running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            running.logger.error({ event: 'shutdown', error: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // "listening" means ready, so it comes last: a supervisor that signals as soon as it reads
      // these lines must find the handlers in place (SIGTERM/SIGHUP would otherwise kill us).
      for (const b of running.bound) {
        const host = b.host.includes(':') ? `[${b.host}]` : b.host;
        process.stdout.write(`listening ${b.name} ${host}:${b.port} tls=${b.tls}\n`);
      }
    });
}
