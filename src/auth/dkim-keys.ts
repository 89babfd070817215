/**
 * DKIM signing keys per sender domain, kept in the data directory:
 * `DATA/dkim/DOMAIN/SELECTOR.key` (PKCS#8 PEM, mode 0600; directories 0700) and
 * `DATA/dkim/DOMAIN/active.json` (which selector signs, one per algorithm).
 *
 * Invariants: a domain has any number of selectors (rotation: publish the new one, activate it,
 * keep the old one published until `remove`); at most one active selector per algorithm; the
 * first key of an algorithm becomes active by itself; an active key is not removed unless forced.
 * The DNS record text comes from the key file itself, so what we print is what we sign with.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, PostsealError } from '../errors.js';

export const DKIM_ALGORITHMS = ['ed25519', 'rsa'] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];

export interface DkimKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  active: boolean;
  file: string;
  /** The TXT record value (the strings, unquoted, of `SELECTOR._domainkey.DOMAIN`). */
  record: string[];
  privateKey: KeyObject;
}

// RFC 6376 §3.1: a selector is one or more DNS labels; a domain likewise.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOTTED = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

export function checkDomain(domain: string): string {
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (!DOTTED.test(d) || !d.includes('.') || d.length > 253) throw new ConfigError(`dkim: ${JSON.stringify(domain)} is not a domain name`);
  return d;
}

export function checkSelector(selector: string): string {
  const s = selector.toLowerCase();
  if (!DOTTED.test(s) || s.length > 63) throw new ConfigError(`dkim: ${JSON.stringify(selector)} is not a usable selector (DNS labels only)`);
  return s;
}

const dkimDir = (dataDir: string): string => join(dataDir, 'dkim');
const domainDir = (dataDir: string, domain: string): string => join(dkimDir(dataDir), domain);

function readActive(dataDir: string, domain: string): Partial<Record<DkimAlgorithm, string>> {
  const f = join(domainDir(dataDir, domain), 'active.json');
  if (!existsSync(f)) return {};
  try {
    const v = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
    const out: Partial<Record<DkimAlgorithm, string>> = {};
    for (const a of DKIM_ALGORITHMS) if (typeof v[a] === 'string') out[a] = v[a];
    return out;
  } catch (err) {
    throw new PostsealError('CONFIG_UNREADABLE', `dkim: cannot read ${f}: ${String(err)}`, { cause: err });
  }
}

function writeActive(dataDir: string, domain: string, active: Partial<Record<DkimAlgorithm, string>>): void {
  const f = join(domainDir(dataDir, domain), 'active.json');
  // Write then rename: a reader never sees half a file.
  writeFileSync(f + '.tmp', JSON.stringify(active) + '\n', { mode: 0o600 });
  renameSync(f + '.tmp', f);
}

function algorithmOf(key: KeyObject): DkimAlgorithm {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519' || t === 'rsa') return t;
  throw new PostsealError('NOT_SUPPORTED', `dkim: unsupported key type ${String(t)}`);
}

/** The TXT record strings for a key: RFC 6376 §3.6.1 tags; RSA split into 255-octet strings (RFC 7208 §3.3 style). */
export function dnsRecord(privateKey: KeyObject): string[] {
  const alg = algorithmOf(privateKey);
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  // RFC 8463 §4.2: for ed25519, p= is the raw 32-byte public key, not the SPKI structure.
  const p = (alg === 'ed25519' ? spki.subarray(spki.length - 32) : spki).toString('base64');
  const text = `v=DKIM1; k=${alg}; p=${p}`;
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 255) out.push(text.slice(i, i + 255));
  return out;
}

/** `SELECTOR._domainkey.DOMAIN IN TXT "…" "…"`, the line to publish. */
export function zoneLine(key: Pick<DkimKey, 'domain' | 'selector' | 'record'>): string {
  return `${key.selector}._domainkey.${key.domain}. IN TXT ${key.record.map((s) => `"${s}"`).join(' ')}`;
}

export function defaultSelector(algorithm: DkimAlgorithm, now = new Date()): string {
  const ym = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  return `${algorithm === 'ed25519' ? 'ed' : 'rsa'}${ym}`;
}

export function generateKey(dataDir: string, domainIn: string, opts: { selector?: string; algorithm?: DkimAlgorithm } = {}): DkimKey {
  const domain = checkDomain(domainIn);
  const algorithm = opts.algorithm ?? 'ed25519';
  if (!DKIM_ALGORITHMS.includes(algorithm)) throw new ConfigError(`dkim: algorithm must be ed25519 or rsa, not ${JSON.stringify(algorithm)}`);
  const selector = checkSelector(opts.selector ?? defaultSelector(algorithm));
  const dir = domainDir(dataDir, domain);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dkimDir(dataDir), 0o700);
  chmodSync(dir, 0o700);
  const file = join(dir, `${selector}.key`);
  if (existsSync(file)) throw new ConfigError(`dkim: ${domain} already has a key with selector ${selector}`);
  // RFC 8301 §3.2: RSA keys of at least 1024 bits; 2048 is what receivers expect today.
  const { privateKey } = algorithm === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
  const active = readActive(dataDir, domain);
  if (active[algorithm] === undefined || !existsSync(join(dir, `${active[algorithm]}.key`))) {
    active[algorithm] = selector;
    writeActive(dataDir, domain, active);
  }
  return { domain, selector, algorithm, active: active[algorithm] === selector, file, record: dnsRecord(privateKey), privateKey };
}

/** Every key on disk, optionally of one domain, sorted by domain then selector. */
export function listKeys(dataDir: string, domainIn?: string): DkimKey[] {
  const root = dkimDir(dataDir);
  if (!existsSync(root)) return [];
  const domains = domainIn === undefined ? readdirSync(root).sort() : [checkDomain(domainIn)];
  const out: DkimKey[] = [];
  for (const domain of domains) {
    const dir = domainDir(dataDir, domain);
    if (!existsSync(dir)) continue;
    const active = readActive(dataDir, domain);
    for (const name of readdirSync(dir).sort()) {
      if (!name.endsWith('.key')) continue;
      const selector = name.slice(0, -4);
      const file = join(dir, name);
      const privateKey = createPrivateKey(readFileSync(file));
      const algorithm = algorithmOf(privateKey);
      out.push({ domain, selector, algorithm, active: active[algorithm] === selector, file, record: dnsRecord(privateKey), privateKey });
    }
  }
  return out;
}

/** The keys that sign mail from a domain: the active one of each algorithm (RFC 8463 §1: both). */
export function activeKeys(dataDir: string, domain: string): DkimKey[] {
  return listKeys(dataDir, domain).filter((k) => k.active);
}

/**
 * The keys that sign for `domain`, [] when it is no domain name we could hold keys for. A key file
 * that cannot be read is an operator error and throws (the caller surfaces it).
 */
export function signingKeys(dataDir: string, domain: string): DkimKey[] {
  try {
    return activeKeys(dataDir, domain);
  } catch (err) {
    if (err instanceof ConfigError) return [];
    throw err;
  }
}

/**
 * signingKeys per domain, cached for `cacheMs` (the directory is read again after it, so
 * `postseal dkim activate` takes effect in a running server). Bounded: one entry per domain seen,
 * cleared past 10 000.
 */
export function cachedSigningKeys(dataDir: string, cacheMs = 30_000): (domain: string) => DkimKey[] {
  const cache = new Map<string, { at: number; keys: DkimKey[] }>();
  return (domain) => {
    const now = Date.now();
    const hit = cache.get(domain);
    if (hit && now - hit.at < cacheMs) return hit.keys;
    const keys = signingKeys(dataDir, domain);
    if (cache.size > 10_000) cache.clear();
    cache.set(domain, { at: now, keys });
    return keys;
  };
}

export function activateKey(dataDir: string, domainIn: string, selectorIn: string): DkimKey {
  const domain = checkDomain(domainIn);
  const selector = checkSelector(selectorIn);
  const key = listKeys(dataDir, domain).find((k) => k.selector === selector);
  if (!key) throw new ConfigError(`dkim: ${domain} has no key with selector ${selector}`);
  const active = readActive(dataDir, domain);
  active[key.algorithm] = selector;
  writeActive(dataDir, domain, active);
  return { ...key, active: true };
}

export function removeKey(dataDir: string, domainIn: string, selectorIn: string, opts: { force?: boolean } = {}): DkimKey {
  const domain = checkDomain(domainIn);
  const selector = checkSelector(selectorIn);
  const key = listKeys(dataDir, domain).find((k) => k.selector === selector);
  if (!key) throw new ConfigError(`dkim: ${domain} has no key with selector ${selector}`);
  if (key.active && !opts.force) {
    throw new ConfigError(`dkim: ${selector} is the active ${key.algorithm} key of ${domain}; activate another selector first (or --force)`);
  }
  if (key.active) {
    const active = readActive(dataDir, domain);
    delete active[key.algorithm];
    writeActive(dataDir, domain, active);
  }
  rmSync(key.file);
  return key;
}
