/**
 * One typed configuration for `postseal serve`: defaults, then a JSON config file, then
 * command-line flags, all through the one schema (config/schema.ts). Every key is checked; a bad
 * key or value is refused at start with a ConfigError naming the key and where the value came
 * from (the flag, the config file, or the library caller).
 */
import { readFileSync } from 'node:fs';
import type { RelayConfig } from './relay/runner.js';
import { ConfigError } from './errors.js';
import { apply, asAny, configError, defaults, type ConfigSource, type Origins } from './config/engine.js';
import { applyFlags } from './config/flags.js';
import { splitRoute } from './config/values.js';
import { SCHEMA, type DeliverySettings, type RelaySettings, type ServeConfig } from './config/schema.js';
import { parseTargetSpec } from './delivery/target-spec.js';
import type { TargetSpec } from './delivery/types.js';
import { HOST_PORT_SYNTAX, parseHostPort, type HostPort } from './protocol/host-port.js';
import type { Limits } from './server/types.js';
import { systemResolver } from './client/index.js';
import { policyLookups } from './policy/context.js';
import type { PolicyContext } from './policy/decide.js';
import type { MtaStsCache } from './policy/types.js';
import { PostsealError } from './errors.js';
import { parseStoreSpec, type StoreSpec } from './store/spec.js';

export { DEFAULT_DATA_DIR, LISTENER_NAMES, SCHEMA, type DeliverySettings, type ListenerConfig, type ListenerName, type RelaySettings, type ServeConfig } from './config/schema.js';
export type { ConfigSource } from './config/engine.js';
export { serveFlags } from './config/flags.js';

/** Every default of serve, from the schema (a fresh object every call). */
export function defaultConfig(): ServeConfig {
  return defaults(asAny(SCHEMA)) as ServeConfig;
}

/** The server limits serve uses by default (library callers of SmtpServer start from these). */
export const DEFAULT_LIMITS: Limits = defaultConfig().limits;

/** Applies a parsed JSON document onto a config; throws ConfigError naming the key and the source. */
export function applyConfigObject(cfg: ServeConfig, doc: unknown, source: ConfigSource = { kind: 'object' }, origins: Origins = new Map()): ServeConfig {
  return apply(asAny(SCHEMA), structuredClone(cfg), doc, '', source, origins) as ServeConfig;
}

export function loadConfigFile(file: string, base: ServeConfig = defaultConfig(), origins: Origins = new Map()): ServeConfig {
  const source: ConfigSource = { kind: 'file', file };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { code: 'CONFIG_UNREADABLE', source: `config file ${file}` });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config: ${file} is not valid JSON: ${(err as Error).message}`, { code: 'CONFIG_UNREADABLE', source: `config file ${file}` });
  }
  return applyConfigObject(base, doc, source, origins);
}

/**
 * serve's flags (commander's options object) over the config file named by `config` (if any)
 * over the defaults.
 */
export function configFromFlags(flags: Record<string, unknown> & { config?: string }): ServeConfig {
  const origins: Origins = new Map();
  const base = typeof flags.config === 'string' ? loadConfigFile(flags.config, defaultConfig(), origins) : defaultConfig();
  return applyFlags(base, flags, origins);
}

/**
 * A HOST:PORT value of the config as { host, port }, with the one parser. Values in a config made
 * by defaultConfig/applyConfigObject were checked already; this guards library callers that built
 * one by hand.
 */
export function configAddress(text: string, key: string, opts: { allowPortZero?: boolean } = {}): HostPort {
  const r = parseHostPort(text, opts);
  if (!r.ok) throw configError('CONFIG_INVALID', { kind: 'object' }, key, `${key} = ${JSON.stringify(text)} is not valid: expected ${HOST_PORT_SYNTAX}: ${r.problem}`);
  return { host: r.host, port: r.port };
}

/** The runner's settings from the config's relay section (all but who we are and the CA's text). */
export type RelayRunnerSettings = Omit<RelayConfig, 'hostname' | 'localDomains' | 'timeouts'>;

export function relayRunnerSettings(r: RelaySettings, ca: string | null = null): RelayRunnerSettings {
  const routes: RelayConfig['routes'] = {};
  for (const [domain, text] of Object.entries(r.routes)) {
    // HOST:PORT[@NAME]: NAME is the certificate name to verify (default: HOST).
    const { address, name } = splitRoute(text);
    routes[domain] = { ...configAddress(address, `relay.routes.${domain}`), ...(name !== null ? { name } : {}) };
  }
  return {
    routes,
    tlsPolicy: { ...r.tlsPolicy },
    defaultTls: r.defaultTls,
    smtpPort: r.smtpPort,
    ca,
    retry: { minBackoffMs: r.minBackoffMs, maxBackoffMs: r.maxBackoffMs, maxAgeMs: r.maxQueueAgeMs },
    intervalMs: r.intervalMs,
    concurrency: r.concurrency,
    leaseMs: r.leaseMs,
    maxMessagesPerConnection: r.maxMessagesPerConnection,
    bounceSizeLimit: r.bounceSizeLimit,
  };
}

/** What `policy explain` may set instead of the relay section (the CLI's flags); unset: the config's. */
export interface PolicyOverrides {
  dns?: string[];
  mtaSts?: { enabled: boolean; endpoint: string | null };
  dane?: { enabled: boolean };
  port?: number;
}

/**
 * The sending policy's context from the relay section, for `postseal policy explain` and
 * GET /api/v1/policy/DOMAIN (one home: the two answer the same question). `ca` is relay.ca's PEM
 * text (or null); `cache` holds MTA-STS policies (serve's store, or a memory cache).
 */
export function relayPolicyContext(r: RelaySettings, ca: string | null, cache: MtaStsCache, o: PolicyOverrides = {}): PolicyContext {
  const dns = o.dns ?? r.dns;
  const settings = { dns, ca, mtaSts: o.mtaSts ?? { enabled: r.mtaSts.enabled, endpoint: r.mtaSts.endpoint }, dane: o.dane ?? { enabled: r.dane.enabled } };
  return { ...policyLookups(settings, cache), resolver: systemResolver(dns.length > 0 ? dns : undefined), table: { ...r.tlsPolicy }, defaultLevel: r.defaultTls, port: o.port ?? r.smtpPort };
}

/** The relay runner's defaults: the schema's relay defaults (tests and benchmarks spread these). */
export const DEFAULT_RELAY: RelayRunnerSettings = relayRunnerSettings(defaultConfig().relay);

/** The environment variable that names the store (overrides `store.url`; `--store` overrides it). */
export const STORE_ENV = 'POSTSEAL_STORE';

/**
 * The store the config names: `store.url` parsed by the one spec parser (store/spec.ts), or the
 * SQLite store in `dataDir` when it is null. A bad URL is a config error naming the key (its text
 * is not repeated: it may carry a password).
 */
export function storeSpecOf(cfg: ServeConfig): StoreSpec {
  if (cfg.store.url === null) return { kind: 'sqlite', dir: cfg.dataDir };
  try {
    return parseStoreSpec(cfg.store.url);
  } catch (err) {
    if (err instanceof PostsealError && err.code === 'STORE_BAD_URL') throw new ConfigError(`config: store.url: ${err.message}`, { key: 'store.url' });
    throw err;
  }
}

/** The environment variable that supplies `delivery.webhook.secret` when the config does not. */
export const WEBHOOK_SECRET_ENV = 'POSTSEAL_WEBHOOK_SECRET';

/**
 * `delivery.targets` parsed (key: lower-cased domain or address → spec), checked as a whole:
 * a webhook target without `delivery.webhook.secret` is refused here, so serve does not start
 * (an unsigned call would let anyone who can reach the URL inject mail into the application).
 */
export function deliveryTargets(d: DeliverySettings): Map<string, TargetSpec> {
  const out = new Map<string, TargetSpec>();
  for (const [key, text] of Object.entries(d.targets)) {
    const r = parseTargetSpec(text);
    if (!r.ok) throw configError('CONFIG_INVALID', { kind: 'object' }, `delivery.targets.${key}`, `delivery.targets.${key} = ${JSON.stringify(text)} is not valid: ${r.problem}`);
    if (r.spec.kind === 'webhook' && (d.webhook.secret === null || d.webhook.secret === '')) {
      throw configError('CONFIG_INVALID', { kind: 'object' }, 'delivery.webhook.secret', `delivery.targets.${key} is a webhook target, but delivery.webhook.secret is not set (set it in the config file or in the environment variable ${WEBHOOK_SECRET_ENV}): webhook calls are always signed`);
    }
    out.set(key.toLowerCase(), r.spec);
  }
  return out;
}
