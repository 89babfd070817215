/**
 * DKIM signing (RFC 6376) of a message for its author domain, with every active key of that
 * domain: Ed25519 (RFC 8463) and RSA-SHA256 both when both are active.
 *
 * Invariants: relaxed/relaxed canonicalization; the body is hashed as a stream (a spooled body is
 * never held in memory whole); the header fields in SIGNED_HEADERS are signed when present, and
 * OVERSIGNED ones once more than present, so none can be added later without breaking the
 * signature (RFC 6376 §8.15); `t=` is always set and `x=` when an expiry is configured. A message
 * with no From or several From fields is not signed (RFC 5322 §3.6: exactly one).
 */
import { createHash, sign as cryptoSign } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { cachedSigningKeys, type DkimKey } from './dkim-keys.js';

export const SIGNED_HEADERS = ['from', 'to', 'cc', 'subject', 'date', 'message-id', 'mime-version', 'content-type', 'reply-to', 'in-reply-to', 'references'] as const;
export const OVERSIGNED: readonly string[] = ['from', 'to', 'subject', 'date'];

export interface SignOptions {
  /** Seconds of validity: `x=` = `t=` + this (RFC 6376 §3.5). null: no `x=`. */
  expirySeconds?: number | null;
  now?: Date;
}

interface HeaderField {
  /** Lower-cased name. */
  name: string;
  /** The field as received, folding included, without the final CRLF (latin1: byte-preserving). */
  raw: string;
}

const CRLF = '\r\n';

/** Splits a header block (latin1 text up to, not including, the empty line) into fields. */
export function parseHeader(block: string): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line === '') continue;
    const last = fields[fields.length - 1];
    if ((line[0] === ' ' || line[0] === '\t') && last) {
      last.raw += CRLF + line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon).trim().toLowerCase(), raw: line });
  }
  return fields;
}

/** RFC 6376 §3.4.2: relaxed header canonicalization. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).trim().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r?\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .trim();
  return `${name}:${value}`;
}

/** RFC 6376 §3.4.4: relaxed body canonicalization, fed in chunks of any size; SHA-256 of the result. */
export class RelaxedBodyHash {
  private readonly hash = createHash('sha256');
  private partial = '';
  private emptyLines = 0;

  update(chunk: Uint8Array): void {
    const text = this.partial + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l.endsWith('\r') ? l.slice(0, -1) : l);
  }

  private line(l: string): void {
    const c = l.replace(/[ \t]+/g, ' ').replace(/ $/, '');
    if (c === '') {
      // Trailing empty lines are ignored: held back until a non-empty line follows.
      this.emptyLines++;
      return;
    }
    this.hash.update(CRLF.repeat(this.emptyLines) + c + CRLF, 'latin1');
    this.emptyLines = 0;
  }

  digest(): string {
    // A last line without CRLF gets one (an empty body stays empty).
    if (this.partial !== '') this.line(this.partial.endsWith('\r') ? this.partial.slice(0, -1) : this.partial);
    this.partial = '';
    return this.hash.digest('base64');
  }
}

/** The header block of a message (latin1) and the offset where its body starts. */
export function splitMessage(head: Buffer): { header: string; bodyOffset: number } | null {
  const i = head.indexOf('\r\n\r\n');
  if (i >= 0) return { header: head.subarray(0, i).toString('latin1'), bodyOffset: i + 4 };
  const j = head.indexOf('\n\n');
  if (j >= 0) return { header: head.subarray(0, j).toString('latin1'), bodyOffset: j + 2 };
  return null;
}

/** The domain of the one From address (RFC 7489 §3.1: the author domain), or null. */
export function authorDomain(fields: readonly HeaderField[]): string | null {
  const from = fields.filter((f) => f.name === 'from');
  if (from.length !== 1 || !from[0]) return null;
  const value = from[0].raw.slice(from[0].raw.indexOf(':') + 1).replace(/\r?\n/g, '');
  const noComments = value.replace(/\([^()]*\)/g, '');
  const angle = /<([^<>]*)>/.exec(noComments);
  const addr = (angle?.[1] ?? noComments).trim();
  if (addr.includes(',')) return null; // several authors: RFC 5322 §3.6.2 would need Sender
  const at = addr.lastIndexOf('@');
  if (at < 0) return null;
  const d = addr.slice(at + 1).trim().replace(/\.$/, '').toLowerCase();
  return /^[a-z0-9.-]+$/.test(d) ? d : null;
}

function fold(tag: string, value: string): string {
  // Long base64 values are folded with CRLF+TAB; FWS inside b=/bh= is ignored by verifiers (RFC 6376 §3.5).
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 72) parts.push(value.slice(i, i + 72));
  return `${tag}=${parts.join('\r\n\t ')}`;
}

/**
 * Signs with every given key. `header` is the message's header block, `bodyHash` the relaxed
 * body hash. Returns the DKIM-Signature fields (each ending in CRLF) to prepend, or '' if none.
 */
export function signHeader(fields: readonly HeaderField[], domain: string, bodyHash: string, keys: readonly DkimKey[], opts: SignOptions = {}): string {
  const t = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  // RFC 6376 §5.4.2: instances are taken from the bottom up; a name listed once more than it
  // occurs adds nothing to the hash and makes any added instance fail (oversigning).
  const present = fields.filter((f) => (SIGNED_HEADERS as readonly string[]).includes(f.name));
  const h: string[] = [];
  for (const name of SIGNED_HEADERS) {
    const n = present.filter((f) => f.name === name).length;
    for (let i = 0; i < n + (OVERSIGNED.includes(name) ? 1 : 0); i++) h.push(name);
  }
  const canonHeaders: string[] = [];
  const used = new Map<string, number>();
  for (const name of h) {
    const seen = used.get(name) ?? 0;
    used.set(name, seen + 1);
    const instances = present.filter((f) => f.name === name);
    const f = instances[instances.length - 1 - seen];
    if (f) canonHeaders.push(relaxedHeader(f.raw) + CRLF);
  }
  let out = '';
  for (const key of keys) {
    const a = key.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256';
    const x = opts.expirySeconds != null ? `; x=${t + opts.expirySeconds}` : '';
    const fieldNoB = `DKIM-Signature: v=1; a=${a}; c=relaxed/relaxed; d=${domain}; s=${key.selector};\r\n\tt=${t}${x}; h=${h.join(':')};\r\n\t${fold('bh', bodyHash)};\r\n\tb=`;
    // RFC 6376 §3.7: the signature field itself, b= empty, canonicalized, without its CRLF.
    const data = Buffer.from(canonHeaders.join('') + relaxedHeader(fieldNoB), 'latin1');
    const b =
      key.algorithm === 'rsa'
        ? cryptoSign('sha256', data, key.privateKey)
        : // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the data (PureEdDSA over the hash).
          cryptoSign(null, createHash('sha256').update(data).digest(), key.privateKey);
    out += fieldNoB + fold('', b.toString('base64')).slice(1) + CRLF;
  }
  return out;
}

/** Header blocks larger than this are not searched for their end (not a message we sign). */
const MAX_HEADER = 1 << 20;

/**
 * Signs a message read as a stream of chunks (in-memory pieces, a spool file, or both in turn).
 * `keysFor(domain)` gives the active keys of the author domain. Returns the DKIM-Signature
 * fields to prepend, or null when there is nothing to sign with.
 */
export async function signMessage(
  content: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  keysFor: (domain: string) => readonly DkimKey[] | Promise<readonly DkimKey[]>,
  opts: SignOptions = {},
): Promise<string | null> {
  let head: Buffer | null = Buffer.alloc(0);
  let fields: HeaderField[] = [];
  let domain = '';
  let keys: readonly DkimKey[] = [];
  const body = new RelaxedBodyHash();
  for await (const chunk of content) {
    if (head === null) {
      body.update(chunk);
      continue;
    }
    head = Buffer.concat([head, chunk]);
    const split = splitMessage(head);
    if (split === null) {
      if (head.length > MAX_HEADER) return null;
      continue;
    }
    fields = parseHeader(split.header);
    const d = authorDomain(fields);
    if (d === null) return null;
    keys = await keysFor(d);
    if (keys.length === 0) return null;
    domain = d;
    body.update(head.subarray(split.bodyOffset));
    head = null;
  }
  if (head !== null) return null; // no end of header: not a message we sign
  return signHeader(fields, domain, body.digest(), keys, opts) || null;
}

export interface DkimSignerOptions {
  /** The data directory (keys under dkim/). */
  dataDir: string;
  /** Where spooled bodies are (the store's spool directory). */
  spoolDir: string;
  expirySeconds: number | null;
  /** How long the keys of a domain are cached before the directory is read again. */
  cacheMs?: number;
}

/**
 * The server's `signer` hook: keys from the data directory (re-read every cacheMs, so
 * `postseal dkim activate` takes effect in a running server), a spooled body read as a stream.
 */
export function createDkimSigner(o: DkimSignerOptions): (msg: { mailFrom: string; data: Uint8Array[]; spooled: { file: string } | null }) => Promise<Uint8Array | null> {
  const keysFor = cachedSigningKeys(o.dataDir, o.cacheMs);
  return async (msg) => {
    async function* content(): AsyncIterable<Uint8Array> {
      yield* msg.data;
      if (msg.spooled) yield* createReadStream(join(o.spoolDir, msg.spooled.file)) as AsyncIterable<Buffer>;
    }
    const sig = await signMessage(content(), keysFor, { expirySeconds: o.expirySeconds });
    return sig === null ? null : Buffer.from(sig, 'latin1');
  };
}
