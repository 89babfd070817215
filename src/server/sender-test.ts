/**
 * The sender test (issue 14 item 6): mail to `tls-test@DOMAIN` (config http.senderTest) on the mx
 * listener gets a report of how the *sending* server behaved — STARTTLS or not, TLS version,
 * cipher, group, SNI, EHLO name, pipelining — stored as DATA/sender-tests/ID.json (shown at
 * /sender-test/ID, src/http/sender-test.ts) and sent back as an automatic reply.
 *
 * The hostile variants `tls-test+badcert@` and `tls-test+nostarttls@` need two attempts, since
 * STARTTLS comes before RCPT: the first RCPT answers 451 and arms, for that client IP for 10
 * minutes, the hostile behaviour on its next STARTTLS (a self-signed certificate for
 * wrong-name.invalid, or 454); the second attempt is accepted and its report says whether the
 * sender fell back to plaintext or delivered over a certificate it could not have verified.
 *
 * Invariants (no backscatter, RFC 3834):
 * - A reply goes only to the envelope sender of a message received on the mx listener, never to
 *   the null sender (§2), never to a message with Auto-Submitted other than "no" (§2), nor one with
 *   List-* or Precedence bulk/list/junk header fields (§2: mailing lists);
 * - only when SPF passed for the envelope sender's domain or a DKIM signature passed whose d= is
 *   that domain or a parent of it: the reply goes to the envelope sender, so the check must vouch
 *   for that address's domain (the From domain is not used: it is not where the reply goes);
 * - at most `repliesPerDomainPerHour` per sender domain and `repliesPerIpPerHour` per client IP;
 * - the reply has a null envelope sender (§3.3, no loops) and `Auto-Submitted: auto-replied` (§5).
 * - Arming state and rate counters are bounded maps; arming applies once, then normal STARTTLS.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { reply, type Reply } from '../protocol/reply.js';
import { createCertificate } from '../tls/generate.js';
import { serverContextOptions, serverSocketOptions, type ServerSocketOptions } from '../tls/options.js';
import { signedGeneratedMessage, type GeneratedSigner } from '../store/generated.js';
import { parseHeaderFields } from '../delivery/webhook.js';
import type { IncomingMessage, TlsFacts } from '../types.js';

export const SENDER_TEST_DIR = 'sender-tests';
export const ARM_WINDOW_MS = 10 * 60_000;
const MAX_TRACKED = 10_000;
const HOUR_MS = 3_600_000;
export const WRONG_NAME = 'wrong-name.invalid';

export type SenderTestVariant = 'plain' | 'badcert' | 'nostarttls';

export const ARMED_REPLY: Reply = reply(451, '4.7.0', 'try again (sender test armed)');

/** What commands.ts asks (ServerOptions.senderTest). */
export interface SenderTestHook {
  /** The variant a local RCPT address is, or null when it is not a test address. */
  variantOf(address: string): SenderTestVariant | null;
  /**
   * RCPT to a test address in `session` (identity only; `tlsOn`: the session is encrypted):
   * accept (null) or the 451 that arms the hostile variant.
   */
  rcpt(ip: string, variant: SenderTestVariant, session: object, tlsOn: boolean): Reply | null;
  /** STARTTLS from `ip` in `session`: normal, refused (454), or with the wrong-name certificate. */
  starttls(ip: string, session: object): { kind: 'normal' } | { kind: 'refuse' } | { kind: 'badcert'; options: ServerSocketOptions };
}

export interface SenderTestReport {
  /** Unguessable (128 bits, base64url): the report is public by its id. */
  id: string;
  messageId: string;
  receivedAt: string;
  variant: SenderTestVariant;
  recipient: string;
  mailFrom: string;
  client: { address: string; ehlo: string };
  tls: TlsFacts | null;
  pipelined: boolean;
  /** The hostile behaviour applied to this sender's session (null: none was). */
  hostile: 'badcert' | 'nostarttls' | null;
  findings: Array<{ severity: 'good' | 'info' | 'warning' | 'bad'; text: string }>;
  auth: { spf: string; dkim: string[]; dmarc: string } | null;
  reply: { sent: boolean; reason: string };
}

interface Arm {
  variant: 'badcert' | 'nostarttls';
  until: number;
  /** The session whose RCPT armed it (its retries of the RCPT get 451 again). */
  armedBy: WeakSet<object>;
  /** The session the hostile STARTTLS was applied to (once per arming); null: not yet. */
  hostileSession: WeakSet<object> | null;
  /** A RCPT of the hostile session was accepted (afterAccept reports the hostile behaviour). */
  accepted: boolean;
  /** A RCPT was accepted from a later session that never tried STARTTLS (nothing to be hostile to). */
  acceptedPlain: boolean;
}

export interface SenderTestOptions {
  localPart: string;
  localDomains: readonly string[];
  repliesPerDomainPerHour: number;
  repliesPerIpPerHour: number;
  dataDir: string;
  hostname: string;
  minVersion?: tls.SecureVersion;
  /** The page's base URL (`http://127.0.0.1:8025`); null: no URL in the reply. */
  baseUrl?: () => string | null;
  sign?: GeneratedSigner | null;
  now?: () => number;
}

/** Counts per key per hour; bounded (the oldest key is dropped past MAX_TRACKED). */
class HourlyCounter {
  private readonly m = new Map<string, { start: number; n: number }>();
  take(key: string, limit: number, now: number): boolean {
    let e = this.m.get(key);
    if (e === undefined || now - e.start >= HOUR_MS) {
      this.m.delete(key);
      if (this.m.size >= MAX_TRACKED) this.m.delete(this.m.keys().next().value ?? '');
      e = { start: now, n: 0 };
      this.m.set(key, e);
    }
    if (e.n >= limit) return false;
    e.n++;
    return true;
  }
}

export class SenderTest implements SenderTestHook {
  private readonly armed = new Map<string, Arm>();
  private readonly perDomain = new HourlyCounter();
  private readonly perIp = new HourlyCounter();
  private readonly now: () => number;
  /** Set by the HTTP side once bound (setBaseUrl): the real address, port 0 resolved. */
  private boundUrl: string | null = null;

  private constructor(private readonly o: SenderTestOptions, private readonly badCert: ServerSocketOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Makes the wrong-name certificate (self-signed, ECDSA) once, at start. */
  static async create(o: SenderTestOptions): Promise<SenderTest> {
    const now = Date.now();
    const pair = await createCertificate({ commonName: WRONG_NAME, names: [WRONG_NAME], notBefore: new Date(now - 3600_000), notAfter: new Date(now + 365 * 86_400_000), keyType: 'ec', isCa: false });
    const context = tls.createSecureContext({ ...serverContextOptions(o.minVersion !== undefined ? { minVersion: o.minVersion } : {}), cert: pair.certPem, key: pair.keyPem });
    const options = serverSocketOptions({ context, sniCallback: null });
    if (options === null) throw new Error('sender test: no TLS options for the wrong-name certificate');
    mkdirSync(join(o.dataDir, SENDER_TEST_DIR), { recursive: true, mode: 0o700 });
    return new SenderTest(o, options);
  }

  /** The console's real base URL (`http://127.0.0.1:PORT`), known once the HTTP listener is bound. */
  setBaseUrl(url: string | null): void {
    this.boundUrl = url;
  }

  variantOf(address: string): SenderTestVariant | null {
    const a = address.toLowerCase();
    const at = a.lastIndexOf('@');
    if (at <= 0 || !this.o.localDomains.includes(a.slice(at + 1))) return null;
    const local = a.slice(0, at);
    const base = this.o.localPart;
    if (local === base) return 'plain';
    if (local === `${base}+badcert`) return 'badcert';
    if (local === `${base}+nostarttls`) return 'nostarttls';
    return null;
  }

  rcpt(ip: string, variant: SenderTestVariant, session: object, tlsOn: boolean): Reply | null {
    if (variant === 'plain') return null;
    const a = this.currentArm(ip);
    if (a !== null && a.variant === variant) {
      // The second attempt: the session that met the hostile STARTTLS (a 454 it went on from in
      // plaintext, or the wrong-name certificate it accepted) ...
      if (a.hostileSession?.has(session) === true) {
        a.accepted = true;
        return null;
      }
      // ... or a later session of a sender that does not try STARTTLS at all.
      if (!tlsOn && !a.armedBy.has(session) && a.hostileSession === null) {
        a.acceptedPlain = true;
        return null;
      }
      if (a.armedBy.has(session)) return ARMED_REPLY; // the arming session tries again: still armed
    }
    // First attempt (or a session that got normal TLS after the hostile one failed): arm this
    // IP's next STARTTLS. STARTTLS comes before RCPT, so a hostile test takes two sessions.
    this.armed.delete(ip);
    if (this.armed.size >= MAX_TRACKED) this.armed.delete(this.armed.keys().next().value ?? '');
    const armedBy = new WeakSet<object>();
    armedBy.add(session);
    this.armed.set(ip, { variant, until: this.now() + ARM_WINDOW_MS, armedBy, hostileSession: null, accepted: false, acceptedPlain: false });
    return ARMED_REPLY;
  }

  starttls(ip: string, session: object): ReturnType<SenderTestHook['starttls']> {
    const a = this.currentArm(ip);
    // Once per arming, and never in the session that armed it (it is told to come back).
    if (a === null || a.hostileSession !== null || a.armedBy.has(session)) return { kind: 'normal' };
    a.hostileSession = new WeakSet<object>();
    a.hostileSession.add(session);
    return a.variant === 'nostarttls' ? { kind: 'refuse' } : { kind: 'badcert', options: this.badCert };
  }

  private currentArm(ip: string): Arm | null {
    const a = this.armed.get(ip);
    if (a === undefined) return null;
    if (a.until <= this.now()) {
      this.armed.delete(ip);
      return null;
    }
    return a;
  }

  /**
   * After a message is stored: for each test address among its recipients, the report (written
   * to DATA/sender-tests/ID.json) and, when allowed, the reply to store. Messages from other
   * listeners are ignored.
   */
  async afterAccept(msg: IncomingMessage & { pipelined?: boolean }, messageId: string): Promise<{ reports: SenderTestReport[]; replies: IncomingMessage[] }> {
    const reports: SenderTestReport[] = [];
    const replies: IncomingMessage[] = [];
    if (msg.listener !== 'mx') return { reports, replies };
    const seen = new Set<string>();
    // Read once per message (replyAllowed and the reply's In-Reply-To), when a test address is in it.
    let head: Map<string, string[]> | null = null;
    for (const rcpt of msg.localRecipients) {
      const variant = this.variantOf(rcpt);
      if (variant === null || seen.has(rcpt.toLowerCase())) continue;
      seen.add(rcpt.toLowerCase());
      let hostile: SenderTestReport['hostile'] = null;
      if (variant !== 'plain') {
        const a = this.currentArm(msg.clientAddress);
        if (a !== null && a.variant === variant && a.accepted) hostile = variant;
        // Consumed: the next test starts over. (Two sessions of one client IP testing the same
        // variant at once share the arming: a documented limit of a per-IP test.)
        if (a !== null && a.variant === variant && (a.accepted || a.acceptedPlain)) this.armed.delete(msg.clientAddress);
      }
      const report = buildReport(msg, messageId, rcpt.toLowerCase(), variant, hostile, newReportId(), this.now());
      head ??= msg.spooled ? new Map<string, string[]>() : headerFields(msg);
      const decision = this.replyDecision(msg, head);
      report.reply = decision;
      writeFileSync(join(this.o.dataDir, SENDER_TEST_DIR, `${report.id}.json`), JSON.stringify(report, null, 2), { mode: 0o600 });
      reports.push(report);
      if (decision.sent) replies.push(await this.makeReply(msg, report, head));
    }
    return { reports, replies };
  }

  private replyDecision(msg: IncomingMessage, head: Map<string, string[]>): { sent: boolean; reason: string } {
    const r = replyAllowed(msg, head);
    if (r !== null) return { sent: false, reason: r };
    const domain = msg.mailFrom.slice(msg.mailFrom.lastIndexOf('@') + 1).toLowerCase();
    const now = this.now();
    if (!this.perIp.take(msg.clientAddress, this.o.repliesPerIpPerHour, now)) return { sent: false, reason: `rate limit: ${this.o.repliesPerIpPerHour} replies per hour to client ${msg.clientAddress}` };
    if (!this.perDomain.take(domain, this.o.repliesPerDomainPerHour, now)) return { sent: false, reason: `rate limit: ${this.o.repliesPerDomainPerHour} replies per hour to ${domain}` };
    return { sent: true, reason: `sent to ${msg.mailFrom}` };
  }

  private async makeReply(msg: IncomingMessage, report: SenderTestReport, head: Map<string, string[]>): Promise<IncomingMessage> {
    const now = new Date(this.now());
    const fromDomain = report.recipient.slice(report.recipient.lastIndexOf('@') + 1);
    const origId = head.get('message-id')?.[0]?.trim() ?? null;
    const url = this.boundUrl ?? this.o.baseUrl?.() ?? null;
    const lines = [
      `postseal sender test (${report.variant}) for the message from ${msg.mailFrom}`,
      '',
      ...reportLines(report),
      '',
      ...(url !== null ? [`The report: ${url}/sender-test/${report.id}`, ''] : []),
      'This is an automatic reply (RFC 3834) to a message sent to the sender test address.',
    ];
    const header = [
      `From: postseal sender test <${this.o.localPart}@${fromDomain}>`,
      `To: <${msg.mailFrom}>`,
      `Subject: postseal sender test: ${summary(report)}`,
      `Date: ${now.toUTCString().replace('GMT', '+0000')}`,
      `Message-ID: <${report.id}.sender-test@${this.o.hostname}>`,
      ...(origId !== null && /^<[^<>\s]{1,900}>$/.test(origId) ? [`In-Reply-To: ${origId}`, `References: ${origId}`] : []),
      // RFC 3834 §5: an automatic response to a message.
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
    ];
    const data = Buffer.from(`${header.join('\r\n')}\r\n\r\n${lines.join('\r\n')}\r\n`, 'utf8');
    const local = this.o.localDomains.includes(msg.mailFrom.slice(msg.mailFrom.lastIndexOf('@') + 1).toLowerCase());
    // RFC 3834 §3.3: the response's envelope sender is null, so nothing answers it in turn.
    return signedGeneratedMessage({ origin: 'sender-test', from: '', to: msg.mailFrom, local, data, hostname: this.o.hostname, now }, this.o.sign);
  }
}

function newReportId(): string {
  return randomBytes(16).toString('base64url');
}

/** A report id as made by newReportId (22 base64url characters): anything else is not looked up. */
export function isReportId(id: string): boolean {
  return /^[A-Za-z0-9_-]{22}$/.test(id);
}

/** The stored report, or null. */
export function readSenderTestReport(dataDir: string, id: string): SenderTestReport | null {
  if (!isReportId(id)) return null;
  try {
    return JSON.parse(readFileSync(join(dataDir, SENDER_TEST_DIR, `${id}.json`), 'utf8')) as SenderTestReport;
  } catch {
    return null;
  }
}

/**
 * The header fields of the message's inline part (name lower-case → values, trimmed), unfolded, from
 * at most its first 64 KiB (only those bytes are copied out of the chunks, not the whole message).
 */
function headerFields(msg: IncomingMessage): Map<string, string[]> {
  const parts = msg.data instanceof Uint8Array ? [msg.data] : msg.data;
  const head: Uint8Array[] = [];
  let size = 0;
  for (const p of parts) {
    if (size >= HEAD_MAX) break;
    const take = p.subarray(0, HEAD_MAX - size);
    head.push(take);
    size += take.length;
  }
  const out = new Map<string, string[]>();
  for (const f of parseHeaderFields(Buffer.concat(head, size))) {
    const name = f.name.toLowerCase();
    out.set(name, [...(out.get(name) ?? []), f.value.trim()]);
  }
  return out;
}
const HEAD_MAX = 65536;

/** Why no reply may go to this message (null: it may). */
export function replyAllowed(msg: IncomingMessage, head?: Map<string, string[]>): string | null {
  // RFC 3834 §2 / RFC 5321 §4.5.5: never answer the null sender.
  if (msg.mailFrom === '') return 'no reply: null envelope sender';
  // A spooled message's header section is in its spool file, not read here: without seeing its
  // Auto-Submitted and List-* fields no reply may go (RFC 3834 §2), so none does.
  if (msg.spooled) return 'no reply: the message was too large to check its header fields';
  const h = head ?? headerFields(msg);
  // RFC 3834 §2: no response to a message whose Auto-Submitted is anything but "no".
  const auto = h.get('auto-submitted') ?? [];
  if (auto.some((v) => v.split(';')[0]?.trim().toLowerCase() !== 'no')) return 'no reply: the message is Auto-Submitted';
  // RFC 3834 §2: not to mailing lists (List-* fields, Precedence bulk/list/junk).
  if ([...h.keys()].some((k) => k.startsWith('list-'))) return 'no reply: the message came through a mailing list (List-* header)';
  if ((h.get('precedence') ?? []).some((v) => /^(bulk|list|junk)$/i.test(v))) return 'no reply: Precedence bulk/list/junk';
  const domain = msg.mailFrom.slice(msg.mailFrom.lastIndexOf('@') + 1).toLowerCase();
  const v = msg.authResults;
  if (v === null || v === undefined) return 'no reply: the message was not verified (auth.verify off)';
  // Backscatter: only an envelope sender whose domain SPF or DKIM vouched for gets the reply.
  const spf = v.spf.result === 'pass' && (v.spf.domain ?? '').toLowerCase() === domain;
  const dkim = v.dkim.some((d) => d.result === 'pass' && d.domain !== null && (domain === d.domain.toLowerCase() || domain.endsWith(`.${d.domain.toLowerCase()}`)));
  if (!spf && !dkim) return `no reply: neither SPF nor DKIM passed for ${domain}`;
  return null;
}

function buildReport(msg: IncomingMessage & { pipelined?: boolean }, messageId: string, recipient: string, variant: SenderTestVariant, hostile: SenderTestReport['hostile'], id: string, now: number): SenderTestReport {
  const t = msg.tls;
  const f: SenderTestReport['findings'] = [];
  if (variant === 'nostarttls') {
    if (hostile === null) f.push({ severity: 'info', text: 'the refusing STARTTLS was not applied to this session (the sender did not try STARTTLS after the 451, or came from another address)' });
    else if (t === null) f.push({ severity: 'warning', text: 'fell back to plaintext after STARTTLS was refused with 454 (opportunistic TLS: an attacker who strips STARTTLS reads this mail)' });
    else f.push({ severity: 'good', text: 'STARTTLS was refused with 454, and the sender then delivered over TLS on a new session' });
  } else if (variant === 'badcert') {
    if (hostile === null) f.push({ severity: 'info', text: 'the wrong-name certificate was not presented in this session (the sender did not use STARTTLS after the 451, or came from another address)' });
    else if (t !== null) f.push({ severity: 'warning', text: `accepted an unverifiable certificate (self-signed, for ${WRONG_NAME}): the sender does not verify the receiving server's certificate` });
    else f.push({ severity: 'warning', text: `the certificate for ${WRONG_NAME} was presented, and the sender delivered in plaintext` });
  }
  if (t === null) f.push({ severity: 'bad', text: 'delivered in plaintext: no STARTTLS' });
  else {
    // RFC 8996: TLS 1.0/1.1 are deprecated; RFC 9325 §3.1.1: TLS 1.3 preferred.
    f.push({ severity: t.protocol === 'TLSv1.3' ? 'good' : t.protocol === 'TLSv1.2' ? 'info' : 'bad', text: `TLS version ${t.protocol}, cipher ${t.cipher}${t.group !== null ? `, group ${t.group}` : ''}` });
    f.push(t.sni !== null ? { severity: 'good', text: `sent SNI ${t.sni}` } : { severity: 'info', text: 'sent no SNI (a sender that verifies certificates usually names the host it expects)' });
  }
  f.push({ severity: 'info', text: `EHLO name ${msg.heloName}` });
  f.push({ severity: 'info', text: msg.pipelined === true ? 'pipelined its commands (RFC 2920)' : 'did not pipeline its commands' });
  const v = msg.authResults;
  return {
    id,
    messageId,
    receivedAt: new Date(now).toISOString(),
    variant,
    recipient,
    mailFrom: msg.mailFrom,
    client: { address: msg.clientAddress, ehlo: msg.heloName },
    tls: t,
    pipelined: msg.pipelined === true,
    hostile,
    findings: f,
    auth: v ? { spf: v.spf.result, dkim: v.dkim.map((d) => `${d.result}${d.domain !== null ? ` (d=${d.domain})` : ''}`), dmarc: v.dmarc.result } : null,
    reply: { sent: false, reason: '' },
  };
}

export function reportLines(r: SenderTestReport): string[] {
  const mark = { good: '[ok]', info: '[--]', warning: '[!!]', bad: '[XX]' } as const;
  return [`Client ${r.client.address}, EHLO ${r.client.ehlo}`, ...r.findings.map((x) => `${mark[x.severity]} ${x.text}`)];
}

function summary(r: SenderTestReport): string {
  if (r.hostile === 'badcert' && r.tls !== null) return 'accepted an unverifiable certificate';
  if (r.hostile === 'nostarttls' && r.tls === null) return 'fell back to plaintext';
  return r.tls === null ? 'plaintext' : `${r.tls.protocol} ${r.tls.cipher}`;
}
