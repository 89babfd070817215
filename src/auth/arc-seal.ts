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
import { sealMessage, type ARCSealOptions } from 'mailauth';
import { parseHeader, splitMessage } from './dkim-sign.js';
import type { DkimKey } from './dkim-keys.js';

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
  /** The whole message as it will be forwarded (our Received and Authentication-Results included). */
  data: Buffer;
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

/**
 * Seals one message with `key` (d= key.domain). Returns the three header fields (each ending
 * in CRLF, ARC-Seal first) to prepend, or why not.
 */
export async function arcSeal(input: SealInput, key: Pick<DkimKey, 'domain' | 'selector' | 'algorithm' | 'privateKey'>, opts: { now?: Date } = {}): Promise<SealOutcome> {
  const split = splitMessage(input.data.subarray(0, Math.min(input.data.length, 1 << 20)));
  if (split === null) return { sealed: false, reason: 'no end of the header block' };
  const decision = sealDecision(arcChainFacts(split.header), input.validation);
  if (!decision.seal) return { sealed: false, reason: decision.reason };
  // mailauth reads i, cv and authResults besides the typed options (lib/arc createSeal).
  const seal: ARCSealOptions & { i: number; cv: ChainValidation; authResults: string } = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    algorithm: key.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
    signTime: opts.now ?? new Date(),
    i: decision.instance,
    cv: decision.cv,
    authResults: authResultsValue(input.authResults),
  };
  // mailauth splits headerList on ':' (a string), whatever its .d.ts says.
  (seal as unknown as { headerList: string }).headerList = AMS_HEADERS.join(':');
  const headers = (await sealMessage(input.data, seal)).toString('latin1');
  // Every line of ours ends in CRLF (mailauth joins its three fields with CRLF).
  if (!/^ARC-Seal:/i.test(headers)) return { sealed: false, reason: 'mailauth produced no ARC-Seal' };
  return { sealed: true, headers: headers.replace(/\r?\n/g, '\r\n'), instance: decision.instance, cv: decision.cv, domain: key.domain, selector: key.selector };
}
