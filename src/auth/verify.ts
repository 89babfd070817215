/**
 * Verification of received mail (issue 11 item 2): SPF (RFC 7208), DKIM (RFC 6376, every
 * signature up to a bound), DMARC (RFC 7489) and ARC (RFC 8617) through mailauth, and the one
 * Authentication-Results header (RFC 8601) we prepend.
 *
 * Invariants:
 * - verification never hangs and never throws: the whole run has a deadline; past it, or on any
 *   error, every method not yet decided is `temperror` (RFC 8601 §2.7.1);
 * - every DNS question goes through the one DNS client given (mailauth's own limits apply:
 *   RFC 7208 §4.6.4, 10 lookups and 2 void lookups), each with the client's own timeout;
 * - Authentication-Results headers that claim our authserv-id are removed from the header block
 *   only (RFC 8601 §5), never from the body; other headers and all bytes are kept as they came;
 * - at most MAX_DKIM_SIGNATURES signatures are verified (the rest are counted, not checked), so
 *   100 signatures cost 10 key lookups, not 100;
 * - more than one From header is a DMARC `fail` (RFC 7489 §6.6.1), whatever the signatures say.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { authenticate, spf as spfCheck, type DNSResolver } from 'mailauth';
import { reply, type Reply } from '../protocol/reply.js';
import type { AuthVerdicts } from '../types.js';

export type { AuthVerdicts } from '../types.js';

/** Signatures verified per message; later ones are counted in `dkimOmitted`. */
export const MAX_DKIM_SIGNATURES = 10;
const DEFAULT_DEADLINE_MS = 10_000;
/** Default deadline of each DNS question (config auth.dnsTimeoutMs). */
export const DEFAULT_DNS_TIMEOUT_MS = 3_000;
/**
 * The largest header block we hand to mailauth (which holds the header block in memory). Longer
 * (a 1 MB DKIM-Signature, say) → DKIM/DMARC `permerror`, SPF still checked, `headerTooLarge`;
 * the server's verifier (createVerifier) refuses such a message (552 5.3.4). Postfix's
 * header_size_limit is 100 KiB per header; this bounds the whole block.
 */
export const MAX_HEADER_BLOCK = 256 * 1024;
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);

export type MailauthResolver = (name: string, type: string) => Promise<unknown>;

/** A message spooled to disk (store/spool.ts): read as a stream, never whole into memory. */
export interface SpooledInput {
  /** The spool file's path. */
  path: string;
}

/** Bytes to write over a spool file at `offset` (same length: the file is never shifted). */
export interface FilePatch {
  offset: number;
  bytes: Buffer;
}

export interface VerifyInput {
  /** The message as received (header block and body), without our Received header: in memory, or its spool file. */
  data: Buffer | SpooledInput;
  /** Connecting client IP (RFC 7208 §2.4 <ip>). */
  ip: string;
  helo: string;
  /** MAIL FROM reverse-path, '' for the null sender. */
  mailFrom: string;
}

export interface VerifyOptions {
  /** Our authserv-id: the hostname (RFC 8601 §2.5). */
  hostname: string;
  resolver: MailauthResolver;
  /** Bound on the whole verification (default 10 s); past it → temperror. */
  deadlineMs?: number;
  /** Bound on each DNS question (default 3 s); past it that mechanism is temperror. */
  dnsTimeoutMs?: number;
}

export interface VerifyOutcome {
  /** `Authentication-Results: ...\r\n`, ready to prepend. */
  header: string;
  verdicts: AuthVerdicts;
  /** In-memory input: the message with Authentication-Results headers claiming our authserv-id removed. Spooled input: null. */
  data: Buffer | null;
  /**
   * Spooled input: same-length overwrites of the spool file that obscure the forged
   * Authentication-Results fields (obscureField); empty when there are none (and for in-memory input).
   */
  patches: FilePatch[];
  /** The header block is over MAX_HEADER_BLOCK: not verified, and (server) refused. */
  headerTooLarge: boolean;
}

interface HeaderField {
  /** Lower-case field name. */
  name: string;
  start: number;
  end: number;
}

/**
 * Where the header block ends (index of the empty line's end), and its fields; `complete` is
 * false when no empty line was found (all of `data` is header lines).
 */
function headerFields(data: Buffer): { fields: HeaderField[]; bodyStart: number; complete: boolean; blankLine: boolean } {
  const fields: HeaderField[] = [];
  let pos = 0;
  let current: HeaderField | null = null;
  while (pos < data.length) {
    let eol = data.indexOf(0x0a, pos);
    eol = eol < 0 ? data.length : eol + 1;
    const first = data[pos];
    const blank = first === 0x0a || (first === 0x0d && data[pos + 1] === 0x0a);
    if (blank) return { fields, bodyStart: eol, complete: true, blankLine: true };
    if ((first === 0x20 || first === 0x09) && current !== null) {
      current.end = eol; // RFC 5322 §2.2.3: a folded continuation line
    } else {
      const line = data.subarray(pos, Math.min(eol, pos + 200)).toString('latin1');
      const colon = line.indexOf(':');
      // RFC 5322 §2.2 / §3.6.8: a field name is printable US-ASCII but ':' (WSP before the colon
      // tolerated, RFC 5322 §4.5.3 obs-optional). A line that is no field ends the header section
      // (as Postfix's cleanup does): what follows is body, not one endless "header block".
      if (colon <= 0 || !/^[\x21-\x39\x3b-\x7e]+[ \t]*$/.test(line.slice(0, colon))) return { fields, bodyStart: pos, complete: true, blankLine: false };
      current = { name: line.slice(0, colon).trim().toLowerCase(), start: pos, end: eol };
      fields.push(current);
    }
    pos = eol;
  }
  return { fields, bodyStart: data.length, complete: false, blankLine: false };
}

/** The authserv-id of an Authentication-Results field value (RFC 8601 §2.2), lower-cased. */
function authservId(value: string): string {
  const noComments = value.replace(/\([^)]*\)/g, ' ');
  return (noComments.split(';')[0] ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? '';
}

/** Drops fields for which `drop` is true; returns the same Buffer when none is dropped. */
function withoutFields(data: Buffer, fields: HeaderField[], drop: (f: HeaderField) => boolean): Buffer {
  const gone = fields.filter(drop);
  if (gone.length === 0) return data;
  const parts: Buffer[] = [];
  let at = 0;
  for (const f of gone) {
    parts.push(data.subarray(at, f.start));
    at = f.end;
  }
  parts.push(data.subarray(at));
  return Buffer.concat(parts);
}

function fieldValue(data: Buffer, f: HeaderField): string {
  const raw = data.subarray(f.start, f.end).toString('utf8');
  return raw.slice(raw.indexOf(':') + 1);
}

/** d= and s= of a DKIM-Signature field value (for verdicts when mailauth gave none). */
function sigTags(value: string): { domain: string | null; selector: string | null } {
  const tag = (t: string): string | null => new RegExp(`(?:^|;)\\s*${t}\\s*=\\s*([^;\\s]+)`).exec(value)?.[1]?.toLowerCase() ?? null;
  return { domain: tag('d'), selector: tag('s') };
}

function temperror(reason: string, sigs: Array<{ domain: string | null; selector: string | null }>): AuthVerdicts {
  return {
    spf: { result: 'temperror', domain: null, comment: reason },
    dkim: sigs.map((t) => ({ result: 'temperror', ...t, aligned: null, comment: reason })),
    dkimOmitted: 0,
    dmarc: { result: 'temperror', domain: null, policy: null, comment: reason },
    arc: { result: 'temperror', comment: reason },
  };
}

/** A one-line result for the header: `method=result (comment)`. */
function arLine(method: string, result: string, props: string, comment: string | null): string {
  return `${method}=${result}${comment ? ` (${comment.replace(/[()\\\r\n]/g, ' ')})` : ''}${props ? ` ${props}` : ''}`;
}

type Unknown = Record<string, unknown>;
const obj = (v: unknown): Unknown => (v !== null && typeof v === 'object' ? (v as Unknown) : {});
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** Our verdicts from mailauth's result (only the fields we keep). `seen`: the signatures in the header block we handed over. */
function toVerdicts(res: Unknown, omitted: number, seen: ReadonlyArray<{ domain: string | null; selector: string | null }> = []): AuthVerdicts {
  const dkimRes = obj(res.dkim);
  const rows = (Array.isArray(dkimRes.results) ? (dkimRes.results as unknown[]) : []).map(obj);
  // mailauth answers "none (message not signed)" for a message whose only DKIM-Signature fields
  // it could not parse; those are counted below as permerror instead.
  const real = seen.length > 0 ? rows.filter((row) => obj(row.status).result !== 'none') : rows;
  const dkim = real.map((row) => {
    const status = obj(row.status);
    let comment = str(status.comment);
    let result = str(status.result) ?? 'neutral';
    // RFC 6376 §6.1.3 step 4: a body hash mismatch is a failed verification (PERMFAIL), and
    // RFC 8601 §2.7.1 calls that `fail`; mailauth reports it as neutral.
    if (result === 'neutral' && comment === 'body hash did not verify') result = 'fail';
    // RFC 6376 §3.5 / §6.1.1: b= and bh= are required tags; a signature without them is a
    // syntax error (PERMFAIL), RFC 8601 `permerror` — not a body hash mismatch.
    // (Not for mailauth's single `none` row of an unsigned message: there is no signature to judge.)
    if (result !== 'none' && (str(row.signature) === null || str(row.bodyHashExpecting) === null)) {
      result = 'permerror';
      comment = 'malformed signature: b= or bh= missing';
    }
    // RFC 6376 §8.2: with l= the content after the signed length is not covered by the
    // signature; anyone may append to it (a phishing link after a valid newsletter). We do
    // not call that `pass`: it is RFC 8601 `policy` (signed, but not acceptable to us), so it
    // counts for nothing in DMARC (below). An l= that covers the whole body stays `pass`.
    const unsigned = typeof status.underSized === 'number' ? status.underSized : 0;
    if (result === 'pass' && unsigned > 0) {
      result = 'policy';
      comment = `l= leaves ${unsigned} body bytes unsigned`;
    }
    return {
      result,
      domain: str(row.signingDomain),
      selector: str(row.selector),
      aligned: typeof status.aligned === 'string' ? status.aligned : null,
      comment,
    };
  });
  // Signatures mailauth could not even parse (no d=/s=, garbage): permerror, never dropped.
  for (const sig of seen.slice(dkim.length)) dkim.push({ result: 'permerror', domain: sig.domain, selector: sig.selector, aligned: null, comment: 'malformed signature' });
  const spf = obj(res.spf);
  const dmarc = obj(res.dmarc);
  const arc = obj(res.arc);
  let dmarcVerdict: AuthVerdicts['dmarc'] = res.dmarc === false
    ? { result: 'none', domain: null, policy: null, comment: 'no From domain' }
    : { result: str(obj(dmarc.status).result) ?? 'none', domain: str(dmarc.domain), policy: str(dmarc.policy), comment: null };
  // RFC 7489 §4.2: DMARC passes on an aligned SPF pass or an aligned DKIM pass. mailauth counts
  // an l= signature with unsigned content as an aligned pass; we do not (see above).
  if (dmarcVerdict.result === 'pass') {
    const spfAligned = Boolean(obj(obj(dmarc.alignment).spf).result);
    const dkimAligned = dkim.some((d) => d.result === 'pass' && d.aligned !== null);
    if (!spfAligned && !dkimAligned) dmarcVerdict = { ...dmarcVerdict, result: 'fail', comment: 'the only aligned signature leaves content unsigned (l=)' };
  }
  return {
    spf: { result: str(obj(spf.status).result) ?? 'none', domain: str(spf.domain), comment: str(obj(spf.status).comment) },
    dkim,
    dkimOmitted: omitted,
    dmarc: dmarcVerdict,
    arc: { result: str(obj(arc.status).result) ?? 'none', comment: str(obj(arc.status).comment) },
  };
}

/** The RFC 8601 header from our verdicts, our authserv-id first (RFC 8601 §2.2). */
export function formatAuthResults(hostname: string, v: AuthVerdicts, mailFrom: string, helo: string): string {
  const lines: string[] = [];
  if (v.dkim.length === 0) lines.push(arLine('dkim', 'none', '', null));
  for (const d of v.dkim) lines.push(arLine('dkim', d.result, d.domain ? `header.d=${d.domain}${d.selector ? ` header.s=${d.selector}` : ''}` : '', d.comment));
  if (v.dkimOmitted > 0) lines.push(arLine('dkim', 'policy', '', `${v.dkimOmitted} more signatures not verified`));
  const spfProp = mailFrom !== '' ? `smtp.mailfrom=${mailFrom.replace(/[\s;]/g, '')}` : `smtp.helo=${helo.replace(/[\s;]/g, '')}`;
  lines.push(arLine('spf', v.spf.result, spfProp, v.spf.comment));
  lines.push(arLine('dmarc', v.dmarc.result, v.dmarc.domain ? `header.from=${v.dmarc.domain}` : '', v.dmarc.comment ?? (v.dmarc.policy ? `p=${v.dmarc.policy}` : null)));
  lines.push(arLine('arc', v.arc.result, '', v.arc.comment));
  return `Authentication-Results: ${hostname};\r\n ${lines.join(';\r\n ')}\r\n`;
}

/**
 * The bytes that replace a forged Authentication-Results field in a spool file: the same length
 * and line structure, name `X-Removed-AR`, every other visible byte `x`. RFC 8601 §5 lets a
 * border MTA "delete or otherwise obscure" such a field; overwriting it in place keeps a 30 MiB
 * spool file from being copied to drop a few hundred header bytes.
 */
export function obscureField(field: Buffer): Buffer {
  const out = Buffer.from(field);
  for (let i = 0; i < out.length; i++) {
    const b = out[i] as number;
    if (b !== 0x0d && b !== 0x0a && b !== 0x20 && b !== 0x09) out[i] = 0x78; // 'x'
  }
  // The field starts with "Authentication-Results" (22 bytes) and a colon: at least 23 bytes.
  out.write('X-Removed-AR:', 0, 'latin1');
  return out;
}

/**
 * Every DNS question mailauth asks gets its own deadline (besides the whole run's): a silent
 * server makes that one mechanism `temperror` (RFC 7208 §4.4 / §2.6.6, RFC 6376 §6.1.2) instead of
 * using up the overall deadline. Timeouts reach mailauth with the code it maps to temperror.
 */
function boundedResolver(resolver: MailauthResolver, timeoutMs: number): MailauthResolver {
  return (name, type) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(Object.assign(new Error(`no DNS answer for ${name} ${type} within ${timeoutMs} ms`), { code: 'ETIMEOUT' })), timeoutMs);
      resolver(name, type).then(
        (v) => {
          clearTimeout(timer);
          // RFC 7208 §4.6.4: an answer with no records (NODATA, or NXDOMAIN our client reports
          // as empty) is a void lookup; mailauth counts only errors coded ENODATA/ENOTFOUND as
          // void (more than 2 → permerror), so an empty address or MX answer becomes one.
          if ((type === 'A' || type === 'AAAA' || type === 'MX') && Array.isArray(v) && v.length === 0) {
            reject(Object.assign(new Error(`no ${type} records for ${name}`), { code: 'ENODATA' }));
            return;
          }
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          // Our client's own timeout (policy/dns.ts DNS_TIMEOUT) is a timeout too.
          if (e instanceof Error && (e as { code?: unknown }).code === 'DNS_TIMEOUT') reject(Object.assign(new Error(e.message), { code: 'ETIMEOUT' }));
          else reject(e);
        },
      );
    });
}

/** The first `max` bytes of a file (its header block, when that is shorter). */
async function readHead(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max);
    let got = 0;
    while (got < max) {
      const { bytesRead } = await fh.read(buf, got, max - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Verdicts for a header block over MAX_HEADER_BLOCK: nothing of the message is checked but SPF. */
function headerTooLarge(spfRes: Unknown | null, reason: string): AuthVerdicts {
  const spfStatus = obj(spfRes?.status);
  return {
    spf: spfRes ? { result: str(spfStatus.result) ?? 'none', domain: str(spfRes.domain), comment: str(spfStatus.comment) } : { result: 'temperror', domain: null, comment: reason },
    // RFC 8601 §2.7.1: permerror, "the message could not be verified due to some error that is
    // unrecoverable"; never pass for signatures we did not check.
    dkim: [{ result: 'permerror', domain: null, selector: null, aligned: null, comment: reason }],
    dkimOmitted: 0,
    dmarc: { result: 'permerror', domain: null, policy: null, comment: reason },
    arc: { result: 'none', comment: reason },
  };
}

/**
 * Verifies one received message. Never rejects: failures become temperror verdicts. A spooled
 * message is read as a stream from its file (only its header block, at most MAX_HEADER_BLOCK
 * bytes, is held in memory).
 */
export async function verifyMessage(input: VerifyInput & { data: Buffer }, opts: VerifyOptions): Promise<VerifyOutcome & { data: Buffer }>;
export async function verifyMessage(input: VerifyInput, opts: VerifyOptions): Promise<VerifyOutcome>;
export async function verifyMessage(input: VerifyInput, opts: VerifyOptions): Promise<VerifyOutcome> {
  const inMemory = Buffer.isBuffer(input.data);
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const resolver = boundedResolver(opts.resolver, opts.dnsTimeoutMs ?? DEFAULT_DNS_TIMEOUT_MS);
  let head: Buffer;
  let total: number | null = null;
  try {
    // +1: a header block of exactly MAX_HEADER_BLOCK bytes is found complete.
    head = Buffer.isBuffer(input.data) ? input.data : await readHead(input.data.path, MAX_HEADER_BLOCK + 1);
  } catch (e) {
    const verdicts = temperror(`cannot read the spooled message: ${e instanceof Error ? e.message : String(e)}`, []);
    return { header: formatAuthResults(opts.hostname, verdicts, input.mailFrom, input.helo), verdicts, data: null, patches: [], headerTooLarge: false };
  }
  const parsed = headerFields(head);
  if (!inMemory) total = head.length;
  const tooLarge = parsed.bodyStart > MAX_HEADER_BLOCK || (!parsed.complete && total !== null && total > MAX_HEADER_BLOCK);
  const { fields } = parsed;
  const headBlock = head.subarray(0, parsed.bodyStart);
  const ours = opts.hostname.toLowerCase();
  // RFC 8601 §5: a header claiming our authserv-id that we did not write is a forgery; remove it
  // (in memory), or obscure it in place (spool file: see obscureField).
  const isForged = (f: HeaderField): boolean => f.name === 'authentication-results' && authservId(fieldValue(head, f)) === ours;
  const forged = tooLarge ? [] : fields.filter(isForged);
  const data = Buffer.isBuffer(input.data) ? withoutFields(input.data, fields, isForged) : null;
  const patches = inMemory ? [] : forged.map((f) => ({ offset: f.start, bytes: obscureField(head.subarray(f.start, f.end)) }));

  let verdicts: AuthVerdicts;
  let timer: NodeJS.Timeout | undefined;
  let stream: Readable | null = null;
  let fromCount = 1;
  let checkedSigs: Array<{ domain: string | null; selector: string | null }> = [];
  try {
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deadlineMs);
    });
    let run: Promise<unknown>;
    let omitted = 0;
    if (tooLarge) {
      // Bounded memory: a header block past the limit is not parsed (mailauth would hold it whole).
      run = spfCheck({ ip: input.ip, helo: input.helo, sender: input.mailFrom, mta: opts.hostname, resolver: resolver as DNSResolver });
    } else {
      const cleanHead = withoutFields(headBlock, fields, isForged);
      const kept = headerFields(cleanHead).fields;
      // Bounded work: only the first MAX_DKIM_SIGNATURES signatures are handed to mailauth.
      const sigs = kept.filter((f) => f.name === 'dkim-signature');
      omitted = Math.max(0, sigs.length - MAX_DKIM_SIGNATURES);
      const extra = new Set(sigs.slice(MAX_DKIM_SIGNATURES));
      const checkedHead = withoutFields(cleanHead, kept, (f) => extra.has(f));
      fromCount = kept.filter((f) => f.name === 'from').length;
      checkedSigs = sigs.slice(0, MAX_DKIM_SIGNATURES).map((f) => sigTags(fieldValue(cleanHead, f)));
      let message: Buffer | Readable;
      if (Buffer.isBuffer(input.data)) {
        // A header section ended by a line that is no field: the verifier sees the empty line
        // RFC 5322 §2.1 puts between header and body (the stored message is not changed).
        message = Buffer.concat([checkedHead, parsed.blankLine ? EMPTY : CRLF, input.data.subarray(parsed.bodyStart)]);
      } else {
        // The body streams from the spool file in 64 KiB reads (bounded memory).
        const path = input.data.path;
        const bodyStart = parsed.bodyStart;
        const s = Readable.from(
          (async function* () {
            yield checkedHead;
            if (!parsed.blankLine) yield CRLF;
            if (parsed.complete) yield* createReadStream(path, { start: bodyStart, highWaterMark: 64 * 1024 });
          })(),
          { objectMode: false },
        );
        stream = s;
        message = s;
      }
      run = authenticate(message, {
        ip: input.ip,
        helo: input.helo,
        sender: input.mailFrom,
        mta: opts.hostname,
        // Our client's answers have the shapes mailauth reads (policy/dns.ts mailauthResolver).
        resolver: resolver as DNSResolver,
        trustReceived: false,
        disableBimi: true,
      });
    }
    // A late result after the deadline is dropped; its lookups end on their own timeouts.
    run.catch(() => undefined);
    const res = await Promise.race([run, deadline]);
    if (res === 'timeout') verdicts = temperror(`verification took over ${deadlineMs} ms`, checkedSigs);
    else if (tooLarge) verdicts = headerTooLarge(obj(res), `header block over ${MAX_HEADER_BLOCK} bytes, not verified`);
    else verdicts = toVerdicts(obj(res), omitted, checkedSigs);
  } catch (e) {
    verdicts = temperror(`verification failed: ${e instanceof Error ? e.message : String(e)}`, checkedSigs);
  } finally {
    clearTimeout(timer);
    // Past the deadline (or on error) the spool file is not read any further.
    (stream as Readable | null)?.destroy();
  }
  // RFC 7489 §6.6.1: a message with several From headers (or none) has no single author domain;
  // receivers may reject it outright, so its policy is taken as reject (dmarcEnforce refuses it).
  if (!tooLarge && fromCount !== 1 && verdicts.dmarc.result !== 'temperror') {
    verdicts.dmarc = { result: 'fail', domain: verdicts.dmarc.domain, policy: 'reject', comment: `${fromCount} From headers` };
  }
  return { header: formatAuthResults(opts.hostname, verdicts, input.mailFrom, input.helo), verdicts, data, patches, headerTooLarge: tooLarge };
}

export interface VerifierPolicy {
  /** Refuse DMARC failures whose policy is reject (550 5.7.1); quarantine → the stored flag. */
  dmarcEnforce: boolean;
  /** Refuse an SPF `fail` (an `-all` hard fail) with 550 5.7.1. */
  spfHardFailReject: boolean;
}

/** What the policy makes of the verdicts: a refusal, or whether to quarantine. */
export function applyPolicy(v: AuthVerdicts, policy: VerifierPolicy): { reject: Reply | null; quarantine: boolean } {
  // RFC 7208 §8.4: a receiver may reject a `fail`; with 550 5.7.1 (RFC 7372 §3.2 uses 5.7.23 for
  // SPF validation failures; 5.7.1 is what clients map to "delivery not authorized").
  if (policy.spfHardFailReject && v.spf.result === 'fail') {
    return { reject: reply(550, '5.7.1', `SPF check failed: the sending IP is not authorized${v.spf.domain ? ` for ${v.spf.domain}` : ''}`), quarantine: false };
  }
  const dmarcFailed = v.dmarc.result === 'fail';
  // RFC 7489 §6.3 / §6.6.4: p=reject → reject during the SMTP transaction; p=quarantine → keep
  // the message but mark it.
  if (policy.dmarcEnforce && dmarcFailed && v.dmarc.policy === 'reject') {
    return { reject: reply(550, '5.7.1', `DMARC policy of ${v.dmarc.domain ?? 'the author domain'} says reject, and the message failed it`), quarantine: false };
  }
  return { reject: null, quarantine: policy.dmarcEnforce && dmarcFailed && v.dmarc.policy === 'quarantine' };
}

/** The server's verifier hook (ServerOptions.verifier) with our hostname, resolver and policy. */
export function createVerifier(opts: VerifyOptions & VerifierPolicy): (msg: VerifyInput) => Promise<VerifyOutcome & { reject: Reply | null; quarantine: boolean }> {
  return async (msg) => {
    const out = await verifyMessage(msg, opts);
    // Bounded memory and RFC 8601 §5: a header block past MAX_HEADER_BLOCK is not parsed, so
    // neither verified nor searched for forged Authentication-Results of ours; such a message is
    // refused, not stored (RFC 3463 5.3.4, as Exim's header_maxsize does).
    if (out.headerTooLarge) return { ...out, reject: reply(552, '5.3.4', `Message header block over ${MAX_HEADER_BLOCK} bytes`), quarantine: false };
    return { ...out, ...applyPolicy(out.verdicts, opts) };
  };
}
