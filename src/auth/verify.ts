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
import { authenticate, type DNSResolver } from 'mailauth';
import { reply, type Reply } from '../protocol/reply.js';
import type { AuthVerdicts } from '../types.js';

export type { AuthVerdicts } from '../types.js';

/** Signatures verified per message; later ones are counted in `dkimOmitted`. */
export const MAX_DKIM_SIGNATURES = 10;
const DEFAULT_DEADLINE_MS = 10_000;

export type MailauthResolver = (name: string, type: string) => Promise<unknown>;

export interface VerifyInput {
  /** The message as received (header block and body), without our Received header. */
  data: Buffer;
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
}

export interface VerifyOutcome {
  /** `Authentication-Results: ...\r\n`, ready to prepend. */
  header: string;
  verdicts: AuthVerdicts;
  /** The message with Authentication-Results headers claiming our authserv-id removed. */
  data: Buffer;
}

interface HeaderField {
  /** Lower-case field name. */
  name: string;
  start: number;
  end: number;
}

/** Where the header block ends (index of the empty line's end), and its fields. */
function headerFields(data: Buffer): { fields: HeaderField[]; bodyStart: number } {
  const fields: HeaderField[] = [];
  let pos = 0;
  let current: HeaderField | null = null;
  while (pos < data.length) {
    let eol = data.indexOf(0x0a, pos);
    eol = eol < 0 ? data.length : eol + 1;
    const first = data[pos];
    const blank = first === 0x0a || (first === 0x0d && data[pos + 1] === 0x0a);
    if (blank) return { fields, bodyStart: eol };
    if ((first === 0x20 || first === 0x09) && current !== null) {
      current.end = eol; // RFC 5322 §2.2.3: a folded continuation line
    } else {
      const line = data.subarray(pos, Math.min(eol, pos + 200)).toString('latin1');
      const colon = line.indexOf(':');
      current = { name: (colon > 0 ? line.slice(0, colon) : line).trim().toLowerCase(), start: pos, end: eol };
      fields.push(current);
    }
    pos = eol;
  }
  return { fields, bodyStart: data.length };
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

/** Our verdicts from mailauth's result (only the fields we keep). */
function toVerdicts(res: Unknown, omitted: number): AuthVerdicts {
  const dkimRes = obj(res.dkim);
  const dkim = (Array.isArray(dkimRes.results) ? (dkimRes.results as unknown[]) : []).map((r) => {
    const row = obj(r);
    const status = obj(row.status);
    const comment = str(status.comment);
    // RFC 6376 §6.1.3 step 4: a body hash mismatch is a failed verification (PERMFAIL), and
    // RFC 8601 §2.7.1 calls that `fail`; mailauth reports it as neutral.
    const bodyHashFailed = status.result === 'neutral' && comment === 'body hash did not verify';
    return {
      result: bodyHashFailed ? 'fail' : (str(status.result) ?? 'neutral'),
      domain: str(row.signingDomain),
      selector: str(row.selector),
      aligned: typeof status.aligned === 'string' ? status.aligned : null,
      comment,
    };
  });
  const spf = obj(res.spf);
  const dmarc = obj(res.dmarc);
  const arc = obj(res.arc);
  return {
    spf: { result: str(obj(spf.status).result) ?? 'none', domain: str(spf.domain), comment: str(obj(spf.status).comment) },
    dkim,
    dkimOmitted: omitted,
    dmarc: res.dmarc === false
      ? { result: 'none', domain: null, policy: null, comment: 'no From domain' }
      : { result: str(obj(dmarc.status).result) ?? 'none', domain: str(dmarc.domain), policy: str(dmarc.policy), comment: null },
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
 * Verifies one received message. Never rejects: failures become temperror verdicts.
 */
export async function verifyMessage(input: VerifyInput, opts: VerifyOptions): Promise<VerifyOutcome> {
  const { fields } = headerFields(input.data);
  const ours = opts.hostname.toLowerCase();
  // RFC 8601 §5: a header claiming our authserv-id that we did not write is a forgery; remove it.
  const data = withoutFields(input.data, fields, (f) => f.name === 'authentication-results' && authservId(fieldValue(input.data, f)) === ours);
  const kept = headerFields(data).fields;
  // Bounded work: only the first MAX_DKIM_SIGNATURES signatures are handed to mailauth.
  const sigs = kept.filter((f) => f.name === 'dkim-signature');
  const omitted = Math.max(0, sigs.length - MAX_DKIM_SIGNATURES);
  const extra = new Set(sigs.slice(MAX_DKIM_SIGNATURES));
  const checked = withoutFields(data, kept, (f) => extra.has(f));
  const fromCount = kept.filter((f) => f.name === 'from').length;
  const checkedSigs = sigs.slice(0, MAX_DKIM_SIGNATURES).map((f) => sigTags(fieldValue(data, f)));

  let verdicts: AuthVerdicts;
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deadlineMs);
    });
    const run = authenticate(checked, {
      ip: input.ip,
      helo: input.helo,
      sender: input.mailFrom,
      mta: opts.hostname,
      // Our client's answers have the shapes mailauth reads (policy/dns.ts mailauthResolver).
      resolver: opts.resolver as DNSResolver,
      trustReceived: false,
      disableBimi: true,
    });
    // A late result after the deadline is dropped; its lookups end on their own timeouts.
    run.catch(() => undefined);
    const res = await Promise.race([run, deadline]);
    verdicts = res === 'timeout' ? temperror(`verification took over ${deadlineMs} ms`, checkedSigs) : toVerdicts(obj(res), omitted);
  } catch (e) {
    verdicts = temperror(`verification failed: ${e instanceof Error ? e.message : String(e)}`, checkedSigs);
  } finally {
    clearTimeout(timer);
  }
  // RFC 7489 §6.6.1: a message with several From headers (or none) has no single author domain;
  // receivers may reject it outright, so its policy is taken as reject (dmarcEnforce refuses it).
  if (fromCount !== 1 && verdicts.dmarc.result !== 'temperror') {
    verdicts.dmarc = { result: 'fail', domain: verdicts.dmarc.domain, policy: 'reject', comment: `${fromCount} From headers` };
  }
  return { header: formatAuthResults(opts.hostname, verdicts, input.mailFrom, input.helo), verdicts, data };
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
    return { ...out, ...applyPolicy(out.verdicts, opts) };
  };
}
