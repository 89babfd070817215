/**
 * ARC sealing (RFC 8617) of mail we forward: a local address at one of `arc.sealDomains` whose
 * mail goes on to another host. One ARC Set (ARC-Seal, ARC-Message-Signature,
 * ARC-Authentication-Results) is added with the next instance number; the cryptography is
 * mailauth's (`sealMessage`: relaxed/relaxed AMS over the message, AS over the ARC Sets).
 *
 * Invariants:
 * - `cv=` is our validation of the incoming chain (auth/verify.ts): none (no chain), pass, fail;
 *   a chain whose newest ARC-Seal already says cv=fail is not sealed again (RFC 8617 §5.1 step 1);
 * - never more than 50 ARC Sets (RFC 8617 §4.2.1: i= is 1..50): at 50, no seal;
 * - a chain we could not validate (temperror: deadline, DNS) is not sealed: cv must be a result,
 *   and a cv=fail we did not establish would end the chain for every later hop;
 * - the key: the domain's active RSA key when it has one, else its Ed25519 key — RFC 8617 §4.1.3
 *   allows only what DKIM allows, and Ed25519 (RFC 8463) is not validated by many ARC
 *   implementations yet, so RSA is the one validators can check;
 * - never throws for a message: a message we cannot parse is not sealed (reason given).
 */
import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { sealMessage, type ARCSealOptions } from 'mailauth';
import { parseHeader, splitMessage } from './dkim-sign.js';
import { cachedSigningKeys, type DkimKey } from './dkim-keys.js';

/** RFC 8617 §4.2.1: the highest instance number. */
export const MAX_ARC_INSTANCES = 50;

/**
 * Header fields the ARC-Message-Signature covers (when present): DKIM signatures (so the next
 * hop sees what we saw) and the usual DKIM set. Not ARC-Seal, not Authentication-Results
 * (RFC 8617 §4.1.2: they change at every hop).
 */
export const AMS_HEADERS = [
  'DKIM-Signature', 'From', 'Sender', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'To', 'Cc',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'In-Reply-To', 'References',
  'List-Id', 'List-Unsubscribe', 'List-Post',
] as const;

export type ChainValidation = 'none' | 'pass' | 'fail';

export interface ArcChainFacts {
  /** The highest i= among the ARC header fields present (0: no chain). */
  highest: number;
  /** cv= of the ARC-Seal with the highest i=, lower-cased, or null. */
  lastCv: string | null;
}

export type SealDecision = { seal: true; instance: number; cv: ChainValidation } | { seal: false; reason: string };

const ARC_FIELDS = new Set(['arc-seal', 'arc-message-signature', 'arc-authentication-results']);

function tag(value: string, name: string): string | null {
  // Tag=value lists (RFC 6376 §3.2): `name = value` between semicolons, FWS allowed around `=`.
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*([^;]*)`, 'i').exec(value.replace(/\r?\n[ \t]/g, ' '));
  return m?.[1] !== undefined ? m[1].trim() : null;
}

/** The ARC facts of a header block: highest instance and the newest seal's cv. */
export function arcChainFacts(headerBlock: string): ArcChainFacts {
  let highest = 0;
  let lastCv: string | null = null;
  for (const f of parseHeader(headerBlock)) {
    if (!ARC_FIELDS.has(f.name)) continue;
    const value = f.raw.slice(f.raw.indexOf(':') + 1);
    const i = Number(tag(value, 'i') ?? '');
    if (!Number.isInteger(i) || i < 1) continue;
    if (i > highest) {
      highest = i;
      lastCv = null;
    }
    if (i === highest && f.name === 'arc-seal') lastCv = tag(value, 'cv')?.toLowerCase() ?? null;
  }
  return { highest, lastCv };
}

/**
 * Whether to seal, with which i= and cv=, from the chain present and our validation of it
 * (the `arc` result of auth/verify.ts: none, pass, fail, temperror).
 */
export function sealDecision(chain: ArcChainFacts, validation: string): SealDecision {
  // RFC 8617 §5.1 step 1: the newest AS already reports cv=fail: the algorithm stops.
  if (chain.lastCv === 'fail') return { seal: false, reason: 'the chain already ends in cv=fail' };
  // RFC 8617 §4.2.1: i= ranges 1..50; a 51st ARC Set cannot be added.
  if (chain.highest >= MAX_ARC_INSTANCES) return { seal: false, reason: `the chain has ${chain.highest} instances (at most ${MAX_ARC_INSTANCES})` };
  if (validation === 'temperror') return { seal: false, reason: 'the chain could not be validated (temperror)' };
  // RFC 8617 §5.1.1 / §4.1.3: the first ARC Set carries cv=none.
  if (chain.highest === 0) return { seal: true, instance: 1, cv: 'none' };
  // RFC 8617 §5.1 step 3 / §5.2: cv is the chain validation status; anything but pass is fail.
  return { seal: true, instance: chain.highest + 1, cv: validation === 'pass' ? 'pass' : 'fail' };
}

/** The key to seal with: the active RSA key if any (validators' support), else Ed25519. */
export function chooseArcKey(keys: readonly DkimKey[]): DkimKey | null {
  const active = keys.filter((k) => k.active);
  return active.find((k) => k.algorithm === 'rsa') ?? active.find((k) => k.algorithm === 'ed25519') ?? null;
}

export interface SealInput {
  /**
   * The whole message as it will be forwarded (our Received and Authentication-Results
   * included): bytes, or a function giving its pieces afresh on every call (a spooled body is
   * read twice as a stream: once for the ARC header fields, once for the signatures).
   */
  data: Buffer | (() => AsyncIterable<Uint8Array>);
  /** Our `Authentication-Results: ...` header (RFC 8601), copied into the AAR (RFC 8617 §4.1.1). */
  authResults: string;
  /** Our validation of the incoming chain (AuthVerdicts.arc.result). */
  validation: string;
}

export type SealOutcome =
  | { sealed: true; headers: string; instance: number; cv: ChainValidation; domain: string; selector: string }
  | { sealed: false; reason: string };

/** The AR value without its field name and final CRLF, unfolded to one line. */
function authResultsValue(header: string): string {
  const colon = header.indexOf(':');
  const value = colon >= 0 && /^authentication-results$/i.test(header.slice(0, colon).trim()) ? header.slice(colon + 1) : header;
  return value.replace(/\r?\n[ \t]+/g, ' ').replace(/[\r\n]/g, '').trim();
}

/** Header blocks past this are not read for their ARC fields: not a message we seal. */
const MAX_HEADER = 1 << 20;

/** The header block (latin1), read from the start of the content, at most MAX_HEADER bytes. */
async function headerBlock(data: SealInput['data']): Promise<string | null> {
  if (Buffer.isBuffer(data)) return splitMessage(data.subarray(0, Math.min(data.length, MAX_HEADER)))?.header ?? null;
  let head = Buffer.alloc(0);
  for await (const chunk of data()) {
    head = Buffer.concat([head, chunk]);
    const split = splitMessage(head);
    if (split !== null) return split.header;
    if (head.length > MAX_HEADER) return null;
  }
  return null;
}

/** mailauth takes PEM text; a key is exported once, not per message. */
const pems = new WeakMap<KeyObject, string>();
function pemOf(key: KeyObject): string {
  let pem = pems.get(key);
  if (pem === undefined) {
    pem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
    pems.set(key, pem);
  }
  return pem;
}

/**
 * Seals one message with `key` (d= key.domain). Returns the three header fields (each ending
 * in CRLF, ARC-Seal first) to prepend, or why not.
 */
export async function arcSeal(input: SealInput, key: Pick<DkimKey, 'domain' | 'selector' | 'algorithm' | 'privateKey'>, opts: { now?: Date } = {}): Promise<SealOutcome> {
  const header = await headerBlock(input.data);
  if (header === null) return { sealed: false, reason: 'no end of the header block' };
  const decision = sealDecision(arcChainFacts(header), input.validation);
  if (!decision.seal) return { sealed: false, reason: decision.reason };
  // mailauth reads i, cv and authResults besides the typed options (lib/arc createSeal).
  const seal: ARCSealOptions & { i: number; cv: ChainValidation; authResults: string } = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: pemOf(key.privateKey),
    algorithm: key.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
    signTime: opts.now ?? new Date(),
    i: decision.instance,
    cv: decision.cv,
    authResults: authResultsValue(input.authResults),
  };
  // mailauth splits headerList on ':' (a string), whatever its .d.ts says.
  (seal as unknown as { headerList: string }).headerList = AMS_HEADERS.join(':');
  // The body is hashed as a stream (mailauth's DkimSigner is a Writable): a spooled body is not read whole.
  const source = Buffer.isBuffer(input.data) ? input.data : Readable.from(input.data());
  let headers: string;
  try {
    headers = (await sealMessage(source, seal)).toString('latin1');
  } catch (err) {
    // Whatever the message holds (a malformed ARC field, say), it is forwarded, unsealed: a
    // temporary failure would make the client retry the same bytes forever.
    return { sealed: false, reason: `sealing failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!/^ARC-Seal:/i.test(headers)) return { sealed: false, reason: 'mailauth produced no ARC-Seal' };
  // Every line of ours ends in CRLF (RFC 5322 §2.2).
  return { sealed: true, headers: headers.replace(/\r?\n/g, '\r\n'), instance: decision.instance, cv: decision.cv, domain: key.domain, selector: key.selector };
}

export interface ArcSealerOptions {
  /** The data directory (keys under dkim/, as for DKIM signing). */
  dataDir: string;
  /** Where spooled bodies are (the store's spool directory). */
  spoolDir: string;
  /** arc.sealDomains: the local domains whose forwarded mail is sealed. */
  sealDomains: readonly string[];
  /** How long the keys of a domain are cached before the directory is read again. */
  cacheMs?: number;
  /** Told why a forwarded message went unsealed (no key, cv=fail chain, 50 instances, ...). */
  onSkip?: (domain: string | null, reason: string) => void;
}

/** What the server hands the sealer (ServerOptions.sealer). */
export interface SealRequest {
  /** Our Received header (it goes first; the seal follows it). */
  received: string;
  /** The content pieces in memory after the Received header: our Authentication-Results first. */
  data: Uint8Array[];
  /** A spooled body: the rest of the content is this spool file. */
  spooled: { file: string } | null;
  /** Our Authentication-Results header. */
  authResults: string;
  /** Our validation of the incoming ARC chain (none, pass, fail, temperror). */
  validation: string;
  /** The local domains whose addresses forwarded this message, in recipient order. */
  domains: readonly string[];
}

/**
 * The server's `sealer` hook: the first of `domains` that is in sealDomains and has an active
 * key seals (one ARC Set per hop: a message forwarded by two of our domains is sealed once).
 * Returns the header fields to put after our Received header, or null.
 */
export function createArcSealer(o: ArcSealerOptions): (msg: SealRequest) => Promise<Uint8Array | null> {
  const sealDomains = new Set(o.sealDomains.map((d) => d.toLowerCase()));
  // An unreadable key file is an operator error: it surfaces (451), as for DKIM signing.
  const keysFor = cachedSigningKeys(o.dataDir, o.cacheMs);
  const keyFor = (domain: string): DkimKey | null => chooseArcKey(keysFor(domain));
  return async (msg) => {
    const candidates = [...new Set(msg.domains.map((d) => d.toLowerCase()))].filter((d) => sealDomains.has(d));
    if (candidates.length === 0) return null;
    let key: DkimKey | null = null;
    for (const d of candidates) {
      key = keyFor(d);
      if (key) break;
    }
    if (!key) {
      o.onSkip?.(candidates[0] ?? null, 'no active DKIM key for the sealing domain');
      return null;
    }
    const received = Buffer.from(msg.received, 'utf8');
    const data = (): AsyncIterable<Uint8Array> =>
      (async function* () {
        yield received;
        yield* msg.data;
        if (msg.spooled) yield* createReadStream(join(o.spoolDir, msg.spooled.file)) as AsyncIterable<Buffer>;
      })();
    const out = await arcSeal({ data: msg.spooled ? data : Buffer.concat([received, ...msg.data]), authResults: msg.authResults, validation: msg.validation }, key);
    if (!out.sealed) {
      o.onSkip?.(key.domain, out.reason);
      return null;
    }
    return Buffer.from(out.headers, 'latin1');
  };
}
