/**
 * `postseal serve` as a library call: opens the store in the data directory, loads (or makes) the
 * certificate, starts the listeners. The CLI only adds signals and printing.
 */
import { parseHostPort } from './protocol/host-port.js';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServeConfig, ListenerName } from './config.js';
import { LISTENER_NAMES, configAddress, deliveryTargets, relayRunnerSettings, storeSpecOf } from './config.js';
import { formatTargetSpec } from './delivery/target-spec.js';
import type { TargetSpec } from './delivery/types.js';
import { TargetRegistry } from './relay/handoff.js';
import type { IncomingMessage, RecipientDsn } from './types.js';
import { ConfigError } from './errors.js';
import { createLogger } from './log.js';
import { SmtpServer, type BoundListener } from './server/server.js';
import type { ServerEvents } from './server/events.js';
import type { RunnerEvents } from './relay/runner.js';
import type { ListenerOptions, Logger, MessageSink, TlsProvider, UserVerifier } from './server/types.js';
import { domainOf, lockDataDir, normalizeAddress, type Store } from './store/index.js';
import { describeStore, openStore } from './store/open.js';
import type { ResolveOptions } from './store/resolve.js';
import { CertificateStore, ensureSelfSigned, serverSocketOptions } from './tls/index.js';
import { QueueRunner } from './relay/runner.js';
import { localSuccessReport } from './relay/local-dsn.js';
import { systemResolver } from './client/index.js';
import { policyLookups, resolverFor } from './policy/context.js';
import { TlsRptCounter } from './policy/tlsrpt.js';
import { TlsRptReporter } from './policy/tlsrpt-send.js';
import { createVerifier } from './auth/verify.js';
import { createDkimSigner } from './auth/dkim-sign.js';
import { createArcSealer } from './auth/arc-seal.js';
import { createOwnMailSigner } from './auth/dkim-own.js';
import type { GeneratedSigner } from './store/generated.js';
import { BODIES_DIR } from './store/spool.js';
import { SenderTest } from './server/sender-test.js';

export interface RunningServer {
  server: SmtpServer;
  store: Store;
  certs: CertificateStore;
  bound: BoundListener[];
  logger: Logger;
  /** The queue runner (outbound SMTP and local handoffs), or null when relay is disabled and no mailbox is handed to a target. */
  relay: QueueRunner | null;
  /** Graceful stop (421 to idle sessions, in-flight transactions finish), then the store closes. */
  close(graceMs?: number): Promise<void>;
  /** The sender test (http.senderTest), or null; the HTTP side tells it its URL (setBaseUrl). */
  senderTest?: SenderTest | null;
}

export interface ServeOverrides {
  logger?: Logger;
  /** Replace the durable store as message sink (benchmarks: protocol engine alone). */
  sink?: MessageSink;
  /**
   * Observers (the HTTP side's metrics, src/http/metrics.ts, made by the CLI: serve sits below
   * http and does not import it): the server's events, the runner's, and each store commit.
   */
  observers?: ServeObservers;
}

export interface ServeObservers {
  server?: ServerEvents | null;
  relay?: RunnerEvents | null;
  onCommit?: ((seconds: number, ops: number) => void) | null;
}

/**
 * arc.sealDomains must be local domains (only their aliases forward mail: a sealer for another
 * domain would never seal) and needs auth.verify (the seal's cv= is our ARC verdict, RFC 8617 §5.1).
 */
function checkArcConfig(cfg: ServeConfig): void {
  const local = new Set([cfg.hostname, ...cfg.domains].map((d) => d.toLowerCase()));
  const foreign = cfg.arc.sealDomains.filter((d) => !local.has(d.toLowerCase()));
  if (foreign.length > 0) throw new ConfigError(`config: arc.sealDomains: ${foreign.join(', ')} ${foreign.length === 1 ? 'is not a local domain' : 'are not local domains'} (domains or hostname); only aliases of a local domain forward mail`);
  if (cfg.arc.sealDomains.length > 0 && !cfg.auth.verify) throw new ConfigError('config: arc.sealDomains needs auth.verify: the seal\'s cv= is our verification of the incoming ARC chain (RFC 8617 §5.1)');
}

export async function startServe(cfg: ServeConfig, overrides: ServeOverrides = {}): Promise<RunningServer> {
  const logger = overrides.logger ?? createLogger(cfg.log.level);
  checkArcConfig(cfg);
  // Local delivery targets (issue 12): checked before anything opens (a webhook needs its secret).
  const targets = deliveryTargets(cfg.delivery);
  // The store (store.url / POSTSEAL_STORE / --store): checked before anything opens.
  const storeSpec = storeSpecOf(cfg);
  mkdirSync(cfg.dataDir, { recursive: true });
  const policy = { minVersion: cfg.tls.minVersion };
  // More certificates, chosen by SNI (tls.certificates / --cert-pair); labels name them in errors.
  const more = cfg.tls.certificates.map((c, i) => ({ certFile: c.cert, keyFile: c.key, label: `tls.certificates[${i}]` }));
  let certs: CertificateStore;
  if (cfg.tls.cert && cfg.tls.key) {
    certs = await CertificateStore.fromPairs([{ certFile: cfg.tls.cert, keyFile: cfg.tls.key, label: 'tls.cert/tls.key' }, ...more], { policy });
  } else if (cfg.tls.cert || cfg.tls.key) {
    // A configuration mistake, so exit status 2 and the keys named (ConfigError), not a crash.
    throw new ConfigError(`config: tls.cert and tls.key (--cert/--key) go together: ${cfg.tls.cert ? 'tls.key' : 'tls.cert'} is missing (give both, or neither for a self-signed development certificate)`);
  } else if (more.length > 0) {
    // No tls.cert: the first of tls.certificates is the default (no SNI, or a name none covers).
    certs = await CertificateStore.fromPairs(more, { policy });
  } else if (!cfg.tls.selfSigned) {
    // No certificate at all: STARTTLS is not offered and answers 454 (RFC 3207 §4).
    logger.warn({ event: 'tls' }, 'no certificate: TLS is unavailable on every listener');
    certs = CertificateStore.empty();
  } else {
    const made = await ensureSelfSigned(cfg.dataDir, cfg.hostname);
    if (made.created) logger.warn({ event: 'tls', certFile: made.certFile }, `no certificate configured: made a self-signed ECDSA P-256 certificate for ${cfg.hostname}; clients that verify will refuse it`);
    else logger.warn({ event: 'tls', certFile: made.certFile }, 'no certificate configured: using the self-signed development certificate');
    certs = await CertificateStore.fromFiles(made.certFile, made.keyFile, { policy });
  }
  // SQLite: one serve per store directory (store/owner.ts): its queue leases are ours to release.
  // PostgreSQL: several nodes share the store by design, so no lock across nodes; each node
  // releases only the leases held under its own node id.
  const owner = storeSpec.kind === 'sqlite' ? lockDataDir(storeSpec.dir) : null;
  // Large bodies are spooled on this host while they arrive: in the SQLite store's directory, or
  // (PostgreSQL, nodes on different hosts) in this node's data directory until their commit.
  const spoolDir = join(storeSpec.kind === 'sqlite' ? storeSpec.dir : cfg.dataDir, BODIES_DIR);
  let store: Store;
  try {
    store = await openStore(storeSpec, { nodeId: cfg.node.id, poolSize: cfg.store.poolSize, passwordFile: cfg.store.passwordFile, spoolDir, onCommit: overrides.observers?.onCommit ?? null });
  } catch (err) {
    owner?.release();
    throw err;
  }
  logger.info({ event: 'store', node: store.nodeId, store: describeStore(storeSpec) }, `store ${describeStore(storeSpec)} as node ${store.nodeId}`);
  // Leases left by a process of this node that died mid-delivery (SIGKILL, power loss): no other
  // process runs them, so its rows are claimable again now rather than at their lease end (up to
  // 15 min for LMTP). At-least-once: a row the dead process had handed over before dying is sent again.
  const released = await store.releaseLeases();
  if (released > 0) logger.warn({ event: 'queue', released, previousPid: owner?.tookOverFrom ?? null }, 'released queue rows a previous process held when it stopped');
  const orphans = store.removeOrphanBodies();
  if (orphans > 0) logger.warn({ event: 'store', removed: orphans }, 'removed spool files that no message names (left by a crash before commit)');
  const tls: TlsProvider = {
    hasCertificate: () => certs.current() !== null,
    // Contexts are built at load/reload; per connection this is one small options object.
    serverOptions: () => serverSocketOptions(certs.select()),
  };
  const listeners: ListenerOptions[] = [];
  for (const name of LISTENER_NAMES as readonly ListenerName[]) {
    const l = cfg.listeners[name];
    if (!l) continue;
    const { host, port } = configAddress(l.address, `listeners.${name}.address`, { allowPortZero: true });
    listeners.push({ name, host, port, tls: l.tls, auth: l.auth, maxConnections: l.maxConnections });
  }
  const localDomains = [...new Set([cfg.hostname.toLowerCase(), 'localhost', ...cfg.domains])];
  const users: UserVerifier = store;
  // Bounces and TLS-RPT reports are DKIM-signed once, when generated (auth/dkim-own.ts).
  const signGenerated: GeneratedSigner | null = cfg.dkim.enabled ? createOwnMailSigner({ dataDir: cfg.dataDir, domains: cfg.domains, expirySeconds: cfg.dkim.expirySeconds, logger }) : null;
  // The sender test (http.senderTest, server/sender-test.ts): RCPT/STARTTLS hooks, reports, replies.
  const senderTest = cfg.http.senderTest.enabled
    ? await SenderTest.create({ ...cfg.http.senderTest, localDomains: cfg.domains.map((d) => d.toLowerCase()), dataDir: cfg.dataDir, hostname: cfg.hostname, minVersion: cfg.tls.minVersion, sign: signGenerated, baseUrl: () => httpBaseUrl(cfg) })
    : null;
  const tlsRpt = cfg.relay.enabled && cfg.relay.tlsRpt.enabled ? new TlsRptCounter(store, { onError: (err) => logger.warn({ event: 'tlsrpt', error: err instanceof Error ? err.message : String(err) }, 'TLS-RPT counts not saved; kept for the next flush') }).start() : null;
  const handsOff = [...targets.values()].some((t) => t.kind !== 'store');
  const relay = cfg.relay.enabled || handsOff ? createRunner(cfg, store, localDomains, logger, tlsRpt, signGenerated, handsOff ? targetRegistry(cfg, targets) : null, overrides.observers?.relay ?? null) : null;
  const reporter = tlsRpt !== null && cfg.relay.tlsRpt.reports ? startTlsRptReporter(cfg, store, tlsRpt, logger, signGenerated) : null;
  // The address table's options, built once (not per RCPT or per message): the server's RCPT
  // and sender checks and the handoff step resolve with the same ones.
  const resolveOpts = resolveOptions(cfg, localDomains);
  const senderResolveOpts: ResolveOptions = { ...resolveOpts, forSender: true };
  // Mail for other domains (authenticated submission only) waits in the queue; wake the runner.
  const durable: MessageSink = {
    accept: async (given) => {
      const { msg, handedOff } = withHandoffs(given, targets, store, resolveOpts);
      const r = await store.accept(msg);
      // RFC 3461 §5.2.2: local recipients with NOTIFY=SUCCESS are delivered now, so their report
      // is made now and committed before this resolves (before the 250): a crash after the 250
      // cannot lose it; a crash between the two commits means no 250, the client retries.
      // Handed-off mailboxes are reported by the runner once their target took them (not here).
      const report = await localSuccessReport(msg, r.id, { hostname: cfg.hostname, localDomains, spoolDir, sign: signGenerated, handedOff });
      if (report) await store.accept(report);
      if (senderTest !== null) await senderTestAfterAccept(senderTest, msg, r.id, store, logger, () => relay?.kick());
      const forwards = Object.keys(msg.forwardedFrom ?? {}).length; // alias targets elsewhere, queued too
      const handoffs = msg.handoffs?.length ?? 0; // local mailboxes queued for LMTP/Maildir/webhook
      if (msg.remoteRecipients.length > 0 || forwards > 0 || handoffs > 0 || (report?.remoteRecipients.length ?? 0) > 0) relay?.kick();
      return r;
    },
  };
  const server = new SmtpServer({
    hostname: cfg.hostname,
    localDomains,
    listeners,
    limits: cfg.limits,
    bareLineEndings: cfg.bareLineEndings,
    sink: overrides.sink ?? durable,
    // Large bodies go to the store's spool directory as they arrive (a sink of one's own gets
    // them in memory, still bounded by limits.maxBodyMemory).
    spool: overrides.sink ? null : store.spool,
    users,
    // The address table (users + aliases, store/resolve.ts): a few indexed reads per RCPT, no
    // cache, so `postseal alias add` takes effect at the next RCPT. Catch-alls are resolver steps.
    recipients: {
      resolve: (a, o) => store.resolveRecipient(a, o?.forSender === true ? senderResolveOpts : resolveOpts),
    },
    received: { showAuthenticatedSender: cfg.received.showAuthenticatedSender },
    // Received mail (mx listener): SPF/DKIM/DMARC/ARC through the one DNS client (relay.dns or system).
    ...(cfg.auth.verify ? { verifier: createVerifier({ hostname: cfg.hostname, resolver: resolverFor(cfg.relay.dns).mailauthResolver(), ...cfg.auth }) } : {}),
    // DKIM at submission: keys from DATA/dkim (postseal dkim keygen); spooled bodies read from the store's spool.
    ...(cfg.dkim.enabled ? { signer: createDkimSigner({ dataDir: cfg.dataDir, spoolDir, expirySeconds: cfg.dkim.expirySeconds }) } : {}),
    // ARC sealing of mail that aliases of arc.sealDomains forward elsewhere: the same DKIM keys.
    ...(cfg.arc.sealDomains.length > 0
      ? { sealer: createArcSealer({ dataDir: cfg.dataDir, spoolDir, sealDomains: cfg.arc.sealDomains, onSkip: (domain, reason) => logger.info({ event: 'arc-not-sealed', domain, reason }, 'forwarded message not ARC-sealed') }) }
      : {}),
    tls,
    logger,
    events: overrides.observers?.server ?? null,
    senderTest,
  });
  let bound: BoundListener[];
  try {
    bound = await server.listen();
  } catch (err) {
    await server.close(0);
    await relay?.stop();
    reporter?.stop();
    await tlsRpt?.close();
    await store.close();
    certs.close();
    owner?.release();
    throw err;
  }
  return {
    server,
    store,
    certs,
    bound,
    logger,
    relay,
    senderTest,
    async close(graceMs?: number) {
      await server.close(graceMs);
      await relay?.stop();
      // Rows this node claimed but will not deliver now go back at once, not after their lease
      // (another node, or this one restarted, takes them). Best effort: the store may be down.
      if (relay) {
        try {
          const n = await store.releaseLeases();
          if (n > 0) logger.info({ event: 'store', released: n }, 'queue leases released at stop');
        } catch (err) {
          logger.warn({ event: 'store', error: err instanceof Error ? err.message : String(err) }, 'queue leases not released at stop; they expire by themselves');
        }
      }
      reporter?.stop();
      await tlsRpt?.close();
      certs.close();
      await store.close();
      owner?.release();
    },
  };
}

/**
 * The daily TLS-RPT job (RFC 8460 §3): reports of finished days to each policy domain's `rua`.
 * Identity defaults to the hostname; TXT lookups use the relay's DNS servers.
 */
function startTlsRptReporter(cfg: ServeConfig, store: Store, counter: TlsRptCounter, logger: Logger, sign: GeneratedSigner | null = null): TlsRptReporter {
  const t = cfg.relay.tlsRpt;
  const host = cfg.hostname;
  const dns = resolverFor(cfg.relay.dns);
  const ca = cfg.relay.ca ? [readFileSync(cfg.relay.ca, 'utf8')] : [];
  const reporter = new TlsRptReporter(store, counter, {
    organizationName: t.organizationName ?? host,
    contactInfo: t.contactInfo ?? `postmaster@${host}`,
    submitter: t.submitter ?? host,
    from: t.from ?? `postmaster@${host}`,
    lookupTxt: (name) => dns.txt(name),
    ca,
    intervalMs: t.intervalMs,
    sign,
    onError: (err) => logger.warn({ event: 'tlsrpt', error: err instanceof Error ? err.message : String(err) }, 'TLS-RPT report run failed; retried at the next run'),
  });
  return reporter.start();
}

/**
 * The sender test's report and reply for a stored message (server/sender-test.ts). It runs after
 * the message is durable: a failure here is logged and never turns the stored message into a 4xx.
 */
async function senderTestAfterAccept(t: SenderTest, msg: IncomingMessage, id: string, store: Store, logger: Logger, kick: () => void): Promise<void> {
  try {
    const { reports, replies } = await t.afterAccept(msg, id);
    for (const m of replies) await store.accept(m);
    for (const r of reports) logger.info({ event: 'sender-test', report: r.id, variant: r.variant, client: r.client.address, tls: r.tls?.protocol ?? null, hostile: r.hostile, reply: r.reply.reason }, 'sender test report');
    if (replies.some((m) => m.remoteRecipients.length > 0)) kick();
  } catch (err) {
    logger.warn({ event: 'sender-test', id, error: err instanceof Error ? err.message : String(err) }, 'sender test report failed');
  }
}

/** The console's base URL from http.address (null: off, or port 0 whose real port is known only to the HTTP side). */
function httpBaseUrl(cfg: ServeConfig): string | null {
  if (cfg.http.address === 'off') return null;
  // The one HOST:PORT parser (protocol/host-port.ts); port 0 is known only once bound (setBaseUrl).
  const hp = parseHostPort(cfg.http.address);
  if (!hp.ok) return null;
  const raw = hp.host;
  const loopback = raw === 'localhost' || raw === '::1' || raw.startsWith('127.');
  const host = raw === '0.0.0.0' || raw === '::' ? cfg.hostname : raw.includes(':') ? `[${raw}]` : raw;
  return `${loopback ? 'http' : 'https'}://${host}:${hp.port}`;
}

/** The address table options of `recipients` (the same the server's RCPT check resolves with). */
function resolveOptions(cfg: ServeConfig, localDomains: readonly string[]): ResolveOptions {
  const r: { catchAll: boolean; subaddressSeparator?: string; catchAllDomains?: readonly string[] } = cfg.recipients;
  return { localDomains, catchAll: r.catchAll, ...(r.subaddressSeparator !== undefined ? { subaddressSeparator: r.subaddressSeparator } : {}), ...(r.catchAllDomains !== undefined ? { catchAllDomains: r.catchAllDomains } : {}) };
}

/** One DeliveryTarget per configured target (relay/handoff.ts), with the `delivery` settings. */
function targetRegistry(cfg: ServeConfig, targets: ReadonlyMap<string, TargetSpec>): TargetRegistry {
  const d = cfg.delivery;
  let ca: string | null = null;
  if (d.lmtp.ca !== null) {
    try {
      ca = readFileSync(d.lmtp.ca, 'utf8');
    } catch (err) {
      throw new ConfigError(`config: delivery.lmtp.ca = ${JSON.stringify(d.lmtp.ca)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  const configured = [...targets.values()].filter((t) => t.kind !== 'store').map(formatTargetSpec);
  return new TargetRegistry({ webhook: { ...d.webhook }, lmtp: { level: d.lmtp.tls, ca } }, configured);
}

/**
 * The target of each final local mailbox (an address entry, else its domain's, else the store)
 * as `handoffs` of the message; a handed-off mailbox gets the NOTIFY/ORCPT of the RCPT it came
 * from (ORCPT defaulting to that RCPT, as for alias forwards, RFC 3461 §4.2), and such RCPTs are
 * returned so the accept-time success report leaves them to the runner. No targets: unchanged.
 */
function withHandoffs(msg: IncomingMessage, targets: ReadonlyMap<string, TargetSpec>, store: Store, resolveOpts: ResolveOptions): { msg: IncomingMessage; handedOff: Set<string> } {
  const handedOff = new Set<string>();
  if (targets.size === 0) return { msg, handedOff };
  const finals = (msg.mailboxes ?? msg.localRecipients).map(normalizeAddress);
  const handoffs: Array<{ mailbox: string; target: string }> = [];
  for (const mailbox of new Set(finals)) {
    const spec = targets.get(mailbox) ?? targets.get(domainOf(mailbox));
    if (spec !== undefined && spec.kind !== 'store') handoffs.push({ mailbox, target: formatTargetSpec(spec) });
  }
  if (handoffs.length === 0) return { msg, handedOff };
  const handed = new Set(handoffs.map((h) => h.mailbox));
  // Which RCPT each handed-off mailbox came from: the RCPT itself, or what the table resolves it to.
  const dsn: Record<string, RecipientDsn> = { ...(msg.recipientDsn ?? {}) };
  for (const rcpt of msg.localRecipients) {
    const key = normalizeAddress(rcpt);
    const boxes = msg.mailboxes === undefined || handed.has(key) ? [key] : store.resolveRecipient(rcpt, resolveOpts).mailboxes;
    const own = Object.hasOwn(msg.recipientDsn ?? {}, rcpt) ? msg.recipientDsn?.[rcpt] : undefined;
    for (const box of boxes) {
      if (!handed.has(box)) continue;
      handedOff.add(key);
      if (own !== undefined && !Object.hasOwn(dsn, box)) dsn[box] = box === key ? own : { notify: own.notify, orcpt: own.orcpt ?? `rfc822;${rcpt}` };
    }
  }
  return { msg: { ...msg, handoffs, recipientDsn: dsn }, handedOff };
}

function createRunner(cfg: ServeConfig, store: Store, localDomains: string[], logger: Logger, tlsRpt: TlsRptCounter | null, signGenerated: GeneratedSigner | null = null, targets: TargetRegistry | null = null, events: RunnerEvents | null = null): QueueRunner {
  const r = cfg.relay;
  let ca: string | null = null;
  if (r.ca) {
    try {
      ca = readFileSync(r.ca, 'utf8');
    } catch (err) {
      throw new ConfigError(`config: relay.ca = ${JSON.stringify(r.ca)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  const runner = new QueueRunner(
    store,
    // Every setting from the config schema; the runner has no defaults of its own.
    { hostname: cfg.hostname, localDomains, ...relayRunnerSettings(r, ca) },
    systemResolver(r.dns.length > 0 ? r.dns : undefined),
    logger,
    // The sending policy (policy/decide.ts): MTA-STS cached in the store, DANE, TLS-RPT counts.
    { ...policyLookups({ dns: r.dns, ca, mtaSts: r.mtaSts, dane: r.dane }, store), tlsRpt, signGenerated, targets, remote: r.enabled, events },
  );
  runner.start();
  return runner;
}
