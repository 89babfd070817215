/**
 * The config schema of `postseal serve`: every key with its type, default, meaning and flag. It is
 * the only place those are written: validation and defaults (engine.ts), serve's flags
 * (cli/serve.ts), the relay runner's settings (config.ts relayRunnerSettings) and the reference
 * docs/config.md (reference.ts; test/cli/config-reference.test.ts fails when it is stale) all
 * come from it.
 *
 * The TypeScript interfaces below are checked against the table: a key missing from the table,
 * or one the interfaces do not have, does not compile.
 */
import { totalmem } from 'node:os';
import { DEFAULT_MAX_PER_CONNECTION } from '../client/deliver.js';
import { TLS_LEVELS, type TlsLevel } from '../client/levels.js';
import type { AuthLimits, Limits } from '../server/types.js';
import { LISTENER_TLS_LEVELS, type ListenerTlsLevel } from '../types.js';
import { parseTargetSpec, TARGET_SYNTAX } from '../delivery/target-spec.js';
import { WEBHOOK_TIMEOUT_MS } from '../delivery/webhook.js';
import { BOUNCE_SIZE_LIMIT } from '../relay/bounce.js';
import { defaultNodeId } from '../store/sqlite-store.js';
import { PASSWORD_PLACES, STORE_SYNTAX } from '../store/spec.js';
import type { FlagSpec, Group, Leaf, Node, ValueType } from './engine.js';
import { bool, domain, domainOrStar, hostName, hostPort, hostPortOrNull, int, intOrNull, ms, oneOf, path, pathOrNull, pemPath, route, textOrNull } from './values.js';

export interface ListenerConfig {
  address: string;
  tls: ListenerTlsLevel;
  auth: 'none' | 'optional' | 'required';
  /** Connections this listener holds at once (its own cap, beside limits.maxConnections). */
  maxConnections: number;
}

export const LISTENER_NAMES = ['mx', 'submission', 'submissions'] as const;
export type ListenerName = (typeof LISTENER_NAMES)[number];

/** Outbound delivery of what authenticated users submit for other domains. */
export interface RelaySettings {
  enabled: boolean;
  /** domain (or '*' for a relayhost) → HOST:PORT[@NAME] (NAME: the certificate name), like Postfix transport maps. */
  routes: Record<string, string>;
  /** domain → outbound TLS level, like Postfix smtp_tls_policy_maps. */
  tlsPolicy: Record<string, TlsLevel>;
  defaultTls: TlsLevel;
  smtpPort: number;
  /** DNS servers (HOST:PORT) for MX, TLSA, MTA-STS lookups, whose AD bit is trusted; empty = the system's. */
  dns: string[];
  ca: string | null;
  /** MTA-STS as a sender (RFC 8461). */
  mtaSts: { enabled: boolean; endpoint: string | null };
  /** DANE for SMTP (RFC 7672). */
  dane: { enabled: boolean };
  /** TLS-RPT counting and reports (RFC 8460). */
  tlsRpt: {
    enabled: boolean;
    reports: boolean;
    intervalMs: number;
    organizationName: string | null;
    contactInfo: string | null;
    submitter: string | null;
    from: string | null;
  };
  intervalMs: number;
  concurrency: number;
  /** Lease of a claimed queue row, renewed while its delivery runs (issue 13). */
  leaseMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  maxQueueAgeMs: number;
  maxMessagesPerConnection: number;
  bounceSizeLimit: number;
}

export interface ServeConfig {
  dataDir: string;
  /** Where the store is (issue 13): null = SQLite in dataDir; else store/spec.ts's syntax. */
  store: { url: string | null; poolSize: number; passwordFile: string | null };
  /** This node (several nodes on one PostgreSQL store). */
  node: { id: string };
  hostname: string;
  domains: string[];
  listeners: { mx: ListenerConfig | null; submission: ListenerConfig | null; submissions: ListenerConfig | null };
  tls: {
    cert: string | null;
    key: string | null;
    /** More certificates, chosen by SNI from their SAN DNS names; an ECDSA and an RSA pair may share names. */
    certificates: Array<{ cert: string; key: string }>;
    minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
    selfSigned: boolean;
  };
  limits: Limits;
  bareLineEndings: 'reject' | 'normalize';
  log: { level: 'debug' | 'info' | 'warn' | 'error' | 'silent' };
  relay: RelaySettings;
  recipients: {
    catchAll: boolean;
    /** Sub-addressing: `alice+tag@D` goes to alice@D's mailbox; '' turns it off. */
    subaddressSeparator: string;
    /** Domains where any address is accepted into its own mailbox (per-domain catch-all). */
    catchAllDomains: string[];
  };
  received: { showAuthenticatedSender: boolean };
  auth: { verify: boolean; dmarcEnforce: boolean; spfHardFailReject: boolean; dnsTimeoutMs: number };
  dkim: { enabled: boolean; expirySeconds: number | null };
  arc: { sealDomains: string[] };
  delivery: DeliverySettings;
  http: HttpSettings;
}

/** The web console, JSON API, /metrics and health checks (issue 14, src/http/). */
export interface HttpSettings {
  /** HOST:PORT, or 'off'. Plain HTTP on a loopback address, HTTPS (the server's certificates) elsewhere. */
  address: string;
  /** The checker may probe private and loopback targets (SSRF guard off: an operator testing their own network). */
  checkPrivateTargets: boolean;
  /** /metrics, /healthz, /readyz answer clients that are not on loopback (default: loopback clients only). */
  publicProbes: boolean;
  /** A console session ends after this long without a request. */
  sessionIdleMs: number;
  /** Our own MTA-STS policy (RFC 8461 §3.2), served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (src/http/mta-sts.ts). */
  mtaSts: { enabled: boolean; mode: 'testing' | 'enforce'; maxAge: number; mx: string[] };
  /** The sender test (tls-test@DOMAIN on the mx listener: a report of how the sending server behaved; src/server/sender-test.ts). */
  senderTest: { enabled: boolean; localPart: string; repliesPerDomainPerHour: number; repliesPerIpPerHour: number };
}

/** Local delivery targets (issue 12, docs/delivery.md): where mail for local mailboxes goes. */
export interface DeliverySettings {
  /**
   * Local DOMAIN or full ADDRESS (a per-address override) → target spec text (delivery/target-spec.ts);
   * a domain with no entry keeps `store`. Keys lower-cased.
   */
  targets: Record<string, string>;
  webhook: {
    /** HMAC-SHA256 shared secret; required when a webhook target exists (also POSTSEAL_WEBHOOK_SECRET). */
    secret: string | null;
    format: 'raw' | 'json';
    timeoutMs: number;
  };
  /** TLS toward TCP LMTP peers; null: delivery/lmtp.ts defaultLmtpLevel (none on loopback, may elsewhere). */
  lmtp: { tls: 'none' | 'may' | 'encrypt' | 'verify' | null; ca: string | null };
}

/**
 * `store.url`: any one line of text here; store/spec.ts parseStoreSpec checks it when serve starts
 * (one parser, and its errors never echo a URL that carries a password, as a config error would).
 */
const storeUrl: ValueType<string | null> = {
  name: 'store URL or null',
  expected: `null (SQLite in dataDir), ${STORE_SYNTAX}`,
  parse: (v) => (v === null || (typeof v === 'string' && v.length > 0 && v.length <= 2000 && !/[\x00-\x1f\x7f]/.test(v)) ? { ok: true, value: v } : { ok: false }),
};

/** `node.id`: a name for leases and attempt records: letters, digits and . _ - (hostnames fit). */
const nodeId: ValueType<string> = {
  name: 'node id',
  expected: 'letters, digits and . _ - (1-128 characters, starting with a letter or digit)',
  parse: (v) => (typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(v) ? { ok: true, value: v } : { ok: false }),
};

/** The data directory of serve and of the commands that open its store (user, mailbox, queue). */
export const DEFAULT_DATA_DIR = './postseal-data';

/** `recipients.subaddressSeparator`: one separator character, or '' (off). */
const subaddressSeparator: ValueType<string> = {
  name: 'separator',
  expected: 'one of + - _ . = or "" (off)',
  parse: (v) => (typeof v === 'string' && /^[+\-_.=]?$/.test(v) ? { ok: true, value: v } : { ok: false }),
};

/** A `delivery.targets` key: a local domain, or one address (`local@domain`, a per-address override); lower-cased. */
const targetKey: ValueType<string> = {
  name: 'domain or address',
  expected: 'a domain or an address local@domain',
  parse: (v) => {
    if (typeof v !== 'string') return { ok: false };
    const at = v.lastIndexOf('@');
    if (at < 0) return domain.parse(v);
    const local = v.slice(0, at);
    const d = domain.parse(v.slice(at + 1));
    // The local part as the address table stores it: no blanks, controls or a second @ (RFC 5321 §4.1.2 dot-string or quoted, kept simple).
    if (!d.ok || local === '' || local.length > 64 || /[\s\x00-\x1f\x7f@<>]/.test(local)) return { ok: false };
    return { ok: true, value: `${local.toLowerCase()}@${d.value}` };
  },
};

/** A delivery target (`store`, `lmtp:HOST:PORT`, `lmtp:unix:PATH`, `maildir:DIR`, `webhook:URL`), checked by parseTargetSpec, kept as text. */
const targetSpec: ValueType<string> = {
  name: 'target',
  expected: TARGET_SYNTAX,
  parse: (v) => {
    if (typeof v !== 'string') return { ok: false };
    const r = parseTargetSpec(v);
    return r.ok ? { ok: true, value: v.trim() } : { ok: false, expected: r.problem };
  },
};

/** An `mx:` line of our MTA-STS policy: a host name or `*.domain` (RFC 8461 §3.2, §4.1). */
const mxPattern: ValueType<string> = {
  name: 'host or *.domain',
  expected: 'a host name or *.domain',
  parse: (v) => {
    if (typeof v !== 'string') return { ok: false };
    const p = v.toLowerCase().replace(/\.$/, '');
    // The pattern policy/mta-sts.ts parseStsPolicy accepts: what we serve must parse at every sender.
    return /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(p) && p.length <= 253 ? { ok: true, value: p } : { ok: false };
  },
};

/** `http.senderTest.localPart`: a dot-atom local part without the sub-address separator (RFC 5321 §4.1.2). */
const senderTestLocalPart: ValueType<string> = {
  name: 'local part',
  expected: 'letters, digits and - _ . (no +), 1-40 characters',
  parse: (v) => (typeof v === 'string' && /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v) && v.length <= 40 ? { ok: true, value: v.toLowerCase() } : { ok: false }),
};

/** `http.address`: HOST:PORT (port 0: any free port), or `off`. */
const httpAddress: ValueType<string> = {
  name: 'HOST:PORT or `off`',
  expected: `${hostPort().expected}, or off`,
  parse: (v) => (v === 'off' || v === false || v === null ? { ok: true, value: 'off' } : hostPort({ allowPortZero: true }).parse(v)),
};

const lmtpTls: ValueType<'none' | 'may' | 'encrypt' | 'verify' | null> = {
  name: 'none|may|encrypt|verify or null',
  expected: 'none, may, encrypt, verify or null (the default of delivery/lmtp.ts)',
  parse: (v) => (v === null || v === 'none' || v === 'may' || v === 'encrypt' || v === 'verify' ? { ok: true, value: v } : { ok: false }),
};

function leaf<T>(type: Leaf<T>['type'], dflt: T | (() => T), doc: string, more: Partial<Leaf<T>> = {}): Leaf<T> {
  return { kind: 'leaf', type, default: dflt, doc, ...more };
}

function group<T>(doc: string, fields: Group<T>['fields'], more: Partial<Group<T>> = {}): Group<T> {
  return { kind: 'group', doc, fields, ...more };
}

function flag(name: string, arg: string | undefined, help: string, more: Partial<FlagSpec> = {}): { flag: FlagSpec } {
  return { flag: { name, ...(arg !== undefined ? { arg } : {}), help, ...more } };
}

function listener(name: ListenerName, address: string, tls: ListenerTlsLevel, auth: ListenerConfig['auth'], maxConnections: number, doc: string, tlsFlag?: FlagSpec): Node<ListenerConfig | null> {
  return {
    kind: 'optional',
    doc: `${doc} \`"off"\` (or \`false\`, \`null\`) turns it off.`,
    ...flag(`--${name}`, '<addr|off>', `${name} listener address, or off`, { toJson: (t) => ({ ok: true, value: t === 'off' ? 'off' : { address: t } }) }),
    group: group<ListenerConfig>(`the ${name} listener`, {
      address: leaf(hostPort({ allowPortZero: true }), address, 'Address to listen on (port 0: any free port).'),
      tls: leaf(oneOf(LISTENER_TLS_LEVELS), tls, 'Inbound TLS: `none` (no STARTTLS), `may` (offered), `encrypt` (required before MAIL/AUTH), `implicit` (TLS from the first byte).', tlsFlag ? { flag: tlsFlag } : {}),
      auth: leaf(oneOf(['none', 'optional', 'required'] as const), auth, 'AUTH: `none` (not offered), `optional`, `required` (MAIL needs AUTH first).'),
      maxConnections: leaf(int(1, 1_000_000), maxConnections, 'Connections this listener holds at once (beside `limits.maxConnections`): a flood on one port never takes the others\' slots.'),
    }),
  };
}

const authLimits = group<AuthLimits>(
  'AUTH attempts: counting, delays, in-flight caps, client networks.',
  {
    maxFailures: leaf(int(1, 10_000_000), 5, 'Failed AUTH attempts per client network, and per account, within `windowMs` before delays start.'),
    windowMs: leaf(ms(1), 300_000, 'How long a failure is remembered.'),
    delayMs: leaf(ms(0), 1000, 'The first delay past `maxFailures`; it doubles with every further failure.'),
    maxDelayMs: leaf(ms(0), 30_000, 'Ceiling of the delay (at least `delayMs`).'),
    maxInFlightPerNetwork: leaf(int(1, 10_000_000), 4, 'AUTH attempts checked or waiting at once per client network (`454 4.7.0` beyond).'),
    maxInFlightPerAccount: leaf(int(1, 10_000_000), 2, 'The same per account name, from networks the account has not logged in from.'),
    ipv4Prefix: leaf(int(0, 32, 'bits'), 32, 'IPv4 clients are grouped per this prefix (32: per address).'),
    ipv6Prefix: leaf(int(0, 128, 'bits'), 64, 'IPv6 clients are grouped per this prefix (64: one host usually owns a /64).'),
    maxTrackedKeys: leaf(int(1, 10_000_000), 100_000, 'Upper bound on tracked networks, and separately on tracked accounts (memory bound).'),
  },
  { check: (a) => (a.maxDelayMs < a.delayMs ? { field: 'maxDelayMs', expected: `at least limits.auth.delayMs (${a.delayMs})` } : null) },
);

const BIG = Number.MAX_SAFE_INTEGER;

const limits = group<Limits>(
  'Limits for hostile clients (README "Limits").',
  {
    maxLineLength: leaf(int(512, BIG, 'bytes', 'RFC 5321 §4.5.3.1.4'), 2048, 'Longest command line in octets, CRLF excluded (`500 5.5.2` past it).'),
    maxMessageSize: leaf(int(1, BIG, 'bytes'), 35 * 1024 * 1024, 'Largest message (SIZE; `552 5.3.4`).'),
    maxRecipients: leaf(int(100, BIG, 'count', 'RFC 5321 §4.5.3.1.8'), 1000, 'Recipients per message (`452 4.5.3`).'),
    commandTimeoutMs: leaf(ms(1), 300_000, 'Waiting for a command; a command line must end within this of its first byte (RFC 5321 §4.5.3.2.7).'),
    dataTimeoutMs: leaf(ms(1), 300_000, 'Waiting for DATA/BDAT content.'),
    minDataRate: leaf(int(0, BIG, 'bytes/s'), 500, 'Slowest accepted content after `dataTimeoutMs` (Postfix smtpd_min_data_rate); 0: off.'),
    handshakeTimeoutMs: leaf(ms(1), 30_000, 'TLS handshake, absolute.'),
    maxConnections: leaf(int(1, BIG), 2000, 'Connections of all listeners together (`421 4.7.0`).'),
    maxConnectionsPerIp: leaf(int(1, BIG), 200, 'Connections per client: per IPv4 address, per IPv6 /64.'),
    spoolThreshold: leaf(int(1, BIG, 'bytes'), 256 * 1024, 'A body past this many bytes goes to a spool file as it arrives.'),
    // An eighth of the machine's memory, at most 256 MiB: 2000 sessions × 256 KiB would be 500 MiB.
    maxBodyMemory: leaf(int(1, BIG, 'bytes'), () => Math.min(256 * 1024 * 1024, Math.floor(totalmem() / 8)), 'Bytes of bodies all sessions together hold in memory; past it DATA/BDAT get `452 4.3.1`.', {
      defaultText: '⅛ of RAM, at most 268435456 (256 MiB)',
    }),
    maxErrors: leaf(int(1, BIG), 20, 'Client errors (4xx/5xx replies) before `421` and close (Postfix smtpd_hard_error_limit).'),
    greetingDelayMs: leaf(ms(0), 0, 'Wait before the greeting; a client talking first is refused (`554 5.5.0`). 0: off.'),
    auth: authLimits,
    shutdownGraceMs: leaf(ms(0), 30_000, 'How long transactions in flight may run after shutdown starts.'),
  },
  { replaced: { authFailures: 'limits.auth { maxFailures, windowMs, delayMs, maxDelayMs, maxInFlightPerNetwork, maxInFlightPerAccount, ipv4Prefix, ipv6Prefix, maxTrackedKeys }' } },
);

/** DOMAIN=VALUE from a repeatable flag (the map's key and value are checked by the map). */
function entry(valueName: string): FlagSpec['toJson'] {
  return (t) => {
    const eq = t.indexOf('=');
    return eq <= 0 ? { ok: false, expected: `DOMAIN=${valueName}` } : { ok: true, value: { [t.slice(0, eq)]: t.slice(eq + 1) } };
  };
}

const LEVEL_LIST = TLS_LEVELS.join('|');

const relay = group<RelaySettings>('Outbound delivery of mail authenticated users submit for other domains.', {
  enabled: leaf(bool, true, 'Deliver queued outbound mail.', flag('--no-relay', undefined, 'do not deliver queued outbound mail', { sets: false })),
  routes: {
    kind: 'map',
    key: domainOrStar,
    value: route,
    doc: 'Static routes, like Postfix transport maps: domain (or `*`, a relayhost) → `HOST:PORT`, or `HOST:PORT@NAME` / `{ "address": "HOST:PORT", "name": "NAME" }` where NAME is the name the certificate must carry (SNI and `verify`; default: HOST). A route bypasses MX, DANE and MTA-STS; its level is the TLS table entry or the default.',
    ...flag('--route', '<domain=host:port[@name]>', 'static route for outbound mail, * for a relayhost; @name: the certificate name to verify (repeatable)', { toJson: entry('HOST:PORT[@NAME]') }),
  },
  tlsPolicy: {
    kind: 'map',
    key: domainOrStar,
    value: oneOf(TLS_LEVELS),
    doc: 'Outbound TLS level per destination domain, like Postfix smtp_tls_policy_maps.',
    ...flag('--tls-policy', '<domain=level>', `outbound TLS level for a domain: ${LEVEL_LIST} (repeatable)`, { toJson: entry('LEVEL') }),
  },
  defaultTls: leaf(oneOf(TLS_LEVELS), 'may', 'Outbound TLS level for other domains (`may`: opportunistic, RFC 7435).', flag('--relay-tls', '<level>', `outbound TLS level for other domains: ${LEVEL_LIST}`)),
  smtpPort: leaf(int(1, 65535, 'port'), 25, 'Port for MX deliveries.', flag('--smtp-port', '<port>', 'port for MX deliveries')),
  dns: {
    kind: 'list',
    element: hostPort(),
    doc: 'DNS servers (HOST:PORT) for MX, address, TLSA and MTA-STS TXT lookups; their AD bit is trusted for DANE (RFC 6840 §5.7: use a validating resolver on a secure path); empty: the system\'s.',
    ...flag('--dns', '<host:port>', 'DNS server (validating: its AD bit is trusted) for MX/TLSA/MTA-STS lookups (repeatable)', { list: 'replace' }),
  },
  ca: leaf(pathOrNull, null, 'Extra trusted CA file (PEM) for `verify` and the MTA-STS policy fetch, besides the system roots.', flag('--relay-ca', '<file>', 'extra trusted CA (PEM) for outbound verify and the MTA-STS HTTPS fetch')),
  mtaSts: group<RelaySettings['mtaSts']>('MTA-STS as a sender (RFC 8461): policies fetched over HTTPS, cached in the store.', {
    enabled: leaf(bool, true, 'Look up and apply MTA-STS policies (false: kill-switch, the policy cache is left alone).', flag('--no-mta-sts', undefined, 'do not look up or apply MTA-STS policies', { sets: false })),
    endpoint: leaf(hostPortOrNull(), null, 'Fetch every policy from this HOST:PORT instead of mta-sts.DOMAIN:443 (tests only; the Host header and certificate name stay mta-sts.DOMAIN).', flag('--mta-sts-endpoint', '<host:port>', 'fetch every MTA-STS policy from here (tests only)')),
  }),
  dane: group<RelaySettings['dane']>('DANE for SMTP (RFC 7672): TLSA records from the DNS servers of `relay.dns`, secure only with the AD bit.', {
    enabled: leaf(bool, true, 'Look up TLSA and apply DANE (false: kill-switch).', flag('--no-dane', undefined, 'do not look up TLSA or apply DANE', { sets: false })),
  }),
  tlsRpt: group<RelaySettings['tlsRpt']>('TLS-RPT (RFC 8460): every attempt counted per policy domain, in the store.', {
    enabled: leaf(bool, true, 'Count attempts for TLS-RPT (false: kill-switch).', flag('--no-tls-rpt', undefined, 'do not count attempts for TLS-RPT', { sets: false })),
    reports: leaf(bool, true, 'Make a report per policy domain and day, and send it to the `rua` of its `_smtp._tls` record (mailto: through the queue, https: as a POST).'),
    intervalMs: leaf(int(60_000, 2 ** 31 - 1, 'ms'), 3_600_000, 'How often finished days are reported and failed report deliveries retried.'),
    organizationName: leaf(textOrNull, null, 'organization-name of the reports (RFC 8460 §4.4); null: the hostname.'),
    contactInfo: leaf(textOrNull, null, 'contact-info of the reports; null: postmaster@hostname.'),
    submitter: leaf(textOrNull, null, 'TLS-Report-Submitter and the report file names (§5.1, §5.3); null: the hostname.'),
    from: leaf(textOrNull, null, 'Sender of mailto: reports; null: postmaster@hostname.'),
  }),
  intervalMs: leaf(int(1, 2 ** 31 - 1, 'ms'), 30_000, 'How often the queue is looked at for due messages.'),
  concurrency: leaf(int(1, 1000), 8, 'Parallel deliveries.'),
  leaseMs: leaf(
    int(5_000, 2 ** 31 - 1, 'ms'),
    60_000,
    'How long a node holds a queue row it claimed for delivery; renewed every third of it while the delivery runs. A node that dies loses its rows to the other nodes after this long (shared store); too short for a stalled process or store and a message may be delivered twice (at-least-once).',
  ),
  minBackoffMs: leaf(int(1, 2 ** 31 - 1, 'ms'), 5 * 60_000, 'First retry delay (Postfix minimal_backoff_time); it doubles per attempt.'),
  maxBackoffMs: leaf(int(1, 2 ** 31 - 1, 'ms'), 4 * 3600_000, 'Longest retry delay (maximal_backoff_time).'),
  maxQueueAgeMs: leaf(int(1, 2 ** 31 - 1, 'ms'), 5 * 86_400_000, 'A message older than this is bounced instead of retried (RFC 5321 §4.5.4.1: 4–5 days).'),
  maxMessagesPerConnection: leaf(int(1, 1000), DEFAULT_MAX_PER_CONNECTION, 'Messages sent over one connection to one destination before a new one (1: no reuse).'),
  bounceSizeLimit: leaf(int(0, BIG, 'bytes', 'RFC 3461 §4.3'), BOUNCE_SIZE_LIMIT, 'Largest original returned whole in a RET=FULL bounce (Postfix bounce_size_limit); a larger one is returned as its headers only (text/rfc822-headers).'),
});

export const SCHEMA: Group<ServeConfig> = group<ServeConfig>('postseal serve', {
  dataDir: leaf(path, DEFAULT_DATA_DIR, 'Data directory: the database, spooled bodies, the self-signed certificate.', flag('--data', '<dir>', 'data directory (database, self-signed certificate)')),
  store: group<ServeConfig['store']>('where the store is (docs: README "Several nodes"): SQLite in the data directory (default), or PostgreSQL shared by several nodes', {
    url: leaf(storeUrl, null, `null: the SQLite store in \`dataDir\`. Else \`postgres://USER@HOST:PORT/DB\` (several nodes share it; the data directory stays this node's: spool, DKIM keys, certificates) or \`sqlite:DIR\`. A URL with a password is refused: the password goes in ${PASSWORD_PLACES}. The environment variable \`POSTSEAL_STORE\` overrides this key, \`--store\` overrides both.`, flag('--store', '<url>', 'the store: postgres://USER@HOST:PORT/DB (password from PGPASSWORD or store.passwordFile) or sqlite:DIR; default: SQLite in the data directory')),
    poolSize: leaf(int(1, 1000), 10, 'PostgreSQL: connections in this node\'s pool.'),
    passwordFile: leaf(pathOrNull, null, 'PostgreSQL: a file holding the password (read once at start, trimmed); null: `PGPASSWORD` or `~/.pgpass`.'),
  }),
  node: group<ServeConfig['node']>('this node', {
    id: leaf(nodeId, defaultNodeId, 'Who this node is in queue leases and attempt records; two live nodes on one PostgreSQL store must not share it.', { defaultText: 'HOSTNAME-PID' }),
  }),
  hostname: leaf(hostName, 'localhost', 'Our name in the greeting, EHLO and Received headers.', flag('--hostname', '<name>', 'name in the greeting, EHLO and Received headers')),
  domains: { kind: 'list', element: domain, doc: 'Local domains (besides `hostname` and localhost): mail for them goes to mailboxes.', ...flag('--domain', '<domain>', 'a local domain (repeatable)', { list: 'append' }) },
  listeners: group<ServeConfig['listeners']>('the listeners', {
    // Each listener has its own cap below the total, so a flood on the public mx port never
    // locks authenticated users out of submission.
    mx: listener('mx', '127.0.0.1:2525', 'may', 'none', 1500, 'The MX listener (port 25 in production).', {
      name: '--mx-tls',
      arg: '<level>',
      help: 'TLS level of the mx listener: none|may|encrypt',
      type: oneOf(['none', 'may', 'encrypt'] as const),
    }),
    submission: listener('submission', '127.0.0.1:2587', 'encrypt', 'required', 500, 'The submission listener (port 587: STARTTLS then AUTH).', {
      name: '--submission-tls',
      arg: '<level>',
      help: `TLS level of the submission listener: ${LISTENER_TLS_LEVELS.join('|')}`,
    }),
    submissions: listener('submissions', '127.0.0.1:2465', 'implicit', 'required', 500, 'The implicit-TLS submission listener (port 465, RFC 8314).'),
  }),
  tls: group<ServeConfig['tls']>('certificates and the TLS floor', {
    cert: leaf(pathOrNull, null, 'Certificate PEM (chain after the leaf); goes with `tls.key`.', flag('--cert', '<file>', 'certificate PEM (chain after the leaf)')),
    key: leaf(pathOrNull, null, 'Private key PEM; goes with `tls.cert`.', flag('--key', '<file>', 'private key PEM')),
    certificates: {
      kind: 'list',
      element: group<{ cert: string; key: string }>('one certificate and its key', {
        cert: leaf(pemPath, '', 'Certificate PEM.', { required: true }),
        key: leaf(pemPath, '', 'Its private key PEM.', { required: true }),
      }),
      doc: 'More certificates `[{ "cert", "key" }]`, chosen by SNI from their SAN DNS names; an ECDSA and an RSA pair may cover the same names.',
      ...flag('--cert-pair', '<cert:key>', 'one more certificate and its key, served to clients whose SNI names one of its SAN DNS names; ECDSA and RSA for the same names may both be given (repeatable)', {
        list: 'append',
        toJson: (t) => {
          const [cert, key, ...rest] = t.split(':');
          return rest.length === 0 && cert && key ? { ok: true, value: { cert, key } } : { ok: false, expected: "CERT:KEY (two PEM file paths; for paths containing ':' use tls.certificates in the config file)" };
        },
      }),
    },
    minVersion: leaf(oneOf(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const), 'TLSv1.2', 'Oldest TLS version accepted.'),
    selfSigned: leaf(bool, true, 'Without a certificate, make a self-signed one in the data directory (development); false: no TLS at all (STARTTLS answers 454).'),
  }),
  limits,
  bareLineEndings: leaf(oneOf(['reject', 'normalize'] as const), 'reject', 'Bare CR or LF in content (`550 5.6.0`) and command lines ending in a bare LF (`500 5.5.2`, closed): `reject`, or `normalize` to CRLF.', flag('--bare-line-endings', '<mode>', 'reject or normalize bare CR/LF in messages')),
  log: group<ServeConfig['log']>('logging', { level: leaf(oneOf(['debug', 'info', 'warn', 'error', 'silent'] as const), 'info', 'Log level (JSON lines on stderr).', flag('--log-level', '<level>', 'debug|info|warn|error|silent')) }),
  relay,
  recipients: group<ServeConfig['recipients']>('local recipients', {
    catchAll: leaf(bool, false, 'Accept mail for any address at a local domain (default: users and postmaster only).', flag('--catch-all', undefined, 'accept mail for any address at a local domain', { sets: true })),
    subaddressSeparator: leaf(subaddressSeparator, '+', 'Sub-addressing: `alice+tag@domain` is delivered to the mailbox of `alice@domain` (the tag stays only in the envelope); one of `+ - _ . =`, or `""` to turn it off.', flag('--subaddress-separator', '<char>', 'sub-address separator (alice+tag@), "" = off')),
    catchAllDomains: { kind: 'list', element: domain, doc: 'Local domains where any address is accepted, each into the mailbox of the address as given (per-domain catch-all; off by default). Users, aliases and the `@domain` catch-all alias come first.', ...flag('--catch-all-domain', '<domain>', 'accept any address at this local domain (repeatable)', { list: 'append' }) },
  }),
  received: group<ServeConfig['received']>('our Received header', {
    showAuthenticatedSender: leaf(bool, true, 'Write `(Authenticated sender: login)`, as Postfix does.'),
  }),
  auth: group<ServeConfig['auth']>('verification of mail received on the mx listener (SPF, DKIM, DMARC, ARC; DNS through `relay.dns`)', {
    verify: leaf(bool, true, 'Verify SPF, DKIM, DMARC and ARC of mail received on the mx listener, add our `Authentication-Results` (RFC 8601) and store the verdicts; bodies spooled to disk are verified too, read as a stream from the spool file (forged `Authentication-Results` claiming our name are overwritten in place as `X-Removed-AR`). The whole verification has a 10 s deadline.', flag('--no-auth-verify', undefined, 'do not verify SPF/DKIM/DMARC/ARC of received mail', { sets: false })),
    dmarcEnforce: leaf(bool, false, 'Refuse DMARC failures of `p=reject` domains with `550 5.7.1` at the end of DATA; `p=quarantine` failures are stored with the quarantine flag (RFC 7489 §6.3).'),
    spfHardFailReject: leaf(bool, false, 'Refuse an SPF `fail` (`-all`) with `550 5.7.1` (RFC 7208 §8.4); off, as most operators run it.'),
    dnsTimeoutMs: leaf(ms(1), 3000, 'Deadline of each DNS question the verifier asks; past it that mechanism (SPF, a DKIM key, DMARC) is `temperror`.'),
  }),
  dkim: group<ServeConfig['dkim']>('DKIM signing of submitted mail (keys: `postseal dkim keygen`)', {
    enabled: leaf(bool, true, 'Sign mail of authenticated users with the active keys of its From domain (data directory `dkim/`); a domain without keys is not signed.'),
    expirySeconds: leaf(intOrNull(60, 10 * 365 * 86_400, 'count'), null, 'Signatures expire this many seconds after signing (`x=`, RFC 6376 §3.5); null: no `x=`.'),
  }),
  arc: group<ServeConfig['arc']>('ARC sealing (RFC 8617) of mail that local aliases forward to other hosts', {
    sealDomains: { kind: 'list', element: domain, doc: 'Local domains whose forwarded mail is ARC-sealed (`d=` that domain) with its active DKIM key (`postseal dkim keygen`; RSA when the domain has RSA and Ed25519, since few ARC validators check Ed25519). Sealed once, when the mx listener accepts the message, after verification (`cv=` is our ARC verdict; needs `auth.verify`); a chain that already ends in `cv=fail`, or has 50 instances, is not sealed. Default: none.', ...flag('--arc-seal-domain', '<domain>', 'ARC-seal mail that aliases of this local domain forward (repeatable)', { list: 'append' }) },
  }),
  delivery: group<DeliverySettings>('local delivery targets (docs/delivery.md): mail for local mailboxes handed on from the durable queue, with retries', {
    targets: {
      kind: 'map',
      key: targetKey,
      value: targetSpec,
      doc: 'Local domain, or one address (a per-address override, which wins over its domain), → delivery target: `store` (the built-in mailbox, the default for a domain with no entry), `lmtp:HOST:PORT`, `lmtp:unix:PATH`, `maildir:DIR` or `webhook:URL`. Mail for the other targets is acknowledged once queued and handed on by the queue runner (retries with the relay backoff; `postseal queue` lists it).',
      ...flag('--deliver', '<domain=target>', `delivery target of a local domain or address: ${TARGET_SYNTAX} (repeatable)`, { toJson: (t) => {
        const eq = t.indexOf('=');
        return eq <= 0 ? { ok: false, expected: `DOMAIN=TARGET (TARGET: ${TARGET_SYNTAX})` } : { ok: true, value: { [t.slice(0, eq).trim()]: t.slice(eq + 1) } };
      } }),
    },
    webhook: group<DeliverySettings['webhook']>('webhook targets', {
      secret: leaf(textOrNull, null, 'Shared secret of the HMAC-SHA256 signature (`X-Postseal-Signature`); required when a webhook target exists (serve refuses to start without it). Also read from the environment variable `POSTSEAL_WEBHOOK_SECRET` when not set here.'),
      format: leaf(oneOf(['raw', 'json'] as const), 'raw', 'Body of the POST: `raw` (message/rfc822, the message as stored) or `json` (envelope, headers, TLS facts, authentication results, the message in base64).'),
      timeoutMs: leaf(ms(1), WEBHOOK_TIMEOUT_MS, 'Deadline of one call (connect to the last byte of the answer); past it the delivery is deferred.'),
    }),
    lmtp: group<DeliverySettings['lmtp']>('LMTP targets', {
      tls: leaf(lmtpTls, null, 'TLS level toward a TCP LMTP server: `none`, `may`, `encrypt`, `verify`; null: `none` for a Unix socket or a loopback host, `may` otherwise.'),
      ca: leaf(pathOrNull, null, 'Trusted CA file (PEM) for `verify` toward LMTP servers (replaces the system roots).'),
    }),
  }),
  http: group<HttpSettings>('the web console, JSON API (`/api/v1`), `/metrics`, `/healthz`, `/readyz` (docs: README "Web console")', {
    address: leaf(httpAddress, '127.0.0.1:8025', 'Address of the console and API: plain HTTP on a loopback address, HTTPS with the server\'s certificates (`tls`) on any other; `off`: no HTTP listener. Port 0: any free port. A port already in use stops serve at start (exit 1).', flag('--http', '<addr|off>', 'web console and API address (HTTPS when not loopback), or off')),
    checkPrivateTargets: leaf(bool, false, 'Let the web checker probe private, loopback and link-local targets (SSRF guard off, for an operator testing their own network).', flag('--http-check-private', undefined, 'let the web checker probe private and loopback targets', { sets: true })),
    publicProbes: leaf(bool, false, '`/metrics`, `/healthz` and `/readyz` need no login; by default they answer loopback clients only (403 to others). true: answer every client (behind a firewall or a scraper network).'),
    sessionIdleMs: leaf(ms(60_000), 30 * 60_000, 'A console login session ends after this long without a request.'),
    mtaSts: group<HttpSettings['mtaSts']>('our own MTA-STS policy (RFC 8461), served for every local domain at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (the certificate must cover mta-sts.DOMAIN; `postseal dns-records DOMAIN` prints the matching `_mta-sts` TXT)', {
      enabled: leaf(bool, false, 'Serve the policy (GET /.well-known/mta-sts.txt with Host mta-sts.DOMAIN, no login; over HTTPS only when `http.address` is not loopback, RFC 8461 §3.3).'),
      mode: leaf(oneOf(['testing', 'enforce'] as const), 'testing', '`testing` (senders report, deliver anyway) or `enforce` (senders require a verified TLS session to a listed MX).'),
      // RFC 8461 §3.2: max_age at most 31557600; "typically ... weeks or greater".
      maxAge: leaf(int(1, 31_557_600, 'count', 'RFC 8461 §3.2'), 604_800, 'max_age in seconds (how long senders cache the policy).'),
      mx: { kind: 'list', element: mxPattern, doc: 'The mx: lines (host names or `*.domain`); empty: `hostname`.' },
    }),
    senderTest: group<HttpSettings['senderTest']>('the sender test: mail to LOCALPART@DOMAIN on the mx listener gets a report of how the sending server behaved (TLS version, cipher, SNI, EHLO, pipelining), at /sender-test/ID and as an automatic reply', {
      enabled: leaf(bool, false, 'Accept mail to the test address of every local domain and answer it (only to senders that passed SPF or DKIM).'),
      localPart: leaf(senderTestLocalPart, 'tls-test', 'The test address local part; `LOCALPART+badcert` and `LOCALPART+nostarttls` are the hostile variants.'),
      repliesPerDomainPerHour: leaf(int(1, 1_000_000), 10, 'Automatic replies per envelope sender domain and hour.'),
      repliesPerIpPerHour: leaf(int(1, 1_000_000), 10, 'Automatic replies per client IP address and hour.'),
    }),
  }),
});
