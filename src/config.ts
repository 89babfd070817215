/**
 * One typed configuration for `postseal serve`, from defaults, then a JSON config file, then
 * command-line flags. Every key is checked; a bad key or value is refused at start with a message
 * naming it (ConfigError).
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { ConfigError } from './errors.js';
import { DEFAULT_LIMITS, type AuthLimits, type Limits } from './server/types.js';
import { LISTENER_TLS_LEVELS, type ListenerTlsLevel } from './types.js';

export interface ListenerConfig {
  address: string;
  tls: ListenerTlsLevel;
  auth: 'none' | 'optional' | 'required';
  /** Connections this listener holds at once (its own cap, beside limits.maxConnections). */
  maxConnections: number;
}

export interface ServeConfig {
  dataDir: string;
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
  /** catchAll: accept mail for any address at a local domain (default false: users only). */
  recipients: { catchAll: boolean };
  /** showAuthenticatedSender: "(Authenticated sender: login)" in Received (default true). */
  received: { showAuthenticatedSender: boolean };
}

/** Outbound delivery of what authenticated users submit for other domains (issue 3 item 4). */
export interface RelaySettings {
  enabled: boolean;
  /** domain (or '*' for a relayhost) → HOST:PORT, like Postfix transport maps. */
  routes: Record<string, string>;
  /** domain → none|may|encrypt|verify, like Postfix smtp_tls_policy_maps. */
  tlsPolicy: Record<string, 'none' | 'may' | 'encrypt' | 'verify'>;
  defaultTls: 'none' | 'may' | 'encrypt' | 'verify';
  /** Port for MX deliveries. */
  smtpPort: number;
  /** DNS servers (HOST:PORT) for MX lookups; empty = the system's. */
  dns: string[];
  /** Extra trusted CA file (PEM) for `verify`. */
  ca: string | null;
  intervalMs: number;
  concurrency: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  maxQueueAgeMs: number;
  /** Messages sent over one connection to one destination before a new one (1 = no reuse). */
  maxMessagesPerConnection: number;
}

const OUT_LEVELS = ['none', 'may', 'encrypt', 'verify'] as const;

export const LISTENER_NAMES = ['mx', 'submission', 'submissions'] as const;
export type ListenerName = (typeof LISTENER_NAMES)[number];

export function defaultConfig(): ServeConfig {
  const hostname = 'localhost';
  return {
    dataDir: './postseal-data',
    hostname,
    domains: [],
    listeners: {
      // Each listener has its own cap below the total, so a flood on the public mx port never
      // locks authenticated users out of submission.
      mx: { address: '127.0.0.1:2525', tls: 'may', auth: 'none', maxConnections: 1500 },
      submission: { address: '127.0.0.1:2587', tls: 'encrypt', auth: 'required', maxConnections: 500 },
      submissions: { address: '127.0.0.1:2465', tls: 'implicit', auth: 'required', maxConnections: 500 },
    },
    tls: { cert: null, key: null, certificates: [], minVersion: 'TLSv1.2', selfSigned: true },
    limits: { ...DEFAULT_LIMITS, auth: { ...DEFAULT_LIMITS.auth } },
    bareLineEndings: 'reject',
    log: { level: 'info' },
    recipients: { catchAll: false },
    received: { showAuthenticatedSender: true },
    relay: {
      enabled: true,
      routes: {},
      tlsPolicy: {},
      defaultTls: 'may',
      smtpPort: 25,
      dns: [],
      ca: null,
      intervalMs: 30_000,
      concurrency: 8,
      minBackoffMs: 5 * 60_000,
      maxBackoffMs: 4 * 3600_000,
      maxQueueAgeMs: 5 * 86_400_000,
      maxMessagesPerConnection: 100,
    },
  };
}

/** The machine's name is not a safe default (it may not resolve); users set --hostname. */
export function systemHostname(): string {
  return osHostname();
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function want<T>(ok: boolean, key: string, value: unknown, expected: string): asserts ok {
  if (!ok) throw new ConfigError(`config: ${key} = ${JSON.stringify(value)} is not valid: expected ${expected}`);
  void (undefined as T | undefined);
}

export function parseAddress(text: string, key: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  want(m !== null && port >= 0 && port <= 65535, key, text, 'HOST:PORT (e.g. 127.0.0.1:2525, [::1]:25)');
  return { host: (m?.[1] ?? m?.[2]) as string, port };
}

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const MIN_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
/** Largest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function checkKeys(obj: Record<string, Json>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(`config: unknown key ${where}${k} (allowed: ${allowed.join(', ')})`);
  }
}

function listener(v: Json, key: string, base: ListenerConfig | null): ListenerConfig | null {
  if (v === null || v === 'off' || v === false) return null;
  want(isObject(v), key, v, 'an object { address, tls, auth, maxConnections } or "off"');
  checkKeys(v, ['address', 'tls', 'auth', 'maxConnections'], key + '.');
  const out: ListenerConfig = { ...(base ?? { address: '127.0.0.1:0', tls: 'may', auth: 'none', maxConnections: 500 }) };
  if (v.maxConnections !== undefined) {
    const n = v.maxConnections;
    want(typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 1_000_000, key + '.maxConnections', n, 'a whole number from 1 to 1000000');
    out.maxConnections = n;
  }
  if (v.address !== undefined) {
    want(typeof v.address === 'string', key + '.address', v.address, 'a string HOST:PORT');
    parseAddress(v.address, key + '.address');
    out.address = v.address;
  }
  if (v.tls !== undefined) {
    want(typeof v.tls === 'string' && (LISTENER_TLS_LEVELS as readonly string[]).includes(v.tls), key + '.tls', v.tls, LISTENER_TLS_LEVELS.join('|'));
    out.tls = v.tls as ListenerTlsLevel;
  }
  if (v.auth !== undefined) {
    want(v.auth === 'none' || v.auth === 'optional' || v.auth === 'required', key + '.auth', v.auth, 'none|optional|required');
    out.auth = v.auth;
  }
  return out;
}

/** Applies a parsed JSON document onto a config; throws ConfigError naming the bad key. */
export function applyConfigObject(cfg: ServeConfig, doc: unknown): ServeConfig {
  want(isObject(doc), '(top level)', doc, 'a JSON object');
  checkKeys(doc, ['dataDir', 'hostname', 'domains', 'listeners', 'tls', 'limits', 'bareLineEndings', 'log', 'relay', 'recipients', 'received'], '');
  const out: ServeConfig = structuredClone(cfg);
  if (doc.dataDir !== undefined) {
    want(typeof doc.dataDir === 'string' && doc.dataDir.length > 0, 'dataDir', doc.dataDir, 'a directory path');
    out.dataDir = doc.dataDir;
  }
  if (doc.hostname !== undefined) {
    want(typeof doc.hostname === 'string' && /^[A-Za-z0-9.-]{1,253}$/.test(doc.hostname), 'hostname', doc.hostname, 'a host name');
    out.hostname = doc.hostname;
  }
  if (doc.domains !== undefined) {
    const d = doc.domains;
    want(Array.isArray(d) && d.every((x) => typeof x === 'string' && /^[A-Za-z0-9.-]{1,253}$/.test(x)), 'domains', d, 'a list of domain names');
    out.domains = (d as string[]).map((x) => x.toLowerCase());
  }
  if (doc.listeners !== undefined) {
    const l = doc.listeners;
    want(isObject(l), 'listeners', l, 'an object with mx, submission, submissions');
    checkKeys(l, LISTENER_NAMES, 'listeners.');
    for (const name of LISTENER_NAMES) {
      if (l[name] !== undefined) out.listeners[name] = listener(l[name] ?? null, `listeners.${name}`, out.listeners[name]);
    }
  }
  if (doc.tls !== undefined) {
    const t = doc.tls;
    want(isObject(t), 'tls', t, 'an object { cert, key, certificates, minVersion }');
    checkKeys(t, ['cert', 'key', 'certificates', 'minVersion', 'selfSigned'], 'tls.');
    if (t.certificates !== undefined) {
      const list = t.certificates;
      want(Array.isArray(list), 'tls.certificates', list, 'a list of { cert, key } (PEM file paths)');
      out.tls.certificates = list.map((entry, i) => {
        const key = `tls.certificates[${i}]`;
        want(isObject(entry), key, entry, 'an object { cert, key } (PEM file paths)');
        checkKeys(entry, ['cert', 'key'], key + '.');
        // A certificate without its key (or the reverse) is refused here, naming the missing half.
        for (const half of ['cert', 'key'] as const) {
          const v: Json | undefined = entry[half];
          want(typeof v === 'string' && v.length > 0, `${key}.${half}`, v ?? null, 'a PEM file path (cert and key go together)');
        }
        return { cert: entry.cert as string, key: entry.key as string };
      });
    }
    if (t.selfSigned !== undefined) {
      want(typeof t.selfSigned === 'boolean', 'tls.selfSigned', t.selfSigned, 'true|false');
      out.tls.selfSigned = t.selfSigned;
    }
    for (const k of ['cert', 'key'] as const) {
      if (t[k] !== undefined) {
        want(t[k] === null || typeof t[k] === 'string', `tls.${k}`, t[k], 'a PEM file path');
        out.tls[k] = t[k] as string | null;
      }
    }
    if (t.minVersion !== undefined) {
      want(typeof t.minVersion === 'string' && (MIN_VERSIONS as readonly string[]).includes(t.minVersion), 'tls.minVersion', t.minVersion, MIN_VERSIONS.join('|'));
      out.tls.minVersion = t.minVersion as ServeConfig['tls']['minVersion'];
    }
  }
  if (doc.limits !== undefined) {
    const lim = doc.limits;
    want(isObject(lim), 'limits', lim, 'an object');
    // Replaced by limits.auth (issue 8 item 3): say so instead of only "unknown key".
    if (lim.authFailures !== undefined) throw new ConfigError('config: limits.authFailures was replaced by limits.auth { maxFailures, windowMs, delayMs, maxDelayMs, maxInFlightPerNetwork, maxInFlightPerAccount, ipv4Prefix, ipv6Prefix, maxTrackedKeys }');
    checkKeys(lim, Object.keys(DEFAULT_LIMITS), 'limits.');
    for (const [k, v] of Object.entries(lim)) {
      if (k === 'auth') {
        out.limits.auth = applyAuthLimits(out.limits.auth, v);
        continue;
      }
      // Counts and timeouts of 0 would refuse everything or fire at once; delays and grace may be 0.
      const min = k === 'greetingDelayMs' || k === 'shutdownGraceMs' || k === 'minDataRate' ? 0 : 1;
      // Node clamps a timer over 2^31-1 ms to 1 ms (TimeoutOverflowWarning): refuse it instead.
      const max = k.endsWith('Ms') ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER;
      want(typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max, `limits.${k}`, v, `a whole number from ${min} to ${max}`);
      (out.limits as unknown as Record<string, number>)[k] = v;
    }
    // RFC 5321 §4.5.3.1.8 and §4.5.3.1.4 floors.
    want(out.limits.maxRecipients >= 100, 'limits.maxRecipients', out.limits.maxRecipients, 'at least 100 (RFC 5321 §4.5.3.1.8)');
    want(out.limits.maxLineLength >= 512, 'limits.maxLineLength', out.limits.maxLineLength, 'at least 512 (RFC 5321 §4.5.3.1.4)');
  }
  if (doc.bareLineEndings !== undefined) {
    want(doc.bareLineEndings === 'reject' || doc.bareLineEndings === 'normalize', 'bareLineEndings', doc.bareLineEndings, 'reject|normalize');
    out.bareLineEndings = doc.bareLineEndings;
  }
  if (doc.log !== undefined) {
    want(isObject(doc.log), 'log', doc.log, 'an object { level }');
    checkKeys(doc.log, ['level'], 'log.');
    const lv = doc.log.level;
    if (lv !== undefined) {
      want(typeof lv === 'string' && (LEVELS as readonly string[]).includes(lv), 'log.level', lv, LEVELS.join('|'));
      out.log.level = lv as ServeConfig['log']['level'];
    }
  }
  if (doc.relay !== undefined) out.relay = applyRelay(out.relay, doc.relay);
  if (doc.recipients !== undefined) {
    want(isObject(doc.recipients), 'recipients', doc.recipients, 'an object { catchAll }');
    checkKeys(doc.recipients, ['catchAll'], 'recipients.');
    const c = doc.recipients.catchAll;
    if (c !== undefined) {
      want(typeof c === 'boolean', 'recipients.catchAll', c, 'true|false');
      out.recipients.catchAll = c;
    }
  }
  if (doc.received !== undefined) {
    want(isObject(doc.received), 'received', doc.received, 'an object { showAuthenticatedSender }');
    checkKeys(doc.received, ['showAuthenticatedSender'], 'received.');
    const v = doc.received.showAuthenticatedSender;
    if (v !== undefined) {
      want(typeof v === 'boolean', 'received.showAuthenticatedSender', v, 'true|false');
      out.received.showAuthenticatedSender = v;
    }
  }
  return out;
}

const AUTH_LIMIT_KEYS = Object.keys(DEFAULT_LIMITS.auth) as Array<keyof AuthLimits>;

function applyAuthLimits(base: AuthLimits, v: Json): AuthLimits {
  want(isObject(v), 'limits.auth', v, `an object { ${AUTH_LIMIT_KEYS.join(', ')} }`);
  checkKeys(v, AUTH_LIMIT_KEYS, 'limits.auth.');
  const out = { ...base };
  for (const f of AUTH_LIMIT_KEYS) {
    const n: Json | undefined = v[f];
    if (n === undefined) continue;
    // Prefixes are bit counts; a delay may be 0 (no delay, the in-flight caps still hold).
    const [min, max] = f === 'ipv4Prefix' ? [0, 32] : f === 'ipv6Prefix' ? [0, 128] : f === 'delayMs' || f === 'maxDelayMs' ? [0, MAX_TIMER_MS] : [1, f === 'windowMs' ? MAX_TIMER_MS : 10_000_000];
    want(typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max, `limits.auth.${f}`, n, `a whole number from ${min} to ${max}`);
    out[f] = n;
  }
  want(out.maxDelayMs >= out.delayMs, 'limits.auth.maxDelayMs', out.maxDelayMs, `at least limits.auth.delayMs (${out.delayMs})`);
  return out;
}

export function loadConfigFile(file: string, base: ServeConfig = defaultConfig()): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config: ${file} is not valid JSON: ${(err as Error).message}`);
  }
  return applyConfigObject(base, doc);
}

const DOMAIN_OR_STAR = /^(\*|[A-Za-z0-9.-]{1,253})$/;

function applyRelay(base: RelaySettings, r: Json): RelaySettings {
  want(isObject(r), 'relay', r, 'an object');
  checkKeys(r, Object.keys(base), 'relay.');
  const out: RelaySettings = structuredClone(base);
  if (r.enabled !== undefined) {
    want(typeof r.enabled === 'boolean', 'relay.enabled', r.enabled, 'true|false');
    out.enabled = r.enabled;
  }
  if (r.routes !== undefined) {
    want(isObject(r.routes), 'relay.routes', r.routes, 'an object { domain: "HOST:PORT" }');
    for (const [d, a] of Object.entries(r.routes)) {
      want(DOMAIN_OR_STAR.test(d), `relay.routes.${d}`, d, 'a domain or *');
      want(typeof a === 'string', `relay.routes.${d}`, a, 'HOST:PORT');
      parseAddress(a, `relay.routes.${d}`);
      out.routes[d.toLowerCase()] = a;
    }
  }
  if (r.tlsPolicy !== undefined) {
    want(isObject(r.tlsPolicy), 'relay.tlsPolicy', r.tlsPolicy, 'an object { domain: level }');
    for (const [d, l] of Object.entries(r.tlsPolicy)) {
      want(DOMAIN_OR_STAR.test(d), `relay.tlsPolicy.${d}`, d, 'a domain');
      want(typeof l === 'string' && (OUT_LEVELS as readonly string[]).includes(l), `relay.tlsPolicy.${d}`, l, OUT_LEVELS.join('|'));
      out.tlsPolicy[d.toLowerCase()] = l as RelaySettings['defaultTls'];
    }
  }
  if (r.defaultTls !== undefined) {
    want(typeof r.defaultTls === 'string' && (OUT_LEVELS as readonly string[]).includes(r.defaultTls), 'relay.defaultTls', r.defaultTls, OUT_LEVELS.join('|'));
    out.defaultTls = r.defaultTls as RelaySettings['defaultTls'];
  }
  if (r.dns !== undefined) {
    want(Array.isArray(r.dns) && r.dns.every((x) => typeof x === 'string'), 'relay.dns', r.dns, 'a list of HOST:PORT');
    for (const a of r.dns as string[]) parseAddress(a, 'relay.dns');
    out.dns = r.dns as string[];
  }
  if (r.ca !== undefined) {
    want(r.ca === null || typeof r.ca === 'string', 'relay.ca', r.ca, 'a PEM file path');
    out.ca = r.ca as string | null;
  }
  for (const k of ['smtpPort', 'intervalMs', 'concurrency', 'minBackoffMs', 'maxBackoffMs', 'maxQueueAgeMs', 'maxMessagesPerConnection'] as const) {
    const v: Json | undefined = r[k];
    if (v === undefined) continue;
    const max = k === 'smtpPort' ? 65535 : k === 'concurrency' || k === 'maxMessagesPerConnection' ? 1000 : 2 ** 31 - 1;
    want(typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max, `relay.${k}`, v, `a whole number from 1 to ${max}`);
    out[k] = v;
  }
  return out;
}
